"""What every metric group of the evaluation shares: `EvalContext`, and the figures it returns.

A metric group is a function `(context, output) -> dict[str, float | Figure]`: a plain float is a
set-level figure, a `Figure` carries the per-query values it was computed from, so the suite can
give a bootstrap interval over the queries (`cfgen.evaluate.intervals`). Groups that need what
an evaluation lacks (region masks, an oracle, a judge, the true counterfactual) raise
`NoGroundTruth` and are skipped with the reason.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from cfgen.errors import CfgenError
from cfgen.evaluate import realism
from cfgen.evaluate.intervals import Statistic, mean_of, ratio_of
from cfgen.evaluate.judges import AttributeReading
from cfgen.evaluate.neighbours import NearestNeighbourJudge
from cfgen.evaluate.truth import TrueCounterfactuals

Classifier = Callable[[torch.Tensor], torch.Tensor]
ExplainFn = Callable[[torch.Tensor], torch.Tensor]


class NoGroundTruth(CfgenError):
    """A metric group needs something this evaluation does not have (masks, an oracle)."""


@dataclass
class Figure:
    """A figure with what its bootstrap interval over the queries needs.

    value: the figure; values: per-query tensors (N,) sharing one N, and statistic: how the
    figure is computed from them (vectorised over resamples); or, for a figure that is not a
    simple statistic of per-query values (FID), the interval computed already.
    """

    value: float
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    statistic: Statistic | None = None
    interval: tuple[float, float] | None = None

    @classmethod
    def mean(cls, values: torch.Tensor) -> "Figure":
        """The mean of per-query values (N,) (a rate, when they are 0/1)."""
        values = values.detach().double().cpu()
        return cls(values.mean().item(), {"value": values}, mean_of("value"))

    @classmethod
    def ratio(cls, numerator: torch.Tensor, denominator: torch.Tensor) -> "Figure":
        """mean(numerator) / mean(denominator) over the queries (NaN for a zero denominator)."""
        top, bottom = (t.detach().double().cpu() for t in (numerator, denominator))
        value = (top.mean() / bottom.mean()).item() if bottom.mean() > 0 else float("nan")
        return cls(value, {"top": top, "bottom": bottom}, ratio_of("top", "bottom"))


def plain(scores: dict) -> dict[str, float]:
    """A metric group's scores with every `Figure` replaced by its value."""
    return {key: getattr(value, "value", value) for key, value in scores.items()}


@dataclass
class EvalContext:
    """Everything the metric groups share: the classifier, the queries and their ground truth.

    queries: (N, C, H, W) in [-1, 1]; factors: (N, F) in [0, 1]; masks: (N, R, H, W) in [0, 1];
    real_images / real_posteriors: (M, C, H, W) / (M,), the real reference set for realism;
    real_labels: (M,) its ground truth of the explained attribute (0/1, NaN unknown).
    `oracle` maps (N, C, H, W) -> (N, F) outputs named `factor_names`; `target_reading` says
    which output reads the explained attribute and how (default: `target_factor`, present
    above 0.5); `features` maps images to (N, D) for FID/KID. Judges of the same attribute,
    each (N, C, H, W) -> (N,) posteriors: `judge` (a second classifier trained like the
    explained one), `robust_judge` (one trained adversarially on other images), `neighbours`
    (the labels of the nearest real training images, `NearestNeighbourJudge`). `truth`: the
    queries re-rendered with the explained factor on a grid (`TrueCounterfactuals`, the
    synthetic world only). `identity`: the scored method's counterfactual of each query at its
    own posterior, I(x, c_x), (N, C, H, W); the suite sets it per method.
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
    target_reading: AttributeReading | None = None
    attribute_readings: list[AttributeReading] = field(default_factory=list)
    features: torch.nn.Module | None = None
    judge: Classifier | None = None
    robust_judge: Classifier | None = None
    neighbours: NearestNeighbourJudge | None = None
    truth: TrueCounterfactuals | None = None
    real_images: torch.Tensor | None = None
    real_posteriors: torch.Tensor | None = None
    real_labels: torch.Tensor | None = None
    identity: torch.Tensor | None = None
    robustness_queries: int = 16
    batch_size: int = 64
    seed: int = 0
    # Why a judge or reference the config asked for could not be built (`need` says so).
    unavailable: dict[str, str] = field(default_factory=dict)
    # Filled while the suite runs: the far ends whose pixels COUT inserts into the queries in the
    # order of every map (`cout_reference`), and metric models built once (LPIPS).
    reference_counterfactual: torch.Tensor | None = None
    cache: dict = field(default_factory=dict)

    @property
    def target_factor_index(self) -> int:
        return self.factor_names.index(self.target_factor)

    @property
    def reading(self) -> AttributeReading:
        """How the oracle reads the explained attribute."""
        if self.target_reading is not None:
            return self.target_reading
        if self.target_factor not in self.factor_names:
            raise NoGroundTruth(
                f"the oracle has no output {self.target_factor!r} (outputs: {self.factor_names})"
            )
        return AttributeReading(self.target_factor_index, self.target_factor)

    def encoded(self, name: str) -> torch.Tensor:
        """Features (M, D) of `real_images` or `queries`, extracted once and cached."""
        images = getattr(self, name)
        key = (name, len(images))  # `head` contexts share the cache and hold fewer queries
        if key not in self.cache:
            self.cache[key] = realism.encode(self.need("features"), images, self.batch_size)
        return self.cache[key]

    def target_region_masks(self) -> torch.Tensor:
        """Ground-truth region of the explained factor, (N, H, W) in [0, 1]."""
        if self.masks is None:
            raise NoGroundTruth(
                "the data has no region masks; localisation needs them (the synthetic world's)"
            )
        if self.target_region not in self.region_names:
            raise NoGroundTruth(
                f"no region mask named {self.target_region!r} for the queries (regions: "
                f"{self.region_names}); localisation needs the explained factor's region"
            )
        return self.masks[:, self.region_names.index(self.target_region)].float()

    def head(self, k: int) -> "EvalContext":
        """The same context restricted to the first `k` queries (the cache is shared)."""
        if k >= self.queries.shape[0]:
            return self
        first = slice(0, k)
        sliced = {
            name: getattr(self, name)[first]
            for name in ("queries", "factors", "masks", "reference_counterfactual", "identity")
            if getattr(self, name) is not None
        }
        if self.truth is not None:
            sliced["truth"] = self.truth.head(k)
        return replace(self, **sliced)

    def need(self, name: str):
        """A model the metrics need (`oracle`, `features`, a judge, `truth`), or a clear skip
        reason."""
        value = getattr(self, name)
        if value is None:
            raise NoGroundTruth(
                self.unavailable.get(name) or _MISSING.get(name, f"no {name} given")
            )
        return value


_MISSING = {
    "oracle": "no oracle given: set `oracle` in the evaluation config",
    "features": "no oracle given: set `oracle` in the evaluation config (realism features)",
    "judge": "no judge given: set `judge` in the evaluation config",
    "robust_judge": "no robust judge given: set `robust_judge` in the evaluation config",
    "neighbours": "no nearest-neighbour reference: set `n_neighbours` > 0 in the config",
    "truth": "the data cannot be re-rendered: the true counterfactual needs the synthetic world",
}


@dataclass
class SaliencyOutput:
    """A method's relevance maps for the queries, (N, C, H, W), the callable that made them, and
    how to rebuild that callable on another classifier (the randomisation check), if known."""

    maps: torch.Tensor
    explain: ExplainFn
    name: str | None = None
    rebuild: Callable[[torch.nn.Module], ExplainFn] | None = None
