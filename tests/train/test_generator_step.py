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
    tmp_path, weights: dict[str, float], output: str = "image", views: tuple[str, ...] = ()
) -> ExplainerModule:
    """The real module (small real networks, the generator's `output`, the discriminator's
    `views`, one D step per G step) explaining the stub black box."""
    path = tmp_path / "classifier.pt2"
    batch = torch.export.Dim("batch")
    example = (torch.zeros(2, 3, SIZE, SIZE),)
    program = torch.export.export(StubLogit(), example, dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    networks = tiny_networks(output=output)
    networks["discriminator"]["views"] = list(views)
    return ExplainerModule(
        str(path), image_size=SIZE, n_bins=N_BINS, weights=weights,
        optimisation={"n_critic": 1}, **networks,
    )  # fmt: skip


def run_step(
    tmp_path, monkeypatch, weights: dict[str, float], seed: int = 3, module=None, generator=None
):
    """One generator turn; returns the batch, its bins, the logged losses and the totals."""
    module = module or tiny_module(tmp_path, weights)
    module.generator = generator or StubGenerator()
    # The module's own averaging rule, over the stub.
    averaging = warmup_ema(module.averaging.decay)
    module.ema = AveragedModel(module.generator, multi_avg_fn=averaging, use_buffers=True)
    module.discriminator = StubDiscriminator()
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


# --- weights.redraw: the blend's classifier term moves the mask, not what is drawn ----------


class StubBlendGenerator(StubGenerator):
    """A blend whose mask is sigmoid(`mask_logit`) everywhere and whose drawing is the closed
    form `generate` plus `shade`: the two parameters a gradient can reach, one each."""

    def __init__(self) -> None:
        super().__init__()
        self.mask_logit = nn.Parameter(torch.tensor(0.4))
        self.shade = nn.Parameter(torch.tensor(0.2))

    def render(self, x: torch.Tensor, bins: torch.Tensor, source_bin=None) -> Rendered:
        self.forward_bins.append(bins.clone())
        mask = torch.sigmoid(self.mask_logit).expand(len(x), 1, *x.shape[-2:])
        drawn = generate(x, bins) + self.shade
        return Rendered(mask * drawn + (1 - mask) * x, mask, drawn)


def test_under_weight_redraw_the_blend_classifier_term_reaches_the_mask_only(tmp_path, monkeypatch):
    weights = {"adversarial": 0.0, "classifier": 1.7, "reconstruction": 0.0, "cycle": 0.0}
    weights |= {"embedding": 0.0, "redraw": 0.9}
    module = tiny_module(tmp_path, weights, output="blend")
    stub = StubBlendGenerator()
    images, _, _, target, logged, totals = run_step(
        tmp_path, monkeypatch, weights, module=module, generator=stub
    )
    target_posterior = (target.float() + 0.5) / N_BINS
    mask_logit = stub.mask_logit.detach().clone().requires_grad_(True)
    shade = stub.shade.detach().clone().requires_grad_(True)
    mask = torch.sigmoid(mask_logit)
    drawn = generate(images, target) + shade
    # By hand: the blend's classifier term with the drawing held fixed, and the redraw's terms
    # (adversarial + classifier on the drawing alone).
    blend_term = cross_entropy(logit(mask * drawn.detach() + (1 - mask) * images), target_posterior)
    redraw_term = -critic(drawn, target).mean() + cross_entropy(logit(drawn), target_posterior)
    torch.testing.assert_close(logged["loss/classifier"], blend_term.detach())
    torch.testing.assert_close(logged["loss/redraw"], redraw_term.detach())
    (1.7 * blend_term + 0.9 * redraw_term).backward()
    totals[-1].backward()
    torch.testing.assert_close(stub.mask_logit.grad, mask_logit.grad)
    torch.testing.assert_close(stub.shade.grad, shade.grad)
    # The case tells the two apart: were the drawing not held fixed, the blend term would
    # move it too.
    through = torch.autograd.grad(
        cross_entropy(logit(mask * drawn + (1 - mask) * images), target_posterior), shade
    )[0]
    assert abs(through.item()) > 1e-3


# --- the difference output: x + G(x, c) - G(x, c_x), the redraws trained as the official image --


class StubDifferenceGenerator(StubGenerator):
    """`generate`'s change between the source and the target bin added to the query (unclipped:
    the stubs' values stay small); records the source bins it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.source_bins: list[torch.Tensor] = []

    def render(self, x: torch.Tensor, bins: torch.Tensor, source_bin=None) -> Rendered:
        self.forward_bins.append(bins.clone())
        self.source_bins.append(source_bin.clone())
        drawn, reference = generate(x, bins), generate(x, source_bin)
        return Rendered(x + drawn - reference, drawn=drawn, reference=reference)


def test_the_difference_output_is_judged_whole_and_its_redraws_as_the_official_image(
    tmp_path, monkeypatch
):
    weights = WEIGHTS | {"embedding": 0.0, "redraw": 0.8}
    module = tiny_module(tmp_path, weights, output="difference")
    stub = StubDifferenceGenerator()
    images, posteriors, source, target, logged, totals = run_step(
        tmp_path, monkeypatch, weights, module=module, generator=stub
    )
    torch.testing.assert_close(stub.source_bins[0], source)
    drawn = generate(images, target)
    fakes = images + drawn - generate(images, source)
    cycled = generate(fakes, source)
    target_posterior = (target.float() + 0.5) / N_BINS
    expected = {
        # D: real queries in their own bin; the difference images and the redraws as fakes
        "discriminator": torch.relu(1 - critic(images, source)).mean()
        + torch.relu(1 + critic(torch.cat([fakes, drawn]), torch.cat([target, target]))).mean(),
        "adversarial": -critic(fakes, target).mean(),
        "classifier": cross_entropy(logit(fakes), target_posterior),
        "reconstruction": cross_entropy(logit(cycled), posteriors),
        "cycle": (images - cycled).abs().mean(),
        # the redraw in the query's own bin, reused from the render: the official identity term
        "identity": (images - generate(images, source)).abs().mean(),
        "redraw": -critic(drawn, target).mean() + cross_entropy(logit(drawn), target_posterior),
    }
    for name, value in expected.items():
        torch.testing.assert_close(logged[f"loss/{name}"], value, msg=name)
    torch.testing.assert_close(totals[0], expected["discriminator"])
    hand_sum = sum(weights[name] * expected[name] for name in expected if name != "discriminator")
    torch.testing.assert_close(totals[-1], hand_sum)


def test_the_redraw_weight_needs_a_generator_that_redraws(tmp_path):
    with pytest.raises(ConfigError, match="weights.redraw trains the redraw"):
        tiny_module(tmp_path, {"redraw": 1.0})
    with pytest.raises(ConfigError, match="act on the generator's mask: set generator.output: blend or inpaint"):
        tiny_module(tmp_path, {"mask": 1.0}, output="difference")


# --- the EMA generator: updated on every generator turn, and what is exported -------------


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
