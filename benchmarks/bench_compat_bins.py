"""Where an explainer's compat MAE comes from: per target bin, bias against scatter, and by how
far the target bin lies from the query's own.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_compat_bins.py \
        --classifier runs/base/classifier/classifier.pt --oracle runs/base/oracle/oracle.pt \
        --judge runs/base/judge/classifier.pt --n_queries 300 \
        runs/ablation_synth_700/official/explainer.pt \
        runs/ablation_synth_700/blend_low2_area01/explainer.pt

Makes each explainer's strips of the same held-out queries as `bench_ablation.py`
(`scoring_context`, the evaluation's `make_strips`) and prints, per explainer: the compat MAE
(the evaluation's figure), the mean |f(x_c) - centre of c| in each target bin, the mean signed
error in each bin (bias: the mean of the achieved posteriors misses the target; scatter: the
queries spread around it), the error at the query's own bin (where the query's own posterior
already lies anywhere in the bin) and the error by |c - c_x| in bins. Writes nothing.

`--live` scores, beside each exported explainer (the EMA generator), the live generator of the
same run (`<run>/checkpoints/last.ckpt`), both with the edit-pass batch-norm statistics
recomputed on the same 1,024 real images (`bench_bn_statistics.recompute`): is the scatter the
average's doing?
"""

import argparse
import sys
from pathlib import Path

import torch

from cfgen.bins import posterior_to_bin
from cfgen.evaluate.methods import make_strips
from cfgen.evaluate.shift import compatibility_curve, compatibility_mae
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.io import safe_torch_load

sys.path.insert(0, str(Path(__file__).parent))
from bench_ablation import add_scoring_arguments, scoring_context  # noqa: E402
from bench_bn_statistics import recompute  # noqa: E402


def breakdown(posteriors, target_bins, query_posteriors, n_bins: int) -> dict[str, object]:
    """The error table of one strip's posteriors (S, N) at `target_bins` (S,)."""
    curve = compatibility_curve(posteriors, target_bins, n_bins)  # the report's curve
    error = (posteriors - curve["target"].to(posteriors)[:, None]).abs()
    distance = (target_bins[:, None] - posterior_to_bin(query_posteriors, n_bins)[None]).abs()
    return {
        "compat_mae": compatibility_mae(posteriors, target_bins, n_bins),
        "per_bin": error.mean(dim=1).tolist(),
        "bias": (curve["achieved_mean"] - curve["target"].to(posteriors)).tolist(),
        "scatter": curve["achieved_std"].tolist(),
        "by_distance": [error[distance == d].mean().item() for d in range(n_bins)],
    }


def generators(path: Path, live: bool, context) -> list[tuple[str, ProgressiveExaggeration]]:
    """The exported explainer of `path`, and with `live` the same with its run's live generator
    weights, both with recomputed edit-pass statistics; frames as drawn (no placement): the
    breakdown is of the generator's own error."""
    name = f"`{path.parent.name}`"
    if not live:
        return [(name, ProgressiveExaggeration.from_checkpoint(path, placement_steps=0))]
    found = []
    weights = safe_torch_load(path.parent / "checkpoints" / "last.ckpt")["state_dict"]
    for which in ("EMA", "live"):
        explainer = ProgressiveExaggeration.from_checkpoint(path, placement_steps=0)
        if which == "live":
            prefix = "generator."
            state = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
            explainer.generator.load_state_dict(state)
        recompute(explainer.generator, context.classifier, context.real_images[:1024], "edit pass")
        found.append((f"{name} {which}", explainer))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("explainers", nargs="+", type=Path)
    add_scoring_arguments(parser, n_queries=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--live", action="store_true", help="also the run's live generator")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, context = scoring_context(args)
    n_bins = context.n_bins
    head = " | ".join(str(b) for b in range(n_bins))
    print(f"| explainer | figure | {head} |\n|" + " --- |" * (n_bins + 2))
    for path in args.explainers:
        for name, explainer in generators(path, args.live, context):
            strip = make_strips(explainer, context)
            table = breakdown(strip.posteriors, strip.target_bins, strip.query_posteriors, n_bins)
            name = f"{name} (compat {table['compat_mae']:.3f})"
            for figure, label in (
                ("per_bin", "MAE at bin c"),
                ("bias", "mean signed error at c"),
                ("scatter", "std of the error at c"),
                ("by_distance", "MAE at abs(c - c_x) ="),
            ):
                cells = " | ".join(f"{value:+.3f}" if figure == "bias" else f"{value:.3f}"
                                   for value in table[figure])  # fmt: skip
                print(f"| {name} | {label} | {cells} |")


if __name__ == "__main__":
    main()
