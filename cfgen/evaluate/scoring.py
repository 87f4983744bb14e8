"""Metric groups the evaluation suite calls by name, on the same held-out queries for every method.

Two kinds of method are scored:
- counterfactual methods (PE, adversarial) give a `Strip`; their relevance map is |x - x_far|,
  x_far the strip's far end opposite to the query's decision;
- saliency methods give a relevance map (N, C, H, W) and an `explain` callable.

Each metric group is a function `(context, output) -> dict[str, float]` registered by name in
`COUNTERFACTUAL_SCORES` or `SALIENCY_SCORES`; the suite's config lists the names to run. The metrics
themselves live in `shift.py`, `realism.py`, `preservation.py`, `judges.py`, `faithfulness.py`,
`localisation.py` and `robustness.py`: this file only adapts them to the suite's inputs.

Each image set is encoded once (torch-fidelity's staging): the real reference set and the
queries once per context (`EvalContext.encoded`), a strip once per realism group.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from cfgen.errors import CfgenError
from cfgen.evaluate import (
    closeness,
    faithfulness,
    localisation,
    preservation,
    realism,
    robustness,
)
from cfgen.evaluate.judges import AttributeReading, identity_l1, judge_shift, real_gap, validity
from cfgen.evaluate.shift import compatibility_curve, shift_summary
from cfgen.explain.base import resolve_target
from cfgen.explain.strip import Strip


class NoGroundTruth(CfgenError):
    """A metric group needs something this evaluation does not have (masks, an oracle)."""


Classifier = Callable[[torch.Tensor], torch.Tensor]
ExplainFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EvalContext:
    """Everything the metric groups share: the classifier, the queries and their ground truth.

    queries: (N, C, H, W) in [-1, 1]; factors: (N, F) in [0, 1]; masks: (N, R, H, W) in [0, 1];
    real_images / real_posteriors: (M, C, H, W) / (M,), the real reference set for realism;
    real_labels: (M,) its ground truth of the explained attribute (0/1, NaN unknown).
    `oracle` maps (N, C, H, W) -> (N, F) outputs named `factor_names`; `target_reading` says
    which output reads the explained attribute and how (default: `target_factor`, present
    above 0.5); `features` maps images to (N, D) for FID/KID; `judge` is a second black box for
    the same attribute, (N, C, H, W) -> (N,). `identity`: the scored method's counterfactual of
    each query at its own posterior, I(x, c_x), (N, C, H, W); the suite sets it per method.
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
    features: torch.nn.Module | None = None
    judge: Classifier | None = None
    real_images: torch.Tensor | None = None
    real_posteriors: torch.Tensor | None = None
    real_labels: torch.Tensor | None = None
    identity: torch.Tensor | None = None
    robustness_queries: int = 16
    batch_size: int = 64
    # Filled while the suite runs: PE's far-end counterfactuals (for the COUT of saliency maps)
    # and metric models built once (LPIPS).
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
        return replace(self, **sliced)

    def need(self, name: str):
        """A model the metrics need (`oracle`, `features`, `judge`), or a clear skip reason."""
        value = getattr(self, name)
        if value is None:
            option = "judge" if name == "judge" else "oracle"
            raise NoGroundTruth(f"no {name} given: set `{option}` in the evaluation config")
        return value


@dataclass
class SaliencyOutput:
    """A saliency method's maps for the queries, (N, C, H, W), the callable that made them, and
    its registry name (the randomisation check rebuilds the method on randomised classifiers)."""

    maps: torch.Tensor
    explain: ExplainFn
    name: str | None = None


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


def score_realism(context: EvalContext, strip: Strip) -> dict[str, float]:
    """FID per bin, Present / Absent / Overall (PE's protocol), overall KID, and sFID of the far
    ends against the queries (ACE's split protocol) (`realism.py`)."""
    if context.real_images is None or context.real_posteriors is None:
        raise NoGroundTruth("no real reference images: realism needs `n_real` > 0")
    real = context.encoded("real_images")
    fake = realism.encode(context.need("features"), strip.images, context.batch_size)
    by_bin = realism.realism_of_features(
        real, context.real_posteriors, fake, strip.target_bins, context.n_bins
    )
    scores = {f"fid_{k}": v for k, v in by_bin.items() if not k.startswith("n_")}
    scores["kid_overall"] = realism.kid_of_features(real, fake.reshape(-1, fake.shape[-1]))[0]
    goes_up = (strip.query_posteriors < 0.5).to(fake.device)[:, None]
    far = torch.where(goes_up, fake[-1], fake[0])
    scores["sfid"] = realism.sfid(context.encoded("queries"), far)
    return scores


def score_preservation(context: EvalContext, strip: Strip) -> dict[str, float]:
    """Oracle-measured: foreign factor drift along the strip; MNAC, CD and FVA of the far end."""
    oracle, target = context.need("oracle"), context.target_factor_index
    drift = preservation.factor_drift(oracle, strip.images, context.queries, context.batch_size)
    foreign = preservation.foreign_drift(drift, target, context.factor_names)
    far = far_end(strip)
    scores = {"foreign_drift": foreign.pop("mean")}
    scores.update({f"drift_{name}": value for name, value in foreign.items()})
    scores["mnac"] = preservation.mnac(oracle, far, context.queries, target)
    if context.real_images is not None:
        try:
            scores["cd"] = preservation.correlation_difference(
                oracle, far, context.queries, context.real_images, target
            )
        except ValueError:  # the counterfactuals leave the target unchanged: CD is undefined
            scores["cd"] = float("nan")
    if context.features is not None:
        scores["fva"] = preservation.face_verification_accuracy(
            context.features, far, context.queries
        )
    return scores


def score_closeness(context: EvalContext, strip: Strip) -> dict[str, float]:
    """L1 and SSIM between query and far end, overall and outside the explained factor's region."""
    far = far_end(strip)
    scores = {
        "l1": closeness.l1_distance(context.queries, far).mean().item(),
        "ssim": closeness.ssim(context.queries, far).mean().item(),
    }
    try:
        outside = 1 - context.target_region_masks()
    except NoGroundTruth:
        return scores
    scores["l1_outside"] = closeness.l1_distance(context.queries, far, outside).mean().item()
    scores["ssim_outside"] = closeness.ssim(context.queries, far, outside).mean().item()
    return scores


def score_validity(context: EvalContext, strip: Strip) -> dict[str, float]:
    """Oracle-judged validity (`judges.validity`): oracle flip, Spearman and change of the
    explained attribute's reading along the strip, and the same change between real absent and
    present images (`oracle_change_real`) when the reference set has labels."""
    oracle, reading = context.need("oracle"), context.reading
    scores = validity(
        reading(oracle, strip.images, context.batch_size),
        reading(oracle, context.queries, context.batch_size),
        strip.target_bins,
        reading.threshold,
    )
    if context.real_images is not None and context.real_labels is not None:
        key = ("real_reading", reading)
        if key not in context.cache:
            context.cache[key] = reading(oracle, context.real_images, context.batch_size)
        scores["oracle_change_real"] = real_gap(context.cache[key], context.real_labels)
    return scores


def score_judge(context: EvalContext, strip: Strip) -> dict[str, float]:
    """The strips as an independently trained classifier of the same attribute sees them."""
    judge = context.need("judge")
    return judge_shift(judge, strip, context.queries, context.n_bins, context.batch_size)


def _need_identity(context: EvalContext) -> torch.Tensor:
    if context.identity is None:
        raise NoGroundTruth("no identity images: the suite makes them from the scored method")
    return context.identity


def score_identity(context: EvalContext, strip: Strip) -> dict[str, float]:
    """L1 between each query and the method's counterfactual at its own posterior, I(x, c_x)."""
    return {"identity_l1": identity_l1(context.queries, _need_identity(context))}


def score_lpips(context: EvalContext, strip: Strip) -> dict[str, float]:
    """LPIPS between query and far end, and between query and I(x, c_x) (`identity_lpips`);
    skipped with the file to place when the weights are absent."""
    if "lpips" not in context.cache:
        context.cache["lpips"] = closeness.build_lpips()
    metric = context.cache["lpips"]
    scores = {
        "lpips": closeness.lpips_distance(metric, context.queries, far_end(strip)).mean().item()
    }
    if context.identity is not None:
        identity = closeness.lpips_distance(metric, context.queries, context.identity)
        scores["identity_lpips"] = identity.mean().item()
    return scores


def _faithfulness(context: EvalContext, maps: torch.Tensor, counterfactual) -> dict[str, float]:
    classifier, queries = context.classifier, context.queries
    scores = {
        "deletion_auc": faithfulness.deletion_auc(classifier, queries, maps).mean().item(),
        "insertion_auc": faithfulness.insertion_auc(classifier, queries, maps).mean().item(),
    }
    if counterfactual is not None:
        scores["cout"] = faithfulness.cout(classifier, queries, counterfactual, maps).mean().item()
    return scores


@torch.no_grad()
def score_counterfactual_faithfulness(context: EvalContext, strip: Strip) -> dict[str, float]:
    """Deletion / insertion AUC of |x - x_far| and COUT of the far-end counterfactual."""
    return _faithfulness(context, counterfactual_map(context.queries, strip), far_end(strip))


@torch.no_grad()
def score_saliency_faithfulness(context: EvalContext, output: SaliencyOutput) -> dict[str, float]:
    """Deletion / insertion AUC of the map; COUT inserting PE's counterfactual in the map's order.

    COUT needs a counterfactual to insert: saliency methods have none, so they order the pixels
    of the reference (PE) counterfactual, which scores the ranking alone on the same scale.
    """
    return _faithfulness(context, output.maps, context.reference_counterfactual)


def score_counterfactual_localisation(context: EvalContext, strip: Strip) -> dict[str, float]:
    """Relevance mass and pointing game of |x - x_far| in the explained factor's region."""
    maps = counterfactual_map(context.queries, strip)
    return localisation.localisation_summary(maps, context.target_region_masks())


def score_saliency_localisation(context: EvalContext, output: SaliencyOutput) -> dict[str, float]:
    """Relevance mass and pointing game of |map| (signs differ between methods) in the region."""
    return localisation.localisation_summary(output.maps.abs(), context.target_region_masks())


def score_saliency_robustness(context: EvalContext, output: SaliencyOutput) -> dict[str, float]:
    """Max-sensitivity, infidelity and the randomisation sanity check on the first
    `robustness_queries` queries (`robustness.py`).

    randomised_spearman_top / _all: rank correlation of |map| with the original after
    re-initialising the classifier's output layer / every layer; near 0 = the map follows the
    model, near 1 = it does not depend on what the model learnt.
    """
    queries = context.queries[: context.robustness_queries]
    target = resolve_target(context.classifier, queries, None)
    sensitivity = robustness.max_sensitivity(output.explain, queries, target)
    infidelity = robustness.infidelity(context.classifier, output.explain, queries, target)
    scores = {"max_sensitivity": sensitivity.mean().item(), "infidelity": infidelity.mean().item()}
    if output.name is not None and isinstance(context.classifier, torch.nn.Module):
        try:
            rows = robustness.cascading_randomisation(
                context.classifier, output.name, queries, target
            )
        except CfgenError:  # a classifier without randomisable layers: the check does not apply
            return scores
        scores["randomised_spearman_top"] = rows[0]["spearman"]
        scores["randomised_spearman_all"] = rows[-1]["spearman"]
    return scores


COUNTERFACTUAL_SCORES: dict[str, Callable[[EvalContext, Strip], dict[str, float]]] = {
    "shift": score_shift,
    "validity": score_validity,
    "judge": score_judge,
    "identity": score_identity,
    "realism": score_realism,
    "preservation": score_preservation,
    "closeness": score_closeness,
    "lpips": score_lpips,
    "faithfulness": score_counterfactual_faithfulness,
    "localisation": score_counterfactual_localisation,
}
SALIENCY_SCORES: dict[str, Callable[[EvalContext, SaliencyOutput], dict[str, float]]] = {
    "faithfulness": score_saliency_faithfulness,
    "localisation": score_saliency_localisation,
    "robustness": score_saliency_robustness,
}
