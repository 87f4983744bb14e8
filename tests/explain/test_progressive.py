from pathlib import Path

import pytest
import torch

from cfgen.bins import bin_centre, posterior_to_bin
from cfgen.errors import CheckpointError, ConfigError, DataError
from cfgen.evaluate.context import EvalContext
from cfgen.evaluate.methods import score_counterfactual
from cfgen.evaluate.shift import shift_summary
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.io import save_bundle
from cfgen.models.blackbox import BlackBox, load_blackbox
from tests.helpers import (
    ChannelMeanLogit,
    export_tiny_explainer,
    tiny_networks,
    write_classifier_bundle,
)

SIZE = 16


class ExactGenerator(torch.nn.Module):
    """Fills channel 0 so that `ChannelMeanLogit` lands exactly on the target bin's centre."""

    def __init__(self, n_bins: int = 10, scale: float = 4.0) -> None:
        super().__init__()
        self.n_bins, self.image_size, self.channels, self.scale = n_bins, SIZE, 3, scale

    def forward(self, x: torch.Tensor, target_bin: torch.Tensor) -> torch.Tensor:
        level = torch.logit(bin_centre(target_bin, self.n_bins)) / self.scale
        out = x.clone()
        out[:, 0] = level[:, None, None]
        return out


def posterior(x: torch.Tensor) -> torch.Tensor:
    return ChannelMeanLogit()(x).sigmoid().squeeze(1)


def images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE) * 2 - 1


@pytest.fixture
def exact() -> ProgressiveExaggeration:
    return ProgressiveExaggeration(BlackBox(ChannelMeanLogit()), ExactGenerator(), batch_size=3)


@pytest.fixture
def bundle(tmp_path):
    """An explainer.pt exported by the training module, and its classifier file."""
    return export_tiny_explainer(tmp_path, size=SIZE)


def test_the_classifier_comes_first_and_the_old_order_is_refused_with_the_fix():
    classifier, generator = BlackBox(ChannelMeanLogit()), ExactGenerator()
    explainer = ProgressiveExaggeration(classifier, generator)
    assert (explainer.classifier, explainer.generator) == (classifier, generator)
    with pytest.raises(ConfigError, match=r"takes \(classifier, generator\).*swap the two"):
        ProgressiveExaggeration(generator, classifier)


def test_exaggerate_is_one_strip_per_query_at_every_bin(exact):
    x = images(5)  # 5 queries in chunks of 3: exercises the batching
    strip = exact.exaggerate(x)
    assert strip.images.shape == (10, 5, 3, SIZE, SIZE)
    torch.testing.assert_close(strip.target_bins, torch.arange(10))
    torch.testing.assert_close(
        strip.posteriors, bin_centre(torch.arange(10), 10)[:, None].expand(10, 5)
    )
    torch.testing.assert_close(strip.query_posteriors, ChannelMeanLogit()(x).sigmoid().squeeze(1))
    summary = shift_summary(strip.posteriors, strip.target_bins, strip.query_posteriors, 10)
    assert summary == pytest.approx(
        {"compat_mae": 0.0, "flip_rate": 1.0, "monotonicity": 1.0}, abs=1e-6
    )


class DialGenerator(torch.nn.Module):
    """A generator read as a dial: at (fractional) bin s it fills channel 0 so that
    `ChannelMeanLogit`'s logit is gain * (s - 4.5), the gain set per query by its channel 1.
    Whole bins then miss the bin centres by a query-dependent amount (as a trained generator
    does where f is steep); the posterior is continuous and increasing in s."""

    def __init__(self) -> None:
        super().__init__()
        self.n_bins, self.image_size, self.channels = 10, SIZE, 3

    def forward(self, x: torch.Tensor, target_bin: torch.Tensor) -> torch.Tensor:
        gain = 0.4 + x[:, 1].mean(dim=(1, 2))  # by query: 0.4 at 0, 1.4 at 1
        out = x.clone()
        out[:, 0] = (gain * (target_bin.float() - 4.5) / 4.0)[:, None, None]
        return out


def test_placement_moves_only_the_frames_whole_bins_miss_onto_their_bin_centres():
    x = images(6)
    # Gains 0.7 .. 1.4: every bin centre, 0.05 to 0.95, lies on every query's dial.
    x[:, 1] = torch.linspace(0.3, 1, 6)[:, None, None]
    dial = ProgressiveExaggeration(
        BlackBox(ChannelMeanLogit()), DialGenerator(), batch_size=4, placement_steps=0
    )
    centres = bin_centre(torch.arange(10), 10)[:, None].expand(10, 6)
    whole = dial.exaggerate(x)
    missed = posterior_to_bin(whole.posteriors, 10) != torch.arange(10)[:, None]
    assert 10 < int(missed.sum()) < 50
    errors = []
    for steps in (1, 3, 8):
        dial.placement_steps = steps
        strip = dial.exaggerate(x)
        assert strip.images.shape == (10, 6, 3, SIZE, SIZE)
        reread = posterior(strip.images.flatten(0, 1)).view(10, 6)
        torch.testing.assert_close(strip.posteriors, reread)
        torch.testing.assert_close(strip.images[~missed], whole.images[~missed])
        torch.testing.assert_close(strip.images[:, :, 1:], whole.images[:, :, 1:])
        errors.append((strip.posteriors - centres)[missed].abs().max().item())
    # Each bisection halves the bracket: at 8 every missed frame is on its centre.
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.003
    assert bool((posterior_to_bin(strip.posteriors, 10) == torch.arange(10)[:, None]).all())
    summary = shift_summary(strip.posteriors, strip.target_bins, strip.query_posteriors, 10)
    assert summary["monotonicity"] == pytest.approx(1.0)
    assert (
        summary["compat_mae"]
        < 0.5
        * shift_summary(whole.posteriors, whole.target_bins, whole.query_posteriors, 10)[
            "compat_mae"
        ]
    )
    # Selected bins are placed as in the whole strip; a counterfactual lands in its bin.
    torch.testing.assert_close(dial.exaggerate(x, bins=[2, 7]).images, strip.images[[2, 7]])
    wanted = torch.linspace(0.12, 0.88, 6)
    reached = posterior(dial.counterfactual(x, wanted))
    torch.testing.assert_close(posterior_to_bin(reached, 10), posterior_to_bin(wanted, 10))


def test_the_evaluation_scores_the_frames_as_drawn_and_placed_apart_with_the_share_placed():
    x = images(6)
    x[:, 1] = torch.linspace(0.3, 1, 6)[:, None, None]
    classifier = BlackBox(ChannelMeanLogit())
    dial = ProgressiveExaggeration(classifier, DialGenerator(), placement_steps=3)
    context = EvalContext(classifier=classifier, queries=x, n_bins=10, batch_size=4)
    placed = score_counterfactual(dial, context, ["shift"])[0]["metrics"]["shift"]
    as_drawn = score_counterfactual(dial.as_drawn(), context, ["shift"])[0]["metrics"]["shift"]
    drawn = dial.as_drawn().exaggerate(x)
    assert dial.as_drawn().placement_steps == 0 and dial.placement_steps == 3
    expected = shift_summary(drawn.posteriors, drawn.target_bins, drawn.query_posteriors, 10)
    assert as_drawn["compat_mae"] == pytest.approx(expected["compat_mae"])
    missed = posterior_to_bin(drawn.posteriors, 10) != torch.arange(10)[:, None]
    assert placed["placed_share"] == pytest.approx(missed.float().mean().item())
    assert placed["compat_mae"] < expected["compat_mae"]
    assert "placed_share" not in as_drawn
    with pytest.raises(ConfigError, match="placement_steps must be >= 0"):
        ProgressiveExaggeration(classifier, DialGenerator(), placement_steps=-1)


def test_placement_keeps_the_end_of_the_strip_for_a_centre_f_never_reaches():
    x = images(3)
    x[:, 1] = 0.0  # gain 0.4: f spans only sigmoid(+-1.8) = 0.14 .. 0.86
    dial = ProgressiveExaggeration(BlackBox(ChannelMeanLogit()), DialGenerator())
    dial.placement_steps = 4
    strip = dial.exaggerate(x)
    for frame, end in ((0, 0), (-1, 9)):
        torch.testing.assert_close(strip.images[frame], dial.generator(x, torch.full((3,), end)))


def test_selected_bins_and_out_of_range_bins(exact):
    strip = exact.exaggerate(images(2), bins=[0, 9])
    torch.testing.assert_close(strip.posteriors[:, 0], torch.tensor([0.05, 0.95]))
    with pytest.raises(ValueError, match=r"bins must lie in \[0, 10\)"):
        exact.exaggerate(images(2), bins=[10])


def test_counterfactual_lands_in_the_bin_of_the_target(exact):
    x = images(2)
    out = exact.counterfactual(x, torch.tensor([0.97, 0.03]))
    torch.testing.assert_close(
        ChannelMeanLogit()(out).sigmoid().squeeze(1), torch.tensor([0.95, 0.05])
    )
    torch.testing.assert_close(out[:, 1:], x[:, 1:])


def test_explain_is_the_change_towards_the_other_decision(exact):
    x = images(3)
    relevance = exact.explain(x)
    target = (posterior(x) < 0.5).float()
    torch.testing.assert_close(relevance, (x - exact.counterfactual(x, target)).abs())
    assert relevance.shape == x.shape


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.zeros(2, 3, 32, 32), r"takes images \(N, 3, 16, 16\); got shape \(2, 3, 32, 32\)"),
        (torch.zeros(2, 1, 16, 16), r"got shape \(2, 1, 16, 16\)"),
        (torch.full((1, 3, 16, 16), 255.0), r"scaled to \[-1, 1\]; got values in \[255, 255\]"),
    ],
)
def test_bad_images_are_refused_with_the_expected_shape(exact, x, message):
    with pytest.raises(DataError, match=message):
        exact.exaggerate(x)


def test_an_empty_batch_and_a_target_outside_0_1_are_refused_by_every_verb(exact):
    empty = torch.zeros(0, 3, SIZE, SIZE)
    for verb in (exact.exaggerate, exact.explain, lambda x: exact.counterfactual(x, 0.5)):
        with pytest.raises(DataError, match=r"the batch is empty \(shape \(0, 3, 16, 16\)\)"):
            verb(empty)
    x = images(2)
    outside = r"target posteriors must lie in \[0, 1\] .*; got "
    for target, got in ((1.5, "1.5 for query 0"), (float("nan"), "nan for query 0")):
        for verb in (exact.counterfactual, exact.explain):
            with pytest.raises(ConfigError, match=outside + got + r" \(2 of 2 outside\)"):
                verb(x, target)
    with pytest.raises(ConfigError, match=outside + r"-1 for query 1 \(1 of 2 outside\)"):
        exact.counterfactual(x, torch.tensor([0.5, -1.0]))
    with pytest.raises(ConfigError, match=r"one per query, shaped \(2,\); got shape \(3,\)"):
        exact.counterfactual(x, torch.full((3,), 0.5))


def test_from_checkpoint_loads_the_ema_generator_and_the_recorded_classifier(bundle):
    path, classifier, module = bundle
    explainer = ProgressiveExaggeration.from_checkpoint(path)
    expected = module.ema_generator.state_dict()
    for name, value in explainer.generator.state_dict().items():
        torch.testing.assert_close(value, expected[name])
    x = images(2)
    torch.testing.assert_close(explainer.classifier(x), load_blackbox(classifier)(x))
    assert explainer.exaggerate(x).images.shape == (10, 2, 3, SIZE, SIZE)


def test_another_classifier_file_is_refused_unless_allowed(bundle, tmp_path):
    path, _, _ = bundle
    other = str(write_classifier_bundle(tmp_path / "other.pt", size=SIZE, seed=1))
    with pytest.raises(CheckpointError, match="not the classifier .* was trained to explain"):
        ProgressiveExaggeration.from_checkpoint(path, classifier=other)
    explainer = ProgressiveExaggeration.from_checkpoint(path, other, allow_classifier_mismatch=True)
    x = images(2)
    torch.testing.assert_close(explainer.classifier(x), load_blackbox(other)(x))


def test_missing_recorded_classifier_asks_for_one(bundle):
    path, classifier, _ = bundle
    torch.save({}, classifier)  # overwritten: still a file, but not the recorded one
    with pytest.raises(CheckpointError, match="not the classifier"):
        ProgressiveExaggeration.from_checkpoint(path)
    Path(classifier).unlink()
    with pytest.raises(CheckpointError, match="pass the classifier explicitly"):
        ProgressiveExaggeration.from_checkpoint(path)


def test_missing_or_foreign_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        ProgressiveExaggeration.from_checkpoint(tmp_path / "nothing.pt")
    save_bundle(tmp_path / "classifier.pt", "classifier", {}, {})
    with pytest.raises(CheckpointError, match="holds a 'classifier' model, expected 'explainer'"):
        ProgressiveExaggeration.from_checkpoint(tmp_path / "classifier.pt")


def test_the_blend_mask_is_where_the_generator_redraws_and_a_map_like_x(tmp_path):
    from cfgen.explain.registry import build_explainer
    from cfgen.train.explainer import ExplainerModule

    classifier = write_classifier_bundle(tmp_path / "classifier.pt", size=SIZE)
    module = ExplainerModule(str(classifier), image_size=SIZE, **tiny_networks(output="blend"))
    with torch.no_grad():  # a zero head: mask sigmoid(0) = 0.5, drawn image tanh(0) = 0
        conv = module.ema_generator.head[-1]
        conv.weight.zero_()
        conv.bias.zero_()
    path = module.export(tmp_path / "explainer.pt")
    explainer = ProgressiveExaggeration.from_checkpoint(path)
    x = images(3)
    torch.testing.assert_close(explainer.blend_mask(x, 0.9), torch.full((3, 1, SIZE, SIZE), 0.5))
    # the query blended half and half with 0 (mid grey)
    torch.testing.assert_close(explainer.counterfactual(x, 0.9), 0.5 * x)
    relevance = build_explainer("pe_mask", explainer.classifier, checkpoint=str(path)).explain(x)
    torch.testing.assert_close(relevance, torch.full_like(x, 0.5))


@torch.no_grad()
def test_a_difference_explainer_gives_each_query_back_at_its_own_bin(tmp_path):
    from cfgen.bins import posterior_to_bin
    from cfgen.models.blocks import ConditionalBatchNorm2d
    from cfgen.train.explainer import ExplainerModule

    classifier = write_classifier_bundle(tmp_path / "classifier.pt", size=SIZE)
    module = ExplainerModule(str(classifier), image_size=SIZE, **tiny_networks(output="difference"))
    torch.manual_seed(0)
    for norm in module.ema_generator.modules():
        if isinstance(norm, ConditionalBatchNorm2d):
            norm.beta.weight.normal_()  # every bin redraws differently
    path = module.export(tmp_path / "explainer.pt")
    black_box = BlackBox(ChannelMeanLogit())  # brighter channel 0, higher bin
    # chunks of 2 queries: the later chunks need their own queries' bins
    explainer = ProgressiveExaggeration.from_checkpoint(path, black_box, batch_size=2)
    x = images(5) * 0.8
    x[:, 0] = torch.tensor([-0.8, -0.3, 0.0, 0.3, 0.8])[:, None, None]
    strip = explainer.exaggerate(x)
    own = posterior_to_bin(strip.query_posteriors, explainer.n_bins)
    assert own.tolist() == [0, 2, 5, 7, 9]  # every chunk's queries in bins of their own
    kept = strip.images[own, torch.arange(5)]
    torch.testing.assert_close(kept, x, rtol=0, atol=1e-5)
    other = strip.images[(own + 5) % explainer.n_bins, torch.arange(5)]
    assert float((other - x).abs().amax(dim=(1, 2, 3)).min()) > 1e-2
    # the one-bin path agrees with the strip
    torch.testing.assert_close(explainer.counterfactual(x, strip.query_posteriors), kept)


def test_only_a_blend_explainer_has_a_mask(bundle):
    path, _, _ = bundle
    with pytest.raises(ConfigError, match="only a 'blend' generator has a mask"):
        ProgressiveExaggeration.from_checkpoint(path).blend_mask(images(2), 0.9)
