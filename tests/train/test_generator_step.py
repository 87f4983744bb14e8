"""The explainer's loss assembly, against sums computed by hand from stub networks.

`ExplainerModule.training_step` runs one discriminator and one generator step (n_critic 1) on
stub networks whose outputs are closed forms of (image, bin): every term of the generator's loss
(`cfgen.train.explainer_objective`) is then
known by hand, so the test pins which bin each network is called with, which target each
classifier term uses (the target bin's centre for the classifier term, the query's own posterior
for the reconstruction term), the signs, and that a weight of 0 leaves its term out.
"""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from cfgen.errors import ConfigError
from cfgen.io import load_bundle
from cfgen.models.generator import Rendered
from cfgen.train.explainer import ExplainerModule
from cfgen.train.explainer_steps import warmup_ema
from tests.helpers import tiny_networks

N_BINS = 10
SIZE = 8
WEIGHTS = {
    "adversarial": 0.3,
    "classifier": 1.7,
    "reconstruction": 0.6,
    "cycle": 2.5,
    "embedding": 3.5,
    "identity": 1.1,
}


# --- stub networks: closed forms whose every output depends on the bin ----------------------


def encode(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    return x + 0.1 * (bins.float() + 1)[:, None, None, None]


def decode(h: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    return 0.5 * h - 0.03 * (bins.float() + 1).pow(2)[:, None, None, None]


def generate(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    return decode(encode(x, bins), bins)


def critic(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(1, 2, 3)) * (1.0 + bins.float()) - 0.2 * bins.float()


def logit(x: torch.Tensor) -> torch.Tensor:
    """The stub black box's logit: 4 * mean of channel 0 + 0.5, (N, C, H, W) -> (N,)."""
    return 4.0 * x[:, 0].mean(dim=(1, 2)) + 0.5


class StubGenerator(nn.Module):
    """The `Generator` interface (`encode` to a list of features whose last is the embedding,
    `decode` to a `Rendered`, `render`) as the closed forms above; records the bins of each
    `render` call."""

    output = "image"

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # something for the EMA to average
        self.forward_bins: list[torch.Tensor] = []

    def encode(self, x: torch.Tensor, bins: torch.Tensor) -> list[torch.Tensor]:
        return [encode(x, bins)]

    def decode(self, features: list[torch.Tensor], query: torch.Tensor, bins) -> Rendered:
        return Rendered(decode(features[-1], bins))

    def render(self, x: torch.Tensor, bins: torch.Tensor, source_bin=None) -> Rendered:
        self.forward_bins.append(bins.clone())
        return Rendered(generate(x, bins))

    def forward(self, x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        return self.render(x, bins).image


class StubDiscriminator(nn.Module):
    def forward(self, x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        return critic(x, bins)


class StubLogit(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logit(x)[:, None]


class NoOptimizer:
    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def step(self) -> None:
        pass


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(logits) against target posteriors, written out."""
    p = torch.sigmoid(logits)
    return -(target * p.log() + (1 - target) * (1 - p).log()).mean()


# --- one training step of the real module on the stubs ---------------------------------------


def tiny_module(
    tmp_path,
    weights: dict[str, float],
    output: str = "image",
    views: tuple[str, ...] = (),
    classifier_term: dict | None = None,
    patch_size: int = 0,
    patch_negatives: str = "none",
    patch_fakes: str = "all",
    history: int = 0,
) -> ExplainerModule:
    """The real module (small real networks, the generator's `output`, the discriminator's
    `views`, `patch_size` and `patch_negatives`, one D step per G step, the `classifier_term`
    options) explaining the stub black box."""
    path = tmp_path / "classifier.pt2"
    batch = torch.export.Dim("batch")
    example = (torch.zeros(2, 3, SIZE, SIZE),)
    program = torch.export.export(StubLogit(), example, dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    networks = tiny_networks(output=output)
    networks["discriminator"]["views"] = list(views)
    networks["discriminator"] |= {
        "patch_size": patch_size,
        "patch_negatives": patch_negatives,
        "patch_fakes": patch_fakes,
        "history": history,
    }
    return ExplainerModule(
        str(path), image_size=SIZE, n_bins=N_BINS, weights=weights,
        optimisation={"n_critic": 1}, classifier_term=classifier_term or {}, **networks,
    )  # fmt: skip


def run_step(
    tmp_path,
    monkeypatch,
    weights: dict[str, float],
    seed: int = 3,
    module=None,
    generator=None,
    discriminator=None,
):
    """One generator turn; returns the batch, its bins, the logged losses and the totals."""
    module = module or tiny_module(tmp_path, weights)
    module.generator = generator or StubGenerator()
    # The module's own averaging rule, over the stub.
    averaging = warmup_ema(module.averaging.decay)
    module.ema = AveragedModel(module.generator, multi_avg_fn=averaging, use_buffers=True)
    module.discriminator = discriminator or StubDiscriminator()
    module.trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    module.on_fit_start()  # checks the black box once, as training does
    logged, totals = {}, []
    monkeypatch.setattr(module, "log_dict", lambda values, **kwargs: logged.update(values))
    monkeypatch.setattr(module, "manual_backward", lambda loss, *a, **k: totals.append(loss))
    monkeypatch.setattr(module, "optimizers", lambda *a, **k: [NoOptimizer(), NoOptimizer()])

    torch.manual_seed(seed)
    images = torch.rand(8, 3, SIZE, SIZE) * 2 - 1
    posteriors = torch.sigmoid(logit(images))
    module.training_step({"image": images, "posterior": posteriors}, 0)
    source = (posteriors * N_BINS).floor().long()
    target = module.generator.forward_bins[0]
    assert bool((target != source).all()), "pick a seed whose target bins differ from the source"
    return images, posteriors, source, target, logged, totals


def expected_terms(images, posteriors, source, target) -> dict[str, torch.Tensor]:
    """The official terms, by hand: x, f(x), the query's bin c_x = source, the target bin c."""
    fakes = generate(images, target)
    cycled = generate(fakes, source)
    return {
        "discriminator": torch.relu(1 - critic(images, source)).mean()
        + torch.relu(1 + critic(fakes, target)).mean(),
        "adversarial": -critic(fakes, target).mean(),
        "classifier": cross_entropy(logit(fakes), (target.float() + 0.5) / N_BINS),
        "reconstruction": cross_entropy(logit(cycled), posteriors),
        "cycle": (images - cycled).abs().mean(),
        "embedding": (encode(images, source) - encode(fakes, source)).pow(2).mean(),
        "identity": (images - generate(images, source)).abs().mean(),
    }


def test_every_term_and_the_weighted_sum_match_the_hand_computation(tmp_path, monkeypatch):
    images, posteriors, source, target, logged, totals = run_step(tmp_path, monkeypatch, WEIGHTS)
    expected = expected_terms(images, posteriors, source, target)
    for name, value in expected.items():
        torch.testing.assert_close(logged[f"loss/{name}"], value, msg=name)
    discriminator_total, generator_total = totals
    torch.testing.assert_close(discriminator_total, expected["discriminator"])
    hand_sum = sum(weight * expected[name] for name, weight in WEIGHTS.items())
    torch.testing.assert_close(generator_total, hand_sum)
    torch.testing.assert_close(logged["loss/generator"], hand_sum)


@pytest.mark.parametrize("left_out", ["adversarial", "classifier", "reconstruction", "cycle"])
def test_a_zero_weight_leaves_its_term_out(tmp_path, monkeypatch, left_out):
    weights = WEIGHTS | {left_out: 0.0, "embedding": 0.0, "identity": 0.0}
    images, posteriors, source, target, logged, totals = run_step(tmp_path, monkeypatch, weights)
    expected = expected_terms(images, posteriors, source, target)
    kept = {name: weight for name, weight in weights.items() if weight > 0}
    assert left_out not in kept and len(kept) == 3
    hand_sum = sum(weight * expected[name] for name, weight in kept.items())
    torch.testing.assert_close(totals[-1], hand_sum)
    # The sum without the term differs from the sum with it: the case can tell them apart.
    assert not torch.allclose(hand_sum, hand_sum + WEIGHTS[left_out] * expected[left_out])


# --- discriminator views: D judges views of real and generated images alike -----------------


def view(x: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for the random views: halves, mirrors and lifts each image."""
    return 0.5 * x.flip(-1) + 0.1


def test_the_discriminator_judges_views_of_the_real_and_the_generated_images(tmp_path, monkeypatch):
    module = tiny_module(tmp_path, WEIGHTS, views=("translation", "cutout"))
    assert module.discriminator_views.names == ["translation", "cutout"]
    monkeypatch.setattr(module, "discriminator_views", view)
    images, posteriors, source, target, logged, totals = run_step(
        tmp_path, monkeypatch, WEIGHTS, module=module
    )
    plain = expected_terms(images, posteriors, source, target)
    fakes = generate(images, target)
    expected = plain | {
        "discriminator": torch.relu(1 - critic(view(images), source)).mean()
        + torch.relu(1 + critic(view(fakes), target)).mean(),
        "adversarial": -critic(view(fakes), target).mean(),
    }
    for name, value in expected.items():
        torch.testing.assert_close(logged[f"loss/{name}"], value, msg=name)
    torch.testing.assert_close(totals[0], expected["discriminator"])
    torch.testing.assert_close(
        totals[-1], sum(weight * expected[name] for name, weight in WEIGHTS.items())
    )
    # The case tells views from none: D's terms differ, the black box's do not.
    for name in ("discriminator", "adversarial"):
        assert abs(float(expected[name] - plain[name])) > 1e-3, name


# --- the patch critic: a hinge over every window, for D and for G --------------------------


def patch_critic(x: torch.Tensor) -> torch.Tensor:
    """A closed-form stand-in for the patch critic: a score per pixel, (N, H, W)."""
    return 2.0 * x[:, 0] - x[:, 1] + 0.3


class StubPatchDiscriminator(StubDiscriminator):
    def patch_scores(self, x: torch.Tensor) -> torch.Tensor:
        return patch_critic(x)


def test_the_patch_critic_adds_a_hinge_over_every_window_to_both_steps(tmp_path, monkeypatch):
    weights = WEIGHTS | {"patch": 0.8}
    module = tiny_module(tmp_path, weights, patch_size=3)
    assert module.discriminator.patch is not None
    monkeypatch.setattr(module, "discriminator_views", view)
    images, posteriors, source, target, logged, totals = run_step(
        tmp_path, monkeypatch, weights, module=module, discriminator=StubPatchDiscriminator()
    )
    fakes = generate(images, target)
    expected = expected_terms(images, posteriors, source, target) | {
        "discriminator": torch.relu(1 - critic(view(images), source)).mean()
        + torch.relu(1 + critic(view(fakes), target)).mean(),
        "discriminator_patch": torch.relu(1 - patch_critic(view(images))).mean()
        + torch.relu(1 + patch_critic(view(fakes))).mean(),
        "adversarial": -critic(view(fakes), target).mean(),
        "patch": -patch_critic(view(fakes)).mean(),
    }
    for name, value in expected.items():
        torch.testing.assert_close(logged[f"loss/{name}"], value, msg=name)
    torch.testing.assert_close(
        totals[0], expected["discriminator"] + expected["discriminator_patch"]
    )
    torch.testing.assert_close(
        totals[-1], sum(weight * expected[name] for name, weight in weights.items())
    )
    assert abs(float(expected["patch"])) > 1e-2  # the case tells the term from none


def test_cutmix_negatives_add_the_fake_hinge_over_the_windows_on_the_pasted_box(
    tmp_path, monkeypatch
):
    weights = WEIGHTS | {"patch": 0.8}
    module = tiny_module(tmp_path, weights, patch_size=3, patch_negatives="cutmix")
    negatives = torch.rand(8, 3, SIZE, SIZE) * 2 - 1
    windows = torch.zeros(8, SIZE, SIZE)
    windows[:, 2:5, 3:7] = 1.0
    calls = []

    def fixed_negatives(images, reach):
        calls.append((images, reach))
        return negatives, windows

    monkeypatch.setattr("cfgen.train.explainer.cutmix_negatives", fixed_negatives)
    images, _, _, _, logged, totals = run_step(
        tmp_path, monkeypatch, weights, module=module, discriminator=StubPatchDiscriminator()
    )
    assert len(calls) == 1 and calls[0][1] == 1 and torch.equal(calls[0][0], images)
    on_box = torch.relu(1 + patch_critic(negatives))[:, 2:5, 3:7].mean()
    torch.testing.assert_close(logged["loss/discriminator_negatives"], on_box)
    expected_total = logged["loss/discriminator"] + logged["loss/discriminator_patch"] + on_box
    torch.testing.assert_close(totals[0], expected_total)
    with pytest.raises(ConfigError, match="patch_negatives trains the patch critic: set"):
        tiny_module(tmp_path, WEIGHTS, patch_negatives="cutmix")


def test_edited_fakes_score_only_the_windows_that_see_an_edit_in_both_steps(tmp_path, monkeypatch):
    weights = WEIGHTS | {"patch": 0.8}
    module = tiny_module(tmp_path, weights, patch_size=5, patch_fakes="edited")
    monkeypatch.setattr(module, "discriminator_views", view)  # D's views; the windows take none
    windows = torch.zeros(8, SIZE, SIZE)
    windows[:, 1:4, 2:6] = 1.0
    calls = []

    def fixed_windows(images, frames, reach):
        calls.append((images, frames, reach))
        return windows

    monkeypatch.setattr("cfgen.train.explainer.edited_windows", fixed_windows)
    monkeypatch.setattr("cfgen.train.explainer_objective.edited_windows", fixed_windows)
    images, posteriors, source, target, logged, totals = run_step(
        tmp_path, monkeypatch, weights, module=module, discriminator=StubPatchDiscriminator()
    )
    fakes = generate(images, target)
    assert [call[2] for call in calls] == [2, 2]  # D's step, then G's: a 5 px window's reach
    for call in calls:
        torch.testing.assert_close(call[0], images)
        torch.testing.assert_close(call[1], fakes)
    on_edits = torch.relu(1 + patch_critic(fakes))[:, 1:4, 2:6].mean()
    real = torch.relu(1 - patch_critic(images)).mean()
    torch.testing.assert_close(logged["loss/discriminator_patch"], real + on_edits)
    torch.testing.assert_close(logged["loss/patch"], -patch_critic(fakes)[:, 1:4, 2:6].mean())
    torch.testing.assert_close(totals[0], logged["loss/discriminator"] + real + on_edits)
    with pytest.raises(ConfigError, match="patch_fakes trains the patch critic: set"):
        tiny_module(tmp_path, WEIGHTS, patch_fakes="edited")


def test_with_a_history_the_discriminator_judges_the_mixed_fakes(tmp_path, monkeypatch):
    module = tiny_module(tmp_path, WEIGHTS, history=64)
    mixed = torch.rand(8, 3, SIZE, SIZE) * 2 - 1
    mixed_bins = torch.arange(8) % N_BINS
    calls = []

    def fixed_mix(fakes, bins):
        calls.append((fakes, bins))
        return mixed, mixed_bins

    monkeypatch.setattr(module.fake_history, "mix", fixed_mix)
    images, _, source, target, logged, totals = run_step(
        tmp_path, monkeypatch, WEIGHTS, module=module
    )
    assert len(calls) == 1
    torch.testing.assert_close(calls[0][0], generate(images, target))
    assert torch.equal(calls[0][1], target)
    expected = torch.relu(1 - critic(images, source)).mean()
    expected = expected + torch.relu(1 + critic(mixed, mixed_bins)).mean()
    torch.testing.assert_close(logged["loss/discriminator"], expected)
    torch.testing.assert_close(totals[0], expected)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"history": -1}, "discriminator.history must be >= 0"),
        ({"history": 8, "patch_fakes": "edited", "patch_size": 3}, "use one or the other"),
    ],
)
def test_a_bad_history_is_refused(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        tiny_module(
            tmp_path, WEIGHTS | {"patch": 1.0 if "patch_size" in options else 0.0}, **options
        )


@pytest.mark.parametrize(("weights", "patch_size"), [({"patch": 1.0}, 0), ({"patch": 0.0}, 9)])
def test_the_patch_critic_and_its_term_go_together(tmp_path, weights, patch_size):
    with pytest.raises(ConfigError, match="weights.patch and discriminator.patch_size go"):
        tiny_module(tmp_path, WEIGHTS | weights, patch_size=patch_size)


# --- weights.redraw: the blend's classifier term moves the mask, not what is drawn ----------


def test_a_generator_turn_moves_the_ema_generator_by_its_warm_up_decay(tmp_path, monkeypatch):
    module = tiny_module(tmp_path, WEIGHTS)
    fit_start = module.on_fit_start

    def stubs_with_weights_apart() -> None:
        # Once run_step has put the stubs in: the generator's weight 1, the average's 0.
        fit_start()
        module.generator.unused.data.fill_(1.0)
        module.ema_generator.unused.data.fill_(0.0)

    monkeypatch.setattr(module, "on_fit_start", stubs_with_weights_apart)
    run_step(tmp_path, monkeypatch, WEIGHTS, module=module)
    assert module.generator.unused.item() == 1.0  # the stub optimiser changed nothing
    # AveragedModel's first update copies the generator (nothing averaged yet)...
    assert int(module.ema.n_averaged) == 1
    torch.testing.assert_close(module.ema_generator.unused.item(), 1.0)
    # ...the next one moves the average by 1 - d, d = min(averaging.decay, (1 + k) / (10 + k)),
    # k = 1.
    module.generator.unused.data.fill_(3.0)
    module._update_ema()
    decay = min(module.averaging.decay, 2 / 11)
    torch.testing.assert_close(module.ema_generator.unused.item(), 1.0 + (1.0 - decay) * 2.0)


def test_export_writes_the_ema_generator_not_the_raw_one(tmp_path):
    module = tiny_module(tmp_path, WEIGHTS)
    with torch.no_grad():
        for parameter in module.ema_generator.parameters():
            parameter.add_(1.0)
    module.export(tmp_path / "explainer.pt")
    exported = load_bundle(tmp_path / "explainer.pt", "explainer")["state_dict"]
    ema, raw = module.ema_generator.state_dict(), module.generator.state_dict()
    assert exported.keys() == ema.keys()
    for key, value in ema.items():
        torch.testing.assert_close(exported[key], value, msg=key)
    assert any(not torch.equal(exported[key], raw[key]) for key in raw)
