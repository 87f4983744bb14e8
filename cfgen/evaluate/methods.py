"""Scoring one method: its strips or maps, its metric groups, their intervals.

`score_counterfactual(method, context)` gives the entry `results.json` holds for a
counterfactual method; `score_groups` runs any registry of metric groups on one output. Both are
what `cfgen.evaluate.suite.run_suite` does per method, usable on their own (the ablation
benchmarks score explainers this way).
"""

import random
import time
import zlib
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from cfgen.errors import WeightsMissingError
from cfgen.evaluate.context import EvalContext, Figure, NoGroundTruth, plain
from cfgen.evaluate.intervals import bootstrap_interval
from cfgen.evaluate.judges import identity_images
from cfgen.evaluate.scoring import COUNTERFACTUAL_SCORES, curve
from cfgen.evaluate.truth import true_strip
from cfgen.explain.base import CounterfactualExplainer, Explainer
from cfgen.explain.strip import Strip


def seed_method(seed: int, name: str) -> None:
    """Seed every random stream from the evaluation's seed and a method's name."""
    value = zlib.crc32(f"{seed}:{name}".encode())
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def _batched(fn: Callable[[torch.Tensor], object], x: torch.Tensor, size: int) -> list:
    return [fn(x[start : start + size]) for start in range(0, x.shape[0], size)]


def make_strips(method: CounterfactualExplainer, context: EvalContext) -> Strip:
    """The method's strip for every query, in batches: (S, N, C, H, W)."""
    batches = _batched(
        lambda x: method.exaggerate(x, n_bins=context.n_bins), context.queries, context.batch_size
    )
    return Strip.concat(batches)


def make_maps(method: Explainer, context: EvalContext) -> torch.Tensor:
    """The method's relevance map for every query toward the flipped decision, (N, C, H, W)."""
    return torch.cat(
        _batched(lambda x: method.explain(x).detach(), context.queries, context.batch_size)
    )


def truth_strip(context: EvalContext) -> Strip:
    """The true counterfactuals as a strip (`cfgen.evaluate.truth.true_strip`)."""
    bins = torch.arange(context.n_bins)
    images, posteriors = true_strip(context.need("truth"), context.classifier, bins, context.n_bins)
    with torch.no_grad():
        query_posteriors = context.classifier(context.queries)
    return Strip(images, bins, posteriors, query_posteriors)


IDENTITY_GROUPS = {"identity", "lpips"}
# What a metric group may lack on some data: ground truth (factors, masks, an oracle, a judge,
# a reference set) or weights that are not on the machine. Anything else fails the run.
SKIPPED_FOR = (NoGroundTruth, WeightsMissingError)


def _interval(figure: Figure, seed: int) -> list[float]:
    if figure.interval is not None:
        return list(figure.interval)
    return list(bootstrap_interval(figure.values, figure.statistic, seed=seed))


def score_groups(registry: dict, names: list[str], context: EvalContext, output) -> dict:
    """Run the named metric groups; one that lacks its ground truth or weights is skipped.

    Returns `metrics` (group -> figure -> value), `intervals` (group -> figure -> [low, high]
    for the figures that carry per-query values), `skipped` and `metric_seconds`.
    """
    scores, intervals, skipped, seconds = {}, {}, {}, {}
    for name in names:
        start = time.perf_counter()
        try:
            group = registry[name](context, output)
        except SKIPPED_FOR as error:
            skipped[name] = str(error)
        else:
            scores[name] = plain(group)
            figures = {k: v for k, v in group.items() if isinstance(v, Figure)}
            if figures:
                intervals[name] = {k: _interval(v, context.seed) for k, v in figures.items()}
        seconds[name] = time.perf_counter() - start
    return {
        "metrics": scores,
        "intervals": intervals,
        "skipped": skipped,
        "metric_seconds": seconds,
    }


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def timing(seconds: float, n_queries: int) -> dict[str, float]:
    return {"seconds": seconds, "ms_per_query": 1000.0 * seconds / max(n_queries, 1)}


def score_counterfactual(
    method: CounterfactualExplainer | None,
    context: EvalContext,
    metrics: list[str] | None = None,
    strip: Strip | None = None,
) -> tuple[dict, Strip]:
    """Score one counterfactual method on the context's queries, from Python.

    Makes its strips (unless given) and its I(x, c_x) images when `identity` or `lpips` is
    asked, runs the named groups of `COUNTERFACTUAL_SCORES` (default: all) and returns the entry
    that `results.json` holds for a method (`metrics`, `intervals`, `skipped`,
    `metric_seconds`, `seconds`, `curve`) and the strip. The context's encoded sets (real
    reference, queries) are cached in it, so scoring many methods on one context encodes them
    once. `method` None with a `strip` scores given images (the true counterfactual: its own
    bin returns the query, so identity is 0).
    """
    metrics = list(COUNTERFACTUAL_SCORES) if metrics is None else metrics
    seconds = 0.0
    if strip is None:
        strip, seconds = timed(lambda: make_strips(method, context))
    scored = context
    if IDENTITY_GROUPS & set(metrics):
        if method is None:
            scored = replace(context, identity=context.queries)
        else:
            identity, identity_seconds = timed(
                lambda: identity_images(method, context.queries, context.batch_size)
            )
            scored = replace(context, identity=identity)
    entry = score_groups(COUNTERFACTUAL_SCORES, metrics, scored, strip)
    if getattr(method, "placement_steps", 0) > 0 and "shift" in entry["metrics"]:
        entry["metrics"]["shift"]["placed_share"] = _placed_share(method, context, strip)
    if getattr(method, "autoencoder", None) is not None:
        entry["metrics"]["floor"] = reconstruction_floor(method.autoencoder, context)
    if method is not None and scored.identity is not None:
        entry["metric_seconds"]["identity_images"] = identity_seconds
    entry.update(kind="counterfactual", seconds=seconds, curve=curve(context, strip))
    return entry, strip


@torch.no_grad()
def reconstruction_floor(autoencoder: torch.nn.Module, context: EvalContext) -> dict[str, float]:
    """What a method that decodes through `autoencoder` cannot go below: L1 between each query
    and decode(encode(x)) (`floor_l1`, to read beside identity L1) and the FID of those
    reconstructions (`floor_fid`, beside FID), on the context's queries."""
    from cfgen.evaluate import realism

    rebuilt = torch.cat(_batched(autoencoder, context.queries, context.batch_size))
    floor = {"floor_l1": (rebuilt - context.queries).abs().mean().item()}
    if context.features is not None and context.real_images is not None:
        fake = realism.encode(context.features, rebuilt, context.batch_size)
        floor["floor_fid"] = realism.fid_of_features(context.encoded("real_images"), fake)
    return floor


def _placed_share(method, context: EvalContext, placed: Strip) -> float:
    """The share of frames that placing by f moved (`ProgressiveExaggeration.placement_steps`)."""
    drawn = make_strips(method.as_drawn(), context)
    return (placed.posteriors != drawn.posteriors).float().mean().item()
