"""Amortised vs per-query counterfactuals: seconds per 10-bin strip, compatibility, realism.

    .venv/bin/python benchmarks/bench_amortised.py                 # 20 test queries, runs/demo
    .venv/bin/python benchmarks/bench_amortised.py --quick         # 2 queries, smoke run
    .venv/bin/python benchmarks/bench_amortised.py --explainer PATH --oracle PATH

The same held-out synthetic test faces and the same classifier (the one the PE explainer was
trained for) go through PE (one generator pass per bin), targeted PGD with its radius search
(registry "pgd") and the per-query Adam counterfactual ("optimisation"), one after the other in
this process. Each method gets the whole query batch at once, so the per-query methods are
batched too: seconds per strip = the method's time / number of queries. Scores come from the
package's metrics: compatibility MAE, flip rate, monotonicity (`shift.py`), FID of all strip
frames against real validation faces in the oracle's feature space (`realism.fid`) and the
mean drift of the foreign factors (`preservation.foreign_drift`).
"""

import argparse
import glob
import os
import time

import torch

from cfgen.evaluate.context import EvalContext
from cfgen.evaluate.loading import SuiteConfig, load_inputs
from cfgen.evaluate.methods import make_strips
from cfgen.evaluate.realism import fid
from cfgen.evaluate.scoring import score_preservation, score_shift
from cfgen.explain.base import CounterfactualExplainer

METHODS = ("pe", "pgd", "optimisation")


def _newest(pattern: str) -> str | None:
    """The most recently written file matching `pattern` (a finished demo stage), if any."""
    matches = sorted(glob.glob(pattern), key=os.path.getmtime)
    return matches[-1] if matches else None


def _inputs(args: argparse.Namespace) -> tuple[EvalContext, dict[str, CounterfactualExplainer]]:
    """Queries, real reference set, oracle and the three methods, built by the suite's loader."""
    if args.explainer is None or args.oracle is None:
        raise SystemExit(
            "no trained explainer/oracle found under runs/demo; run `make demo` first or pass "
            "--explainer PATH/explainer.pt --oracle PATH/oracle.pt"
        )
    config = SuiteConfig(
        explainer=args.explainer,
        oracle=args.oracle,
        n_queries=args.queries,
        n_real=args.real,
        baselines=[],
        adversarial=["pgd", "optimisation"],
        explainer_options={"optimisation": {"steps": args.optimisation_steps}},
        batch_size=args.queries,  # one batch per method: every method sees all queries at once
        logger="none",
    )
    inputs = load_inputs(config)
    return inputs.context, inputs.counterfactual_methods


def _measure(name: str, method: CounterfactualExplainer, context: EvalContext) -> dict:
    """Strips of every query with `method`, timed (after a one-image warm-up), then scored."""
    method.counterfactual(context.queries[:1], torch.tensor([0.5]))
    wall, cpu = time.perf_counter(), time.process_time()
    strip = make_strips(method, context)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = context.queries.shape[0]
    row = {"method": name, "s_per_strip": wall / n, "cpu_s_per_strip": cpu / n}
    row.update(score_shift(context, strip))
    frames = strip.images.reshape(-1, *strip.images.shape[2:])
    row["fid"] = fid(context.real_images, frames, context.features)
    row["foreign_drift"] = score_preservation(context, strip)["foreign_drift"]
    return row


def _print(rows: list[dict], context: EvalContext) -> None:
    pe, pe_cpu = rows[0]["s_per_strip"], rows[0]["cpu_s_per_strip"]
    print(f"{'method':<13} {'s/strip':>9} {'CPU s':>8} {'x PE':>7} {'x PE CPU':>9} "
          f"{'compat':>7} {'flip':>5} {'monot':>6} {'FID':>7} {'foreign':>8}")  # fmt: skip
    for row in rows:
        print(f"{row['method']:<13} {row['s_per_strip']:>9.4f} {row['cpu_s_per_strip']:>8.4f} "
              f"{row['s_per_strip'] / pe:>7.0f} {row['cpu_s_per_strip'] / pe_cpu:>9.0f} "
              f"{row['compat_mae']:>7.3f} {row['flip_rate']:>5.2f} {row['monotonicity']:>6.3f} "
              f"{row['fid']:>7.2f} {row['foreign_drift']:>8.3f}")  # fmt: skip
    floor = fid(context.real_images, context.queries, context.features)
    print(f"FID of the unchanged queries vs the same real set (the floor at this sample size): "
          f"{floor:.2f}")  # fmt: skip


def _headline(rows: list[dict]) -> None:
    """PE against the fastest per-query method, by wall time and by CPU time (each its own
    fastest): on a shared machine the two differ, so both are printed, each with its method."""
    pe = rows[0]
    for key, clock in (("s_per_strip", "wall"), ("cpu_s_per_strip", "CPU")):
        fastest = min(rows[1:], key=lambda row: row[key])
        print(f"PE is {fastest[key] / pe[key]:.0f}x faster per strip than the fastest per-query "
              f"method ({fastest['method']}) in {clock} time (goal >= 100x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--explainer", default=_newest("runs/demo/explainer-*/explainer.pt"))
    parser.add_argument("--oracle", default=_newest("runs/demo/oracle-*/oracle.pt"))
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--real", type=int, default=1000, help="real faces for FID")
    parser.add_argument("--optimisation-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 queries, 200 real, 10 steps")
    args = parser.parse_args()
    if args.quick:
        args.queries, args.real, args.optimisation_steps = 2, 200, 10
    torch.set_num_threads(args.threads)
    context, methods = _inputs(args)
    print(f"explainer {args.explainer}, oracle {args.oracle}")
    print(
        f"{args.queries} test queries, {context.n_bins} bins, {args.real} real faces, "
        f"{args.threads} thread(s), optimisation: {args.optimisation_steps} Adam steps"
    )
    rows = [_measure(name, methods[name], context) for name in METHODS]
    _print(rows, context)
    _headline(rows)


if __name__ == "__main__":
    main()
