"""Robustness of explanations: max-sensitivity, infidelity, and the randomisation check.

All take the explanation as a callable `explain(x, target) -> (N, C, H, W)` (any explainer's
`.explain`), or, for the randomisation check, a factory that builds one from a classifier (a
registry name or a callable): never a concrete explainer class.

- `max_sensitivity`: captum's `sensitivity_max`, the largest relative change
  |e(x + d) - e(x)| / |e(x)| over random d in an L-infinity ball (Yeh et al., 2019).
- `infidelity`: captum's `infidelity` with Gaussian perturbations I: the mean squared gap
  between I . e(x) and s(x) - s(x - I), s the classifier's score toward the target
  (`cfgen.explain.score`) that saliency maps attribute.
- `cascading_randomisation`: the sanity check of Adebayo et al. ("Sanity Checks for Saliency
  Maps", NeurIPS 2018): re-initialise the classifier's layers from the output down, one more
  each step, on a deep copy, and compare each map with the original one by Spearman rank
  correlation and SSIM. A method whose maps do not change while the model is destroyed does not
  explain the model.
"""

import copy
from collections.abc import Callable

import scipy.stats
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

from cfgen.errors import ClassifierError
from cfgen.explain.base import Classifier, resolve_target
from cfgen.explain.score import DirectionScore, direction_index

Explain = Callable[[torch.Tensor, torch.Tensor | float | None], torch.Tensor]
ExplainerFactory = str | Callable[[nn.Module], object]


def _per_query_target(target: torch.Tensor | float | None, n: int):
    """captum leaves a one-element target unexpanded; explainers want one target per query."""
    if isinstance(target, torch.Tensor) and target.numel() == 1:
        return target.reshape(()).expand(n)
    return target


def max_sensitivity(
    explain: Explain,
    x: torch.Tensor,
    target: torch.Tensor | float | None = None,
    radius: float = 0.02,
    samples: int = 10,
) -> torch.Tensor:
    """Max relative change of the map over `samples` uniform perturbations of L-inf `radius`.

    x: (N, C, H, W); target: as in `explain` (resolve it first to fix each query's direction);
    returns (N,). A map that ignores its input scores 0.
    """

    def explanation(inputs: tuple[torch.Tensor], target=None) -> tuple[torch.Tensor]:
        # captum hands the inputs over as a 1-tuple and wants the maps the same way. Perturbed
        # images stay images: clamped to [-1, 1] (PE refuses anything outside it).
        (images,) = inputs
        images = images.clamp(-1.0, 1.0)
        return (explain(images, _per_query_target(target, images.shape[0])),)

    kwargs = {} if target is None else {"target": target}
    return sensitivity_max(
        explanation, x, perturb_radius=radius, n_perturb_samples=samples, **kwargs
    ).detach()


def infidelity(
    classifier: Classifier,
    explain: Explain,
    x: torch.Tensor,
    target: torch.Tensor | float | None = None,
    noise: float = 0.05,
    samples: int = 10,
    score: str = "logit",
    normalize: bool = False,
) -> torch.Tensor:
    """E_I[(I . e(x) - (s(x) - s(x - I)))^2], I ~ N(0, noise^2), per query, (N,).

    `score` must be the one the explainer attributes (`CaptumSaliency`'s default: logit).
    `normalize` rescales each map by its least-squares-optimal factor first (captum's option).
    """
    target = resolve_target(classifier, x, target)
    relevance = explain(x, target)
    if relevance.shape != x.shape:
        raise ValueError(
            f"explain returned a map shaped {tuple(relevance.shape)} for x {tuple(x.shape)}"
        )

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        perturbation = torch.randn_like(inputs) * noise
        return perturbation, inputs - perturbation

    return captum_infidelity(
        DirectionScore(classifier, score),
        perturb,
        x,
        relevance,
        target=direction_index(classifier, x, target),
        n_perturb_samples=samples,
        normalize=normalize,
    ).detach()


def randomisable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Layers with a weight matrix or kernel and their own random init, input to output order.

    Registration order stands for depth, as in every `nn.Sequential`-built classifier.
    """
    return [
        (name, module)
        for name, module in model.named_modules()
        if hasattr(module, "reset_parameters")
        and isinstance(getattr(module, "weight", None), torch.Tensor)
        and module.weight.dim() >= 2
    ]


def _rank_correlation(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of two maps per query, (N, ...) -> (N,); 0 when one is constant."""
    first = first.flatten(1).double().cpu().numpy()
    second = second.flatten(1).double().cpu().numpy()
    values = []
    for a, b in zip(first, second, strict=True):
        constant = a.min() == a.max() or b.min() == b.max()
        values.append(0.0 if constant else scipy.stats.spearmanr(a, b).statistic)
    return torch.tensor(values, dtype=torch.float32)


def _map_ssim(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """SSIM of |maps| summed over channels and scaled to [0, 1] per query, (N,)."""

    def normalise(relevance: torch.Tensor) -> torch.Tensor:
        magnitude = relevance.abs().sum(dim=1, keepdim=True)
        return magnitude / magnitude.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)

    size = min(11, *first.shape[-2:])
    kernel = size if size % 2 else size - 1
    return structural_similarity_index_measure(
        normalise(first), normalise(second), kernel_size=kernel, data_range=1.0, reduction="none"
    )


SIMILARITIES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "spearman": lambda a, b: _rank_correlation(a.abs(), b.abs()),
    "spearman_signed": _rank_correlation,
    "ssim": _map_ssim,
}


def _explain_with(factory: ExplainerFactory, model: nn.Module, options: dict) -> Explain:
    if isinstance(factory, str):
        from cfgen.explain.registry import build_explainer

        return build_explainer(factory, model, **options).explain
    explainer = factory(model, **options)
    return explainer.explain if hasattr(explainer, "explain") else explainer


def cascading_randomisation(
    model: nn.Module,
    explainer: ExplainerFactory,
    x: torch.Tensor,
    target: torch.Tensor | float | None = None,
    seed: int = 0,
    **options,
) -> list[dict[str, object]]:
    """Map similarity after randomising the top 1, 2, ... layers of a copy of `model`.

    explainer: a registry name (`cfgen.explain.registry`) or a callable `(model, **options)`
    returning an explainer or an explain function. Returns one row per step, output layer first:
    {"layer": name, **{similarity: mean over queries}} for every entry of `SIMILARITIES`.
    """
    layers = randomisable_layers(model)
    if not layers:
        raise ClassifierError(
            "the classifier has no layer with a weight matrix and reset_parameters(); "
            "cascading randomisation needs nn.Linear / nn.Conv2d-style layers"
        )
    target = resolve_target(model, x, target)
    original = _explain_with(explainer, model, options)(x, target)
    randomised = copy.deepcopy(model)
    by_name = dict(randomised.named_modules())
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    rows = []
    try:
        for name, _ in reversed(layers):
            by_name[name].reset_parameters()
            relevance = _explain_with(explainer, randomised, options)(x, target)
            row = {key: fn(original, relevance).mean().item() for key, fn in SIMILARITIES.items()}
            rows.append({"layer": name, **row})
    finally:
        torch.random.set_rng_state(generator_state)
    return rows
