"""The evaluation suite: every method on the same held-out queries, every metric by name.

    config = SuiteConfig(explainer="runs/.../explainer.pt", oracle="runs/.../oracle.pt")
    results = evaluate(config)          # loads everything, runs, writes results.json + report

The orchestration: load (`cfgen.evaluate.loading`, which holds the config and builds the
inputs) -> run -> write -> log. `run_suite(config, inputs)` does the work on already-built
inputs (classifier, explainers, queries), so tests and notebooks can pass their own.

Equal terms: the counterfactual table scores every counterfactual method on the same first
`n` queries, n the largest number every one of them can afford (`max_queries`); the map table
scores every method's relevance map (saliency maps, and |x - x_far| of every counterfactual
method) on the same first `n_map` queries. Where the data can be re-rendered, the true
counterfactual is scored as a method of its own (`truth`): what a perfect method reaches on
every figure. Each method runs from a random state seeded by the config's seed and its name,
so an evaluation repeats exactly whatever the order of its methods. Averaged figures carry 95%
bootstrap intervals over the queries (`intervals` beside `metrics`).

A metric group that needs what the evaluation lacks (factors, region masks, an oracle, weights)
is skipped with the reason; any other error stops the run. Outputs, all written atomically:
`results.json` (figures, intervals, timing, config, versions), `report_images.npz` (the arrays
the report draws) and the report itself (`report.md`, `report.html`). W&B logging comes last and
may fail without losing anything. The output folder is locked for the whole run
(`cfgen.folder_lock`): a second evaluation into it at the same time is refused.
"""

import copy
import platform
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

import cfgen
from cfgen.errors import ConfigError
from cfgen.evaluate.bias import bias_experiment, judged_sentence
from cfgen.evaluate.context import EvalContext, SaliencyOutput
from cfgen.evaluate.loading import SuiteConfig, SuiteInputs, load_inputs
from cfgen.evaluate.maps import MAP_SCORES, score_faithfulness
from cfgen.evaluate.methods import (
    make_maps,
    make_strips,
    score_counterfactual,
    score_groups,
    seed_method,
    timed,
    timing,
    truth_strip,
)
from cfgen.evaluate.scoring import COUNTERFACTUAL_SCORES
from cfgen.evaluate.truth import nearest_true_frames
from cfgen.explain.strip import Strip
from cfgen.folder_lock import claimed_output_dir
from cfgen.io import atomic_write_bytes, atomic_write_json

TRUTH = "truth"


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


def table_sizes(config: SuiteConfig, inputs: SuiteInputs) -> tuple[int, int]:
    """(n, n_map): the queries every counterfactual method, and every map, is scored on."""
    n = int(inputs.context.queries.shape[0])
    limit = config.max_queries
    counterfactual = min([n] + [limit.get(name, n) for name in inputs.counterfactual_methods])
    mapped = [*inputs.counterfactual_methods, *inputs.saliency_methods]
    n_map = min([counterfactual] + [limit.get(name, n) for name in mapped])
    if counterfactual < 1 or n_map < 1:
        raise ConfigError(f"max_queries must leave at least 1 query per table, got {limit}")
    return counterfactual, n_map


def run_suite(config: SuiteConfig, inputs: SuiteInputs) -> tuple[dict, dict[str, np.ndarray]]:
    """Score every method on equal terms (module docstring). Returns (results, report images)."""
    config.check()
    n, n_map = table_sizes(config, inputs)
    context = replace(inputs.context.head(n), seed=config.seed)
    shown = slice(0, config.report_queries)
    results: dict = {"methods": {}, "timing": {}, "n_queries": n, "n_map_queries": n_map}
    results["held_out"] = {"unrecorded": list(inputs.unrecorded)}
    images: dict[str, np.ndarray] = {"queries": context.queries[shown].numpy()}
    with torch.no_grad():
        images["query_posteriors"] = context.classifier(context.queries[shown]).numpy()
    strips: dict[str, Strip] = {}
    methods = dict(inputs.counterfactual_methods)
    if context.truth is not None:
        methods = {TRUTH: None, **methods}
    with Progress() as progress:
        task = progress.add_task("evaluating", total=len(methods) + len(inputs.saliency_methods))
        for name, method in methods.items():
            progress.update(task, description=f"evaluating {name}")
            seed_method(config.seed, name)
            given = truth_strip(context) if method is None else None
            entry, strip = score_counterfactual(
                method, context, config.counterfactual_metrics, given
            )
            strips[name] = strip
            _record(results, name, entry, entry.pop("seconds"), n, progress)
            _strip_images(images, name, strip.select(shown), context.head(config.report_queries))
            progress.advance(task)
        _score_maps(config, inputs, context.head(n_map), strips, results, images, progress, task)
    if inputs.bias_explainers is not None:
        results["bias"] = _run_bias(config, inputs, context)
    return results, images


def _strip_images(images: dict, name: str, strip: Strip, context: EvalContext) -> None:
    """The report's arrays of a method's shown strips, with the true counterfactual of every
    frame and its distance where the data can be re-rendered."""
    images[f"strip/{name}"] = strip.images.numpy()
    images[f"posteriors/{name}"] = strip.posteriors.numpy()
    if context.truth is not None:
        truth, gaps = nearest_true_frames(
            strip.images, context.truth, strip.target_bins, context.n_bins
        )
        images[f"truth_for/{name}"], images[f"truth_gap/{name}"] = truth.numpy(), gaps.numpy()


def _record(results: dict, name: str, entry: dict, seconds: float, n: int, progress) -> None:
    results["methods"][name] = {**entry, "n_queries": n}
    results["timing"][name] = timing(seconds, n)
    metric_seconds = sum(entry["metric_seconds"].values())
    progress.console.print(
        f"{name}: {seconds:.1f} s for {n} queries, metrics {metric_seconds:.1f} s"
    )


def cout_reference(config: SuiteConfig, context: EvalContext, strips: dict[str, Strip]):
    """The far frames whose pixels COUT inserts for every map, and whose they are.

    `config.cout_reference` names a counterfactual method, or "none" for no COUT; unset, the
    true counterfactual where the data can be re-rendered, else the first counterfactual
    baseline (never PE's own far frames, which would favour PE's map).
    """
    name = config.cout_reference
    if name is None:
        baselines = [key for key in strips if not key.startswith("pe")]
        name = baselines[0] if baselines else "none"
    if name == "none" or "faithfulness" not in config.map_metrics:
        return None, None
    if name not in strips:
        raise ConfigError(
            f"cout_reference {name!r} is not one of the counterfactual methods {sorted(strips)}; "
            "name one of them, or 'none' for no COUT of the maps"
        )
    return name, strips[name].select(slice(0, context.queries.shape[0])).far_end()


def _score_maps(config, inputs, context, strips, results, images, progress, task) -> None:
    """The map table: every method's relevance map on the same `n_map` queries."""
    reference_name, reference = cout_reference(config, context, strips)
    context = replace(context, reference_counterfactual=reference)
    results["cout_reference"] = reference_name
    n_map = int(context.queries.shape[0])
    for name, strip in strips.items():
        method = inputs.counterfactual_methods.get(name)  # None: the true counterfactual
        far = strip.select(slice(0, n_map)).far_end()
        explain = None if method is None else method.explain
        output = SaliencyOutput((context.queries - far).abs(), explain, rebuild=_rebuild(method))
        names = [
            group
            for group in config.map_metrics
            if group != "robustness" or (method is not None and name not in config.robustness_skip)
        ]
        _merge(results["methods"][name], _map_groups(names, context, output, far))
    for name, method in inputs.saliency_methods.items():
        progress.update(task, description=f"evaluating {name}")
        seed_method(config.seed, name)
        maps, seconds = timed(lambda method=method: make_maps(method, context))
        output = SaliencyOutput(maps=maps, explain=method.explain, name=name)
        entry = {**_map_groups(config.map_metrics, context, output), "kind": "saliency"}
        _record(results, name, entry, seconds, n_map, progress)
        images[f"map/{name}"] = maps[: config.report_queries].abs().sum(dim=1).numpy()
        progress.advance(task)


def _rebuild(method) -> Callable | None:
    """How the randomisation check rebuilds a counterfactual method's map on another classifier:
    the same method (PE: the same generator) reading the randomised classifier."""
    if method is None:
        return None

    def explain_with(model: torch.nn.Module):
        clone = copy.copy(method)
        clone.classifier = model
        return clone.explain

    return explain_with


def _map_groups(names: list[str], context, output: SaliencyOutput, own=None) -> dict:
    registry = dict(MAP_SCORES)
    registry["faithfulness"] = lambda ctx, out: score_faithfulness(ctx, out, own)
    return score_groups(registry, names, context, output)


def _merge(entry: dict, groups: dict) -> None:
    """Add the map table's groups to a counterfactual method's entry."""
    for key in ("metrics", "intervals", "skipped", "metric_seconds"):
        entry[key].update(groups[key])


# The groups that judge the bias experiment's strips: the explained (confounded) classifier is
# not the suite's, so its own shift figures are not among them.
BIAS_JUDGES = ["truth", "validity", "judge", "robust_judge", "neighbours"]


def _run_bias(config: SuiteConfig, inputs: SuiteInputs, context: EvalContext | None = None) -> dict:
    """The bias experiment on the suite's queries (both explainers' strips of the same images);
    `context` default: the inputs'."""
    context = inputs.context if context is None else context
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
    # oracle's reading, the true counterfactual) and judges of other kinds follow them too?
    for name, strip in (("biased", biased), ("unbiased", unbiased)):
        judged = score_groups(COUNTERFACTUAL_SCORES, BIAS_JUDGES, context, strip)
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
    # One evaluation per folder: another one writing into `out` is refused (`cfgen.folder_lock`).
    with claimed_output_dir(config.out, "cfgen evaluate", config.overwrite) as out:
        if inputs is None:
            inputs = load_inputs(config)
        results, images = run_suite(config, inputs)
        paths = write_outputs(config, results, images, out)
        results["paths"] = {key: str(path) for key, path in paths.items()}
        results["wandb_sync"] = log_to_wandb(results, paths, out, config.logger)
    return results
