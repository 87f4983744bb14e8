"""The evaluation suite: every method on the same held-out queries, every metric by name.

    config = SuiteConfig(explainer="runs/.../explainer.pt", oracle="runs/.../oracle.pt")
    results = evaluate(config)          # loads everything, runs, writes results.json + report

The orchestration: load (`cfgen.evaluate.loading`, which holds the config and builds the
inputs) -> run -> write -> log. `run_suite(config, inputs)` does the work on already-built
inputs (classifier, explainers, queries), so tests and notebooks can pass their own. A metric
group that needs what the evaluation lacks (factors, region masks, an oracle, weights) is
skipped with the reason; any other error stops the run. Outputs, all written atomically:
`results.json` (figures, timing, config, versions), `report_images.npz` (the arrays the report
draws) and the report itself (`report.md`, `report.html`). W&B logging comes last and may fail
without losing anything.
"""

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

import cfgen
from cfgen.errors import ConfigError, WeightsMissingError
from cfgen.evaluate.bias import bias_experiment, judged_sentence
from cfgen.evaluate.judges import identity_images
from cfgen.evaluate.loading import SuiteConfig, SuiteInputs, load_inputs
from cfgen.evaluate.scoring import (
    COUNTERFACTUAL_SCORES,
    SALIENCY_SCORES,
    EvalContext,
    NoGroundTruth,
    SaliencyOutput,
    curve,
    far_end,
)
from cfgen.evaluate.shift import compatibility_mae
from cfgen.explain.base import CounterfactualExplainer, Explainer
from cfgen.explain.strip import Strip
from cfgen.io import atomic_write_bytes, atomic_write_json, prepare_output_dir


def versions() -> dict[str, str]:
    """Versions a reader needs to reproduce the figures."""
    import captum
    import torchvision

    return {
        "cfgen": cfgen.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "captum": captum.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


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


IDENTITY_GROUPS = {"identity", "lpips"}


def _with_identity(
    method: CounterfactualExplainer, context: EvalContext, metrics: list[str]
) -> tuple[EvalContext, float]:
    """The context with the method's I(x, c_x) images when a group asks for them, and the time."""
    if not IDENTITY_GROUPS & set(metrics):
        return context, 0.0
    identity, seconds = _timed(lambda: identity_images(method, context.queries, context.batch_size))
    return replace(context, identity=identity), seconds


# What a metric group may lack on some data: ground truth (factors, masks, an oracle, a judge,
# a reference set) or weights that are not on the machine. Anything else fails the run.
SKIPPED_FOR = (NoGroundTruth, WeightsMissingError)


def _score(registry: dict, names: list[str], context: EvalContext, output) -> dict:
    """Run the named metric groups; one that lacks its ground truth or weights is skipped."""
    scores, skipped, seconds = {}, {}, {}
    for name in names:
        start = time.perf_counter()
        try:
            scores[name] = registry[name](context, output)
        except SKIPPED_FOR as error:
            skipped[name] = str(error)
        seconds[name] = time.perf_counter() - start
    return {"metrics": scores, "skipped": skipped, "metric_seconds": seconds}


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _timing(seconds: float, n_queries: int) -> dict[str, float]:
    return {"seconds": seconds, "ms_per_query": 1000.0 * seconds / n_queries}


def score_counterfactual(
    method: CounterfactualExplainer, context: EvalContext, metrics: list[str] | None = None
) -> tuple[dict, Strip]:
    """Score one counterfactual method on the context's queries, from Python.

    Makes its strips (and its I(x, c_x) images when `identity` or `lpips` is asked), runs the
    named groups of `COUNTERFACTUAL_SCORES` (default: all) and returns the entry that
    `results.json` holds for a method (`metrics`, `skipped`, `metric_seconds`, `seconds`,
    `curve`) and the strip. The context's encoded sets (real reference, queries) are cached in
    it, so scoring many methods on one context encodes them once.
    """
    metrics = list(COUNTERFACTUAL_SCORES) if metrics is None else metrics
    strip, seconds = _timed(lambda: make_strips(method, context))
    scored, identity_seconds = _with_identity(method, context, metrics)
    entry = _score(COUNTERFACTUAL_SCORES, metrics, scored, strip)
    if "shift" in entry["metrics"] and getattr(method, "placement_steps", 0) > 0:
        entry["metrics"]["shift"].update(_as_drawn(method, context, strip))
    if scored.identity is not None:
        entry["metric_seconds"]["identity_images"] = identity_seconds
    entry.update(kind="counterfactual", seconds=seconds, curve=curve(context, strip))
    return entry, strip


def _as_drawn(method, context: EvalContext, placed: Strip) -> dict[str, float]:
    """What placing the frames by f did (`ProgressiveExaggeration.placement_steps`): the
    compat MAE of the frames as the generator draws them, and the share of frames placed."""
    drawn = make_strips(method.as_drawn(), context)
    target = drawn.target_bins.to(drawn.posteriors)
    return {
        "compat_mae_as_drawn": compatibility_mae(drawn.posteriors, target, context.n_bins),
        "placed_share": (placed.posteriors != drawn.posteriors).float().mean().item(),
    }


def _counterfactual_entry(
    config: SuiteConfig, method: CounterfactualExplainer, context: EvalContext
) -> tuple[dict, float, Strip]:
    entry, strip = score_counterfactual(method, context, config.counterfactual_metrics)
    return entry, entry.pop("seconds"), strip


def _methods_in_order(config: SuiteConfig, inputs: SuiteInputs) -> dict:
    """Every method, the COUT reference first (saliency COUT inserts its counterfactuals).

    The reference must be a counterfactual method scored on at least as many queries as every
    saliency method whose faithfulness is scored.
    """
    counterfactual, saliency = inputs.counterfactual_methods, inputs.saliency_methods
    reference = config.cout_reference
    if reference is None or not saliency or "faithfulness" not in config.saliency_metrics:
        return {**counterfactual, **saliency}
    if reference not in counterfactual:
        raise ConfigError(
            f"cout_reference {reference!r} is not one of the counterfactual methods "
            f"{sorted(counterfactual)}; name one of them, or null for no COUT of saliency maps"
        )
    n = int(inputs.context.queries.shape[0])
    limit = config.max_queries.get(reference, n)
    short = sorted(name for name in saliency if config.max_queries.get(name, n) > limit)
    if short:
        raise ConfigError(
            f"cout_reference {reference!r} is scored on {limit} queries (max_queries), fewer "
            f"than {short}; raise max_queries[{reference}] or lower theirs"
        )
    ordered = {reference: counterfactual[reference]}
    return {**ordered, **counterfactual, **saliency}


def _saliency_entry(
    config: SuiteConfig, name: str, method: Explainer, context: EvalContext
) -> tuple[dict, float, torch.Tensor]:
    maps, seconds = _timed(lambda: make_maps(method, context))
    output = SaliencyOutput(maps=maps, explain=method.explain, name=name)
    entry = _score(SALIENCY_SCORES, config.saliency_metrics, context, output)
    return {**entry, "kind": "saliency"}, seconds, maps


def run_suite(config: SuiteConfig, inputs: SuiteInputs) -> tuple[dict, dict[str, np.ndarray]]:
    """Score every method on the same queries (slow ones on the first `max_queries[name]`).

    Returns (results, report images).
    """
    config.check()
    queries, shown = inputs.context.queries, slice(0, config.report_queries)
    n = int(queries.shape[0])
    results: dict = {"methods": {}, "timing": {}, "n_queries": n}
    images: dict[str, np.ndarray] = {"queries": queries[shown].numpy()}
    with torch.no_grad():
        images["query_posteriors"] = inputs.context.classifier(queries[shown]).numpy()
    methods = _methods_in_order(config, inputs)
    with Progress() as progress:
        task = progress.add_task("evaluating", total=len(methods))
        for name, method in methods.items():
            progress.update(task, description=f"evaluating {name}")
            context = inputs.context.head(config.max_queries.get(name, n))
            if name in inputs.counterfactual_methods:
                entry, seconds, strip = _counterfactual_entry(config, method, context)
                if name == config.cout_reference:
                    inputs.context.reference_counterfactual = far_end(strip)
                images[f"strip/{name}"] = strip.images[:, shown].numpy()
                images[f"posteriors/{name}"] = strip.posteriors[:, shown].numpy()
            else:
                entry, seconds, maps = _saliency_entry(config, name, method, context)
                images[f"map/{name}"] = maps[shown].abs().sum(dim=1).numpy()
            used = int(context.queries.shape[0])
            results["methods"][name] = {**entry, "n_queries": used}
            results["timing"][name] = _timing(seconds, used)
            metric_seconds = sum(entry["metric_seconds"].values())
            progress.console.print(
                f"{name}: {seconds:.1f} s for {used} queries, metrics {metric_seconds:.1f} s"
            )
            progress.advance(task)
    if inputs.bias_explainers is not None:
        results["bias"] = _run_bias(config, inputs)
    return results, images


# The groups that judge the bias experiment's strips: the explained (confounded) classifier is
# not the suite's, so its own shift figures are not among them.
BIAS_JUDGES = ["validity", "judge"]


def _run_bias(config: SuiteConfig, inputs: SuiteInputs) -> dict:
    """The bias experiment on the suite's queries (both explainers' strips of the same images)."""
    context = inputs.context
    if context.oracle is None:
        raise ConfigError("the bias experiment needs an oracle: set `oracle` in the config")
    biased, unbiased = (make_strips(method, context) for method in inputs.bias_explainers)
    result = bias_experiment(
        biased,
        unbiased,
        context.queries,
        context.oracle,
        context.factor_names,
        config.bias.confounder,
    )
    # Both explainers' strips judged as the main methods' are: does the target's cause (the
    # oracle's reading) and an independent classifier of it follow the biased strips too?
    for name, strip in (("biased", biased), ("unbiased", unbiased)):
        judged = _score(COUNTERFACTUAL_SCORES, BIAS_JUDGES, context, strip)
        result[name] |= {
            key: value for group in judged["metrics"].values() for key, value in group.items()
        }
        result[name]["skipped"] = judged["skipped"]
    result["finding"] += judged_sentence(result["biased"], result["unbiased"])
    return result


def write_outputs(
    config: SuiteConfig, results: dict, images: dict[str, np.ndarray], out: Path
) -> dict[str, Path]:
    """results.json, report_images.npz and the report, each written atomically."""
    from cfgen.evaluate.report import write_report

    results = {**results, "config": asdict(config), "versions": versions()}
    paths = {"results": atomic_write_json(out / "results.json", results)}
    buffer = _npz_bytes(images)
    paths["images"] = atomic_write_bytes(out / "report_images.npz", buffer)
    paths.update(write_report(results, images, out))
    return paths


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def evaluate(config: SuiteConfig, inputs: SuiteInputs | None = None) -> dict:
    """Load (unless `inputs` are given), run, write every output, then log to W&B."""
    from cfgen.evaluate.tracking import log_to_wandb

    config.check()
    out = prepare_output_dir(config.out, config.overwrite)
    if inputs is None:
        inputs = load_inputs(config)
    results, images = run_suite(config, inputs)
    paths = write_outputs(config, results, images, out)
    results["paths"] = {key: str(path) for key, path in paths.items()}
    results["wandb_sync"] = log_to_wandb(results, paths, out, config.logger)
    return results
