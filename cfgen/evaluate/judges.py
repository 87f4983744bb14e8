"""Independent judges of counterfactuals: did the strip change the cause?

The explained classifier cannot judge its own counterfactuals: a generator trained through its
gradient can move it with changes that nothing else reads as the attribute. These judges look
from outside, and score any counterfactual method the same way (they take strips and tensors):

- validity by ground truth (`validity`): an oracle's reading of the explained attribute along
  each strip (the factor oracle on the synthetic world, an attribute oracle on labelled data):
  the share of strips whose far end crosses the attribute's threshold (oracle flip), the
  Spearman correlation of the reading with the target bin, and the mean change of the reading
  from the first to the last frame, next to the gap between real absent and present images;
- transfer (`judge_shift`): a second black box trained independently for the same attribute
  sees the strips: its flip rate, compatibility MAE and monotonicity;
- identity (`identity_images`, `identity_l1`): what a method changes when asked for the query's
  own posterior, L1 between x and I(x, c_x) (LPIPS in the suite's `lpips` group);
- sFID (`cfgen.evaluate.realism.sfid`): FID with the queries split in halves, so that a
  counterfactual is never compared with its own query.

A reading is oriented so that "present" is always above the threshold: an attribute present
below it (the synthetic `Pale_Skin`, a low skin tone) is mirrored around the threshold. Flips
are scored like the classifier's (`cfgen.evaluate.shift.flip_rate`), in the direction the judge
itself reads on the query: a strip that leaves the query as it is never counts as a flip.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cfgen.data.synthetic import ATTRIBUTE_FACTOR, attribute_rule
from cfgen.errors import ConfigError
from cfgen.evaluate.closeness import l1_distance
from cfgen.evaluate.preservation import predict
from cfgen.evaluate.shift import flip_rate, monotonicity, shift_summary
from cfgen.explain.base import CounterfactualExplainer
from cfgen.explain.strip import Strip

Model = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AttributeReading:
    """How an oracle reads one attribute: output column `index` (named `name`), present above
    `threshold` (below it when `present_above` is False)."""

    index: int
    name: str
    threshold: float = 0.5
    present_above: bool = True

    def orient(self, values: torch.Tensor) -> torch.Tensor:
        """Readings mirrored around the threshold when the attribute is present below it."""
        return values if self.present_above else 2 * self.threshold - values

    def __call__(self, oracle: Model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Oriented reading of images (..., C, H, W) -> (...,)."""
        return self.orient(predict(oracle, images, batch_size)[..., self.index].float())


def attribute_reading(
    target: str, output_names: list[str], kind: str = "factors"
) -> AttributeReading:
    """Where an oracle reads the attribute `target`.

    kind "attributes": the oracle has one column per attribute (presence at 0.5); "factors":
    the synthetic world's factor oracle, read through the attribute's rule (factor, threshold,
    direction; `cfgen.data.synthetic.attribute_rule`).
    """
    if kind == "attributes":
        name, threshold, above = target, 0.5, True
    elif kind == "factors":
        if target not in ATTRIBUTE_FACTOR:
            raise ConfigError(
                f"the factor oracle reads the synthetic world's attributes {list(ATTRIBUTE_FACTOR)}"
                f"; {target!r} is not one of them"
            )
        name, threshold, above = attribute_rule(target)
    else:
        raise ConfigError(f"unknown oracle kind {kind!r}; expected 'factors' or 'attributes'")
    if name not in output_names:
        raise ConfigError(f"the oracle has no output {name!r} for {target!r}: {output_names}")
    return AttributeReading(output_names.index(name), name, threshold, above)


def validity(
    readings: torch.Tensor,
    query_readings: torch.Tensor,
    target_bins: torch.Tensor,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Oracle-judged validity of strips from their oriented readings.

    readings: (S, N), the reading of every frame (steps in increasing target bin);
    query_readings: (N,). Returns `oracle_flip` (share of strips whose far end, in the direction
    the query's own reading asks, lies across `threshold`), `oracle_spearman` (mean Spearman of
    the reading with the target bin) and `oracle_change` (mean reading of the last frame minus
    that of the first).
    """
    if readings.dim() != 2 or query_readings.shape != readings.shape[1:]:
        raise ValueError(
            f"readings must be (S, N) and query readings (N,); got {tuple(readings.shape)} and "
            f"{tuple(query_readings.shape)}"
        )
    return {
        "oracle_flip": flip_rate(readings, query_readings, threshold),
        "oracle_spearman": monotonicity(readings, target_bins),
        "oracle_change": (readings[-1] - readings[0]).mean().item(),
    }


def real_gap(readings: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean oriented reading of real present images minus that of real absent ones.

    readings: (M,); labels: (M,) 0/1 ground truth of the attribute (NaN = unknown, left out).
    NaN when either group is empty.
    """
    known = torch.isfinite(labels)
    present = readings[known & (labels > 0.5)]
    absent = readings[known & (labels <= 0.5)]
    if len(present) == 0 or len(absent) == 0:
        return float("nan")
    return (present.mean() - absent.mean()).item()


@torch.no_grad()
def judge_shift(
    judge: Model, strip: Strip, queries: torch.Tensor, n_bins: int, batch_size: int = 256
) -> dict[str, float]:
    """The strips as a second classifier `judge` sees them: `judge_flip_rate`,
    `judge_compat_mae`, `judge_monotonicity` (`shift_summary` of the judge's posteriors).

    strip: S steps for the N `queries` (N, C, H, W). The direction of each flip is the one the
    judge reads on the query itself.
    """
    posteriors = predict(judge, strip.images, batch_size).float()
    query_posteriors = predict(judge, queries, batch_size).float()
    summary = shift_summary(posteriors, strip.target_bins, query_posteriors, n_bins)
    return {f"judge_{key}": value for key, value in summary.items()}


def identity_images(
    method: CounterfactualExplainer, queries: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """The method's counterfactual of each query at the query's own posterior, I(x, c_x):
    (N, C, H, W) -> (N, C, H, W), through the common `counterfactual(x, target)` contract."""
    batches = []
    for start in range(0, len(queries), batch_size):
        x = queries[start : start + batch_size]
        with torch.no_grad():
            own = method.classifier(x)
        batches.append(method.counterfactual(x, own).detach())
    return torch.cat(batches)


def identity_l1(queries: torch.Tensor, identity: torch.Tensor) -> float:
    """Mean absolute pixel change between x and I(x, c_x), both (N, C, H, W) in [-1, 1]."""
    return l1_distance(queries, identity).mean().item()
