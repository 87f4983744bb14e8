"""The headline over training seeds: the default explainer trained 3 times, each scored on test.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_seeds.py --run runs/demo --out runs/seeds
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_seeds.py --run runs/folder \
        --data runs/digits --out runs/seeds_digits        # a `cfgen demo --data` run

`--run` is a finished demo folder: its classifier, judge, robust judge, oracle and autoencoder
stages are reused as they are, so only the explainer's training seed changes between rows. For
every seed the explainer config (`--config`, default the demo's; `--overrides` on top, e.g. a
folder job's `--generator_steps 2000`) is trained with `--seed_everything SEED`, then the full
evaluation scores it on the *test* split (`--n_queries`, no baselines: the seed only changes
PE): PE as drawn, PE placed and, on the synthetic world, the true counterfactual. Prints and
writes (`<out>/seeds.json`, `<out>/seeds.md`) each headline figure's mean over the seeds and its
spread (max - min), and each seed's own row.
"""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from cfgen.evaluate.loading import EvalData, SuiteConfig, load_inputs
from cfgen.evaluate.suite import run_suite
from cfgen.evaluate.tables import COUNTERFACTUAL_COLUMNS, metric
from cfgen.train.explainer_cli import cli_main

CONFIG = "configs/explainer/synthetic_smile.yaml"
ROWS = ("pe", "pe_placed", "truth")


def stage_file(run: Path, stage: str, name: str) -> str | None:
    """The file `name` of the finished stage `stage` of a demo folder, or None."""
    found = sorted(run.glob(f"{stage}-*/{name}"))
    return str(found[-1]) if found else None


def train(seed: int, args: argparse.Namespace, classifier: str) -> Path:
    out = args.out / f"seed{seed}"
    if not (out / "explainer.pt").is_file():
        argv = ["fit", "--config", args.config, "--trainer.default_root_dir", str(out)]
        argv += ["--model.classifier", classifier, "--seed_everything", str(seed)]
        argv += ["--logger", "csv", "--trainer.enable_progress_bar", "false"]
        if args.data is not None:
            argv += ["--data.source", "folder", "--data.root", str(args.data)]
            argv += ["--data.image_size", "null"]
        cli_main([*argv, *shlex.split(args.overrides)])
    return out / "explainer.pt"


def score(explainer: Path, args: argparse.Namespace) -> dict:
    run = args.run
    data = EvalData() if args.data is None else EvalData(source="folder", root=str(args.data))
    config = SuiteConfig(
        explainer=str(explainer),
        oracle=stage_file(run, "oracle", "oracle.pt"),
        judge=stage_file(run, "judge", "classifier.pt"),
        robust_judge=stage_file(run, "robust_judge", "classifier.pt"),
        data=data,
        n_queries=args.n_queries,
        n_real=args.n_real,
        adversarial=[],
        baselines=[],
        map_metrics=[],
        logger="none",
    )
    results, _ = run_suite(config, load_inputs(config))
    return results


def table(by_seed: dict[int, dict]) -> str:
    header = ["row", "seed", *(label for label, _, _ in COUNTERFACTUAL_COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in ROWS:
        entries = {s: r["methods"][row] for s, r in by_seed.items() if row in r["methods"]}
        if not entries:
            continue
        cells = [f"`{row}`", "mean (spread)"]
        for _, group, key in COUNTERFACTUAL_COLUMNS:
            values = [metric(e, group, key) for e in entries.values()]
            values = [v for v in values if v is not None]
            cells.append(
                "–" if not values else
                f"{sum(values) / len(values):.3f} ({max(values) - min(values):.3f})"
            )  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
        for seed, entry in entries.items():
            values = [metric(entry, group, key) for _, group, key in COUNTERFACTUAL_COLUMNS]
            cells = [f"`{row}`", str(seed), *("–" if v is None else f"{v:.3f}" for v in values)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished demo folder")
    parser.add_argument("--data", type=Path, help="the image folder of a `cfgen demo --data` run")
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--overrides", default="")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n_queries", type=int, default=500)
    parser.add_argument("--n_real", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("runs/seeds"))
    args = parser.parse_args()
    classifier = stage_file(args.run, "classifier", "classifier.pt")
    if classifier is None:
        parser.error(f"{args.run} has no finished classifier stage (classifier-*/classifier.pt)")
    args.out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    by_seed = {}
    for seed in args.seeds:
        by_seed[seed] = score(train(seed, args, classifier), args)
        saved = {"command": shlex.join(sys.argv), "commit": commit.strip(), "results": by_seed}
        (args.out / "seeds.json").write_text(json.dumps(saved, indent=1, default=float))
        (args.out / "seeds.md").write_text(table(by_seed) + "\n")
        print(table(by_seed), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
