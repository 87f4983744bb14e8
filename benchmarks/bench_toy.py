"""The learning test's toy world (`tests/train/test_learning.py`), trained with any options.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_toy.py --steps 300 --seeds 0 \\
        --row "fixed=--model.classifier_term.drawing fixed" --row "default="

The toy: a flat background, a 4x4 region that an exported analytic classifier reads (its mean
grey level) and a 4x4 distractor that nobody reads. Each row is `cfgen explainer fit` with the
project's CPU config, the test's run size (16 px, narrow networks, `--steps` generator steps,
one thread) and the row's options on top; its exported explainer is scored on the toy's held-out
queries by the test's figures (compatibility error, monotonicity, the change's share in the
region, region over distractor), beside the same module untrained, and checked against the
test's bars. Prints one line per row and seed and writes `<out>/toy.json`.
"""

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.train.test_learning import (  # noqa: E402
    figures,
    held_out_queries,
    shortfalls,
    train_toy,
    untrained_twin,
)


def parse_row(text: str) -> tuple[str, tuple[str, ...]]:
    """`NAME=OPTIONS` -> (NAME, the options split as a shell would)."""
    name, separator, options = text.partition("=")
    if not separator or not name:
        raise SystemExit(f"error: --row takes NAME=OPTIONS (options may be empty), got {text!r}")
    return name, tuple(shlex.split(options))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--row",
        action="append",
        type=parse_row,
        required=True,
        help="NAME=OPTIONS added to the test's command line; repeatable",
    )
    parser.add_argument("--steps", type=int, default=300, help="generator steps (the test's: 300)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_toy"))
    args = parser.parse_args()  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name, options in args.row:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as work:
                root = Path(work)
                start = time.perf_counter()
                run_dir = train_toy(root, seed, args.steps, options)
                seconds = time.perf_counter() - start
                queries = held_out_queries(root)
                trained = figures(run_dir / "explainer.pt", queries)
                untrained = figures(untrained_twin(run_dir, seed), queries)
            missed = shortfalls(trained, untrained)
            row = {"row": name, "options": list(options), "seed": seed, "steps": args.steps}
            row |= {"seconds": round(seconds, 1), "trained": trained, "untrained": untrained}
            results.append(row | {"missed": missed})
            shown = " ".join(f"{key} {value:.3f}" for key, value in trained.items())
            verdict = "learns" if not missed else "misses " + "; ".join(missed)
            before = f"untrained compat {untrained['compat_mae']:.3f}"
            print(f"{name} seed {seed}: {shown} ({before}), {seconds:.0f} s: {verdict}", flush=True)
    (args.out / "toy.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
