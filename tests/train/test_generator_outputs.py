"""The loss assembly of the masked and redrawing generator outputs, on the stub networks of
`tests/train/test_generator_step.py`: the blend's classifier term under `weights.redraw`, the
difference output's two redraws, and the redraw weight's check.
"""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from cfgen.errors import ConfigError
from cfgen.models.generator import Rendered
from cfgen.models.rearrange import warp
from cfgen.train.explainer_options import ClassifierTerm
from tests.train.test_generator_step import (
    N_BINS,
    WEIGHTS,
    StubGenerator,
    critic,
    cross_entropy,
    generate,
    logit,
    run_step,
    tiny_module,
)


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
    with pytest.raises(
        ConfigError,
        match="act on the generator's mask: set generator.output: blend, warp_blend or inpaint",
    ):
        tiny_module(tmp_path, {"mask": 1.0}, output="difference")


class StubWarpGenerator(StubGenerator):
    """The closed form `generate` with a flow of `slope` px more per column, so that the flow's
    total variation is `slope` by construction (horizontal steps of `slope`, vertical ones 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.slope = nn.Parameter(torch.tensor(0.3))

    def render(self, x: torch.Tensor, bins: torch.Tensor, source_bin=None) -> Rendered:
        self.forward_bins.append(bins.clone())
        columns = torch.arange(x.shape[-1], dtype=x.dtype).expand(len(x), 2, *x.shape[-2:])
        return Rendered(generate(x, bins), flow=self.slope * columns)


def test_the_flow_smoothness_term_is_the_flows_total_variation(tmp_path, monkeypatch):
    weights = {"adversarial": 0.0, "classifier": 0.0, "reconstruction": 0.0, "cycle": 0.0}
    weights |= {"embedding": 0.0, "flow_tv": 2.0}
    module = tiny_module(tmp_path, weights, output="warp")
    stub = StubWarpGenerator()
    *_, logged, totals = run_step(tmp_path, monkeypatch, weights, module=module, generator=stub)
    torch.testing.assert_close(logged["loss/flow_tv"], torch.tensor(0.3))
    totals[-1].backward()
    torch.testing.assert_close(stub.slope.grad, torch.tensor(2.0))  # d(2 |slope|) / d slope
    with pytest.raises(ConfigError, match="weights.flow_tv smooths a warp's flow"):
        tiny_module(tmp_path, {"flow_tv": 1.0}, output="blend")


class StubWarpBlendGenerator(StubBlendGenerator):
    """The stub blend drawn over the query shifted by `push` pixels to the right, everywhere:
    m (generate + shade) + (1 - m) warp(x, push)."""

    def __init__(self) -> None:
        super().__init__()
        self.push = nn.Parameter(torch.tensor(0.6))

    def render(self, x: torch.Tensor, bins: torch.Tensor, source_bin=None) -> Rendered:
        self.forward_bins.append(bins.clone())
        mask = torch.sigmoid(self.mask_logit).expand(len(x), 1, *x.shape[-2:])
        drawn = generate(x, bins) + self.shade
        flow = torch.stack([-self.push, torch.zeros(())]).view(1, 2, 1, 1)
        flow = flow.expand(len(x), 2, *x.shape[-2:])
        moved = warp(x, flow)
        return Rendered(mask * drawn + (1 - mask) * moved, mask, drawn, flow=flow)


@pytest.mark.parametrize("share", [0.0, 0.25])
def test_a_fixed_drawing_leaves_the_classifier_term_the_mask_and_the_flow(
    tmp_path, monkeypatch, share
):
    weights = {"adversarial": 0.0, "classifier": 1.7, "reconstruction": 0.0, "cycle": 0.0}
    weights |= {"embedding": 0.0}
    term_options = {"drawing": "fixed", "drawing_gradient": share}
    module = tiny_module(tmp_path, weights, output="warp_blend", classifier_term=term_options)
    stub = StubWarpBlendGenerator()
    images, _, _, target, logged, totals = run_step(
        tmp_path, monkeypatch, weights, module=module, generator=stub
    )
    target_posterior = (target.float() + 0.5) / N_BINS
    mask_logit, shade, push = (
        p.detach().clone().requires_grad_(True) for p in (stub.mask_logit, stub.shade, stub.push)
    )
    mask = torch.sigmoid(mask_logit)
    drawn = generate(images, target) + shade
    # By hand: the query shifted right by `push` pixels (bilinear: a mix of the whole-pixel
    # shifts either side, the border column repeated), the drawing held fixed.
    whole = int(push.detach().floor())
    left = torch.cat([images[..., :1].expand(*images.shape[:-1], whole), images], -1)
    right = torch.cat([images[..., :1].expand(*images.shape[:-1], whole + 1), images], -1)
    width = images.shape[-1]
    moved = (1 - (push - whole)) * left[..., :width] + (push - whole) * right[..., :width]
    term = cross_entropy(logit(mask * drawn.detach() + (1 - mask) * moved), target_posterior)
    torch.testing.assert_close(logged["loss/classifier"], term.detach())
    (1.7 * term).backward()
    totals[-1].backward()
    torch.testing.assert_close(stub.mask_logit.grad, mask_logit.grad)
    torch.testing.assert_close(stub.push.grad, push.grad)
    assert abs(push.grad.item()) > 1e-4  # the flow is moved by the term
    # The case tells the two apart: a trained drawing is moved by the same term.
    through = torch.autograd.grad(
        cross_entropy(logit(mask * drawn + (1 - mask) * moved), target_posterior), shade
    )[0]
    assert abs(through.item()) > 1e-3
    # The drawing gets none of that gradient, or the share asked for.
    drawing_grad = torch.zeros(()) if stub.shade.grad is None else stub.shade.grad
    torch.testing.assert_close(drawing_grad, share * 1.7 * through)
    with pytest.raises(ConfigError, match="classifier_term.drawing: fixed keeps"):
        tiny_module(tmp_path, {}, output="warp", classifier_term={"drawing": "fixed"})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"drawing": "fixed", "drawing_gradient": 1.0}, r"in \[0, 1\), got 1.0: 1 is"),
        ({"drawing": "fixed", "drawing_gradient": -0.1}, r"in \[0, 1\), got -0.1"),
        ({"drawing_gradient": 0.5}, "set classifier_term.drawing: fixed"),
    ],
)
def test_a_share_of_the_drawing_gradient_is_refused_out_of_range_or_unfixed(options, message):
    with pytest.raises(ConfigError, match=message):
        ClassifierTerm(**options)


# --- the EMA generator: updated on every generator turn, and what is exported -------------


def test_a_fixed_drawing_is_trained_in_full_during_its_warm_up_only():
    term = ClassifierTerm(drawing="fixed", drawing_gradient=0.2, drawing_warmup=0.3)
    shares = [term.drawing_share(done, total=100) for done in (0, 29, 30, 99)]
    assert shares == [1.0, 1.0, 0.2, 0.2]
    assert ClassifierTerm(drawing="fixed").drawing_share(0, None) == 0.0
    assert ClassifierTerm().drawing_share(50, 100) == 1.0  # a trained drawing, always
    with pytest.raises(ConfigError, match="drawing_warmup needs the run's length: give --gen"):
        term.drawing_share(0, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"drawing": "fixed", "drawing_warmup": 1.0}, r"drawing_warmup must be in \[0, 1\)"),
        ({"drawing_warmup": 0.5}, "drawing_warmup ends the training of a fixed drawing: set"),
    ],
)
def test_a_warm_up_is_refused_out_of_range_or_unfixed(options, message):
    with pytest.raises(ConfigError, match=message):
        ClassifierTerm(**options)


def test_the_module_hands_the_objective_the_share_of_the_current_step(tmp_path, monkeypatch):
    term_options = {"drawing": "fixed", "drawing_warmup": 0.5}
    module = tiny_module(tmp_path, {}, output="warp_blend", classifier_term=term_options)
    module.trainer = pl.Trainer(accelerator="cpu", logger=False, max_steps=20)  # 10 G steps
    shares = {}
    for done in (4, 5):
        monkeypatch.setattr(type(module), "generator_steps", property(lambda self, d=done: d))
        shares[done] = module.objective().drawing_share
    assert shares == {4: 1.0, 5: 0.0}
