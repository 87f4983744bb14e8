"""Metric groups the evaluation suite calls by name, on the same held-out queries for every method.

Two kinds of method are scored:
- counterfactual methods (PE, adversarial) give a `Strip`; their relevance map is |x - x_far|,
  x_far the strip's far end opposite to the query's decision;
- saliency methods give a relevance map (N, C, H, W) and an `explain` callable.

Each metric group is a function `(context, output) -> dict[str, float]` registered by name in
`COUNTERFACTUAL_SCORES` or `SALIENCY_SCORES`; the suite's config lists the names to run. The metrics
themselves live in `shift.py`, `realism.py`, `preservation.py`, `faithfulness.py`,
`localisation.py` and `robustness.py`: this file only adapts them to the suite's inputs.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from cfgen.evaluate.shift import compatibility_curve, shift_summary
from cfgen.explain.strip import Strip

Classifier = Callable[[torch.Tensor], torch.Tensor]
ExplainFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EvalContext:
    """Everything the metric groups share: the classifier, the queries and their ground truth.

    queries: (N, C, H, W) in [-1, 1]; factors: (N, F) in [0, 1]; masks: (N, R, H, W) in [0, 1];
    real_images / real_posteriors: (M, C, H, W) / (M,), the real reference set for realism.
    `oracle` maps (N, C, H, W) -> (N, F) factors; `features` maps images to (N, D) for FID/KID.
    """

    classifier: Classifier
    queries: torch.Tensor
    n_bins: int = 10
    factors: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    factor_names: list[str] = field(default_factory=list)
    region_names: list[str] = field(default_factory=list)
    target_factor: str = "smile"
    target_region: str | None = "mouth"
    oracle: Classifier | None = None
    features: torch.nn.Module | None = None
    real_images: torch.Tensor | None = None
    real_posteriors: torch.Tensor | None = None
    robustness_queries: int = 16
    batch_size: int = 64

    @property
    def target_factor_index(self) -> int:
        return self.factor_names.index(self.target_factor)

    def target_masks(self) -> torch.Tensor | None:
        """Ground-truth region of the explained factor, (N, 1, H, W), or None without masks."""
        if self.masks is None or self.target_region not in self.region_names:
            return None
        index = self.region_names.index(self.target_region)
        return self.masks[:, index : index + 1].float()


@dataclass
class SaliencyOutput:
    """A saliency method's maps for the queries, (N, C, H, W), and the callable that made them."""

    maps: torch.Tensor
    explain: ExplainFn


def far_end(strip: Strip) -> torch.Tensor:
    """Each query's counterfactual at the strip end opposite to its decision, (N, C, H, W).

    A query the classifier calls absent (f < 0.5) is explained by its last (most present)
    image, a present one by its first: the same direction `flip_rate` scores.
    """
    goes_up = (strip.query_posteriors < 0.5).view(-1, *([1] * (strip.images.dim() - 2)))
    return torch.where(goes_up, strip.images[-1], strip.images[0])


def counterfactual_map(queries: torch.Tensor, strip: Strip) -> torch.Tensor:
    """The counterfactual's relevance map |x - x_far|, (N, C, H, W)."""
    return (queries - far_end(strip)).abs()


def score_shift(context: EvalContext, strip: Strip) -> dict[str, float]:
    """Flip rate, compatibility MAE and monotonicity of the strip (`shift.py`)."""
    return shift_summary(
        strip.posteriors, strip.target_bins, strip.query_posteriors, context.n_bins
    )


def curve(context: EvalContext, strip: Strip) -> dict[str, list[float]]:
    """Target vs achieved posterior per bin, as lists for `results.json` and the report."""
    values = compatibility_curve(strip.posteriors, strip.target_bins, context.n_bins)
    return {key: value.tolist() for key, value in values.items()}


COUNTERFACTUAL_SCORES: dict[str, Callable[[EvalContext, Strip], dict[str, float]]] = {
    "shift": score_shift,
}
SALIENCY_SCORES: dict[str, Callable[[EvalContext, SaliencyOutput], dict[str, float]]] = {}
