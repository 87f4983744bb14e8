"""The pieces of the explainer's training steps (`cfgen.train.explainer_steps`), on their own."""

import math

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from cfgen.errors import ConfigError
from cfgen.explain.strip import Strip
from cfgen.models.generator import Generator
from cfgen.train.explainer_options import Optimisation
from cfgen.train.explainer_steps import (
    FakeHistory,
    RecentBatches,
    critic_auc,
    generator_steps_done,
    optimizer_steps,
    standing_statistics,
    warmup_ema,
)


def test_the_ema_copies_first_then_moves_towards_the_model_with_a_warm_up():
    model = torch.nn.BatchNorm1d(2)
    average = AveragedModel(model, multi_avg_fn=warmup_ema(0.9), use_buffers=True)
    start = model.weight.detach().clone()
    average.update_parameters(model)  # the first update copies
    with torch.no_grad():
        model.weight.add_(1.0)
        model.num_batches_tracked.fill_(7)
    average.update_parameters(model)  # after 1 update: decay min(0.9, 2 / 11)
    decay = 2 / 11
    torch.testing.assert_close(average.module.weight, decay * start + (1 - decay) * (start + 1))
    assert int(average.module.num_batches_tracked) == 7  # integer buffers are copied
    for _ in range(100):  # late on the decay is capped: one update moves 10% of the way
        average.update_parameters(model)
    before = average.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update_parameters(model)
    torch.testing.assert_close(average.module.weight, 0.9 * before + 0.1 * model.weight.detach())


def test_generator_and_optimiser_steps_convert_both_ways():
    # n_critic 5: batches 0-4 make 5 D steps and, at batch 4, the first G step
    for n_critic in (1, 2, 5):
        for generator_steps in (1, 7):
            steps = optimizer_steps(generator_steps, n_critic)
            assert generator_steps_done(steps, n_critic) == generator_steps
            assert generator_steps_done(steps - 1, n_critic) == generator_steps - 1


def test_standing_statistics_make_inference_render_as_the_training_edit_did():
    torch.manual_seed(0)
    generator = Generator(16, n_bins=10, base_width=4, max_width=8)
    images = torch.rand(64, 3, 16, 16) * 2 - 1
    source, target = torch.randint(10, (64,)), torch.randint(10, (64,))
    with torch.no_grad():
        edit = generator.train().render(images, target, source).image  # batch statistics
    with torch.no_grad():
        before = generator.eval()(images, target)
    assert float((before - edit).abs().max()) > 0.05  # the case tells the statistics apart
    momenta = [m.momentum for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    assert standing_statistics(generator, [(images, source, target)])
    assert not generator.training  # its mode and the norms' momenta are restored
    assert [m.momentum for m in generator.modules() if isinstance(m, nn.BatchNorm2d)] == momenta
    # One batch: the running statistics are that batch's (up to the unbiased variance, n/(n-1)
    # with n >= 1024 values per channel, compounded over the layers).
    with torch.no_grad():
        after = generator(images, target)
    assert float((after - edit).abs().max()) < 1e-2
    assert float((after - edit).abs().mean()) < 0.02 * float((before - edit).abs().mean())
    grouped = Generator(16, n_bins=10, base_width=4, max_width=8, norm="group")
    assert not standing_statistics(grouped, [(images, source, target)])  # nothing to recompute
    assert not standing_statistics(generator, [])


def test_recent_batches_keep_the_last_batches_holding_enough_images():
    recent = RecentBatches(images=20)
    for size in (8, 8, 8, 8, 4):
        recent.add(torch.zeros(size, 3, 4, 4), torch.full((size,), size))
    # 4 + 8 + 8 = 20 images are enough: the first two batches of 8 were dropped.
    assert [len(images) for images, _ in recent.batches] == [8, 8, 4]
    drawn = recent.at_random_bins(10)
    again = recent.at_random_bins(10)
    for (_, _, first), (_, _, second) in zip(drawn, again, strict=True):
        torch.testing.assert_close(first, second)  # its own seeded draws, the same each time
    assert all(int(bins.max()) < 10 for _, _, bins in drawn)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("lr_generator", -1.0, r"lr_generator must be > 0 \(the generator's learning rate\)"),
        ("lr_discriminator", 0.0, r"lr_discriminator must be > 0 .*, got 0.0"),
        ("beta1", -0.1, r"beta1 must be in \[0, 1\) \(the decay of Adam's running gradient's"),
        ("beta2", 1.0, r"beta2 must be in \[0, 1\) .*, got 1.0"),
        ("beta2", float("nan"), r"beta2 must be in \[0, 1\) .*, got nan"),
    ],
)
def test_optimisation_refuses_what_adam_refuses_only_once_training_starts(option, value, message):
    with pytest.raises(ConfigError, match=message):
        Optimisation(**{option: value})
    Optimisation(lr_generator=1e-4, lr_discriminator=4e-4, beta1=0.5, beta2=0.999)  # accepted


def test_critic_auc_compares_far_frames_with_the_real_images_of_their_bin():
    # Two queries in bin 0 (explained by their last frame, bin 9), two in bin 9 (by their
    # first, bin 0); real queries are dark, every frame bright.
    posteriors = torch.tensor([0.02, 0.05, 0.95, 0.97])
    queries = torch.full((4, 1, 2, 2), -1.0)
    images = torch.full((10, 4, 1, 2, 2), 1.0)
    strip = Strip(images, torch.arange(10), torch.rand(10, 4), posteriors)
    darker_is_real = lambda x, bins: -x.flatten(1).mean(1)  # noqa: E731
    assert critic_auc(darker_is_real, queries, strip, 10) == 1.0
    assert critic_auc(lambda x, bins: -darker_is_real(x, bins), queries, strip, 10) == 0.0
    assert critic_auc(lambda x, bins: torch.zeros(len(x)), queries, strip, 10) == 0.5
    # A critic that scores only the bin cannot tell a frame from a real image of its bin,
    # although the queries' own bins and their frames' bins differ.
    assert critic_auc(lambda x, bins: bins.float(), queries, strip, 10) == 0.5
    # Pairs of one bin only: a critic that calls bin 9's images real and bin 0's fake
    # whatever they show, and the dark ones more real, is judged on the darkness alone.
    mixed = lambda x, bins: 10.0 * bins.float() + darker_is_real(x, bins)  # noqa: E731
    assert critic_auc(mixed, queries, strip, 10) == 1.0
    # No query in an end bin: no pair to compare.
    posteriors = torch.tensor([0.3, 0.4, 0.6, 0.7])
    middle = Strip(images, torch.arange(10), torch.rand(10, 4), posteriors)
    assert math.isnan(critic_auc(darker_is_real, queries, middle, 10))


def frames(ids) -> tuple[torch.Tensor, torch.Tensor]:
    """One constant 1x2x2 image per id (its value the id) and its bin, id % 10."""
    ids = torch.tensor(ids, dtype=torch.float32)
    return ids.view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone(), ids.long() % 10


def test_fake_history_swaps_half_the_fakes_for_earlier_ones_with_their_bins():
    history = FakeHistory(6)
    first, first_bins = frames([0, 1, 2, 3])
    mixed, mixed_bins = history.mix(first, first_bins)
    assert torch.equal(mixed, first) and torch.equal(mixed_bins, first_bins)  # nothing earlier
    assert len(history) == 4
    second, second_bins = frames([10, 11, 12, 13])
    torch.manual_seed(0)
    mixed, mixed_bins = history.mix(second, second_bins)
    ids = mixed[:, 0, 0, 0]
    kept = ids >= 10
    assert int(kept.sum()) == 2  # half swapped, the rest in place
    assert torch.equal(ids[kept], torch.tensor([10.0, 11, 12, 13])[kept])
    assert set(ids[~kept].tolist()) <= {0.0, 1.0, 2.0, 3.0}  # drawn from the history
    assert torch.equal(mixed_bins, ids.long() % 10)  # each with its own bin
    assert torch.equal(mixed.amin(dim=(1, 2, 3)), mixed.amax(dim=(1, 2, 3)))  # whole frames
    # The history is full (6): two of the new frames joined, the other two took random places.
    assert len(history) == 6
    held = history.images[:, 0, 0, 0]
    assert set(held.tolist()) <= {0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0}
    assert {10.0, 11.0} <= set(held.tolist())
    assert torch.equal(history.bins, held.long() % 10)
    # A history smaller than a batch starts mixing once it is full.
    small = FakeHistory(2)
    small.mix(first, first_bins)
    assert len(small) == 2
    mixed, _ = small.mix(second, second_bins)
    assert int((mixed[:, 0, 0, 0] < 10).sum()) == 2
