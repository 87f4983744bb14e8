"""Ablation of the explainer's generator and loss options, over seeds, scored on validation.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_ablation.py \
        --classifier runs/demo/classifier-*/classifier.pt --oracle runs/demo/oracle-*/oracle.pt \
        --judge runs/demo/judge-*/classifier.pt \
        --robust_judge runs/demo/robust_judge-*/classifier.pt \
        --generator_steps 700 --seeds 0 1 2 --out runs/ablation --rows default inpaint
    ... --folder runs/digits      # on an image folder (`cfgen data digits`): no oracle, no truth

Every row trains `cfgen explainer fit --config configs/explainer/synthetic_smile.yaml` (or the
`--config` given, with `--overrides`) with the row's options (`ablation_rows.ROWS`) on top of
the official generator, at the classifier's image size, for the same number of generator steps,
once per seed, one run at a time; then scores each exported explainer with the project's
evaluation (`cfgen.evaluate.methods.score_counterfactual`) on the same held-out queries of the
*validation* split (`--split`; defaults are chosen on validation, the test split gives the
verdict). Figures: the explained classifier's flip and compat MAE as drawn (`--placement_steps`
0), the true counterfactual's ratios (synthetic world), the oracle's reading, the judge, the
robust judge and the nearest-neighbour judge, identity L1, FID, manifold distance, foreign
drift. The table gives each figure's mean over the seeds and its spread (max - min). No row's
training reads the oracle, the judges, the factors or the renderer. Writes
`<out>/ablation.json`, `<out>/ablation.md` and `<out>/strips/<row>.png` (the first seed's strips
of the first queries, with the true counterfactual under each row where there is one). A run
whose `explainer.pt` exists is only scored again (`--retrain` trains it anew).
"""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
from ablation_rows import OFFICIAL, ROWS

from cfgen.evaluate.build import build_context, data_module
from cfgen.evaluate.loading import EvalData, SuiteConfig
from cfgen.evaluate.methods import score_counterfactual
from cfgen.evaluate.truth import nearest_true_frames
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.figures import strip_figure
from cfgen.models.blackbox import classifier_facts, load_blackbox
from cfgen.train.explainer_cli import cli_main

CONFIG = "configs/explainer/synthetic_smile.yaml"
# Groups whose ground truth is missing (a folder has no truth, no oracle) are skipped.
METRICS = [
    "shift", "truth", "validity", "judge", "robust_judge", "neighbours", "identity", "realism",
    "preservation",
]  # fmt: skip
# Table column -> (metric group, key) in `score_counterfactual`'s entry.
COLUMNS = {
    "cls flip": ("shift", "flip_rate"),
    "compat MAE": ("shift", "compat_mae"),
    "truth far x": ("truth", "truth_far"),
    "truth near x": ("truth", "truth_near"),
    "truth far x blur": ("truth", "truth_far_blur"),
    "reading flip": ("validity", "reading_flip"),
    "judge flip": ("judge", "judge_flip_rate"),
    "robust flip": ("robust_judge", "robust_flip_rate"),
    "kNN flip": ("neighbours", "knn_flip_rate"),
    "manifold x": ("neighbours", "manifold_ratio"),
    "identity L1": ("identity", "identity_l1"),
    "FID": ("realism", "fid_overall"),
    "foreign drift": ("preservation", "foreign_drift"),
}


def run_dir(args: argparse.Namespace, row: str, seed: int) -> Path:
    return args.out / row / f"seed{seed}"


def train(row: str, seed: int, args: argparse.Namespace) -> dict[str, float]:
    """Train one row with one seed; returns its wall and CPU seconds."""
    options, _ = ROWS[row]
    argv = [
        "fit",
        "--config",
        args.config,
        "--trainer.default_root_dir",
        str(run_dir(args, row, seed)),
    ]
    argv += ["--model.classifier", args.classifier, "--generator_steps", str(args.generator_steps)]
    argv += ["--seed_everything", str(seed), "--logger", "csv"]
    argv += ["--trainer.enable_progress_bar", "false", *shlex.split(args.overrides)]
    argv += [*OFFICIAL, *options]
    if args.folder is not None:
        argv += ["--data.source", "folder", "--data.root", str(args.folder)]
    # The explainer is trained at the classifier's image size (a 64 px black box, say).
    argv += ["--data.image_size", str(classifier_facts(args.classifier)["image_size"])]
    wall, cpu = time.perf_counter(), time.process_time()
    cli_main(argv)
    return {"train_wall_s": time.perf_counter() - wall, "train_cpu_s": time.process_time() - cpu}


def score(row: str, seed: int, args: argparse.Namespace, context) -> dict:
    # The classifier given here, not the path the bundle recorded: a recorded relative path
    # resolves against the folder the training ran from (its fingerprint is still checked).
    explainer = ProgressiveExaggeration.from_checkpoint(
        run_dir(args, row, seed) / "explainer.pt",
        classifier=str(args.classifier),
        placement_steps=args.placement_steps,
    )
    entry, strip = score_counterfactual(explainer, context, METRICS)
    if seed == args.seeds[0]:
        save_strips(row, strip.select(slice(0, args.shown)), context, args)
    return entry


def save_strips(row: str, shown, context, args: argparse.Namespace) -> None:
    truth = gaps = None
    if context.truth is not None:
        truth, gaps = nearest_true_frames(
            shown.images, context.truth.head(args.shown), shown.target_bins, context.n_bins
        )
        truth, gaps = truth.numpy(), gaps.numpy()
    png = strip_figure(
        shown.images.numpy(),
        shown.posteriors.numpy(),
        context.queries[: args.shown].numpy(),
        shown.query_posteriors.numpy(),
        f"{row}: {ROWS[row][1]}",
        truth,
        gaps,
    )
    (args.out / "strips").mkdir(parents=True, exist_ok=True)
    (args.out / "strips" / f"{row}.png").write_bytes(png)


def summary(runs: dict[str, dict], group: str, key: str) -> str:
    """'mean (spread)' of one figure over a row's seeds; '–' where no seed has it."""
    values = [r["entry"]["metrics"].get(group, {}).get(key) for r in runs.values()]
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = sum(values) / len(values)
    return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ({max(values) - min(values):.3f})"


def table(results: dict[str, dict]) -> str:
    """One line per row: each figure's mean over the seeds (spread: max - min)."""
    scored = {row: {s: r for s, r in runs.items() if "entry" in r} for row, runs in results.items()}
    columns = {
        name: where
        for name, where in COLUMNS.items()
        if any(where[1] in r["entry"]["metrics"].get(where[0], {})
               for runs in scored.values() for r in runs.values())
    }  # fmt: skip
    header = ["row", "seeds", *columns, "train s (wall)"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row, runs in scored.items():
        if not runs:
            continue
        wall = [r.get("seconds", {}).get("train_wall_s", 0) for r in runs.values()]
        cells = [f"`{row}`", str(len(runs))]
        cells += [summary(runs, group, key) for group, key in columns.values()]
        cells.append(f"{sum(wall) / len(wall):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_scoring_arguments(parser: argparse.ArgumentParser, n_queries: int) -> None:
    """The options `scoring_context` reads, shared by the benches that score explainers."""
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--oracle", help="the factor oracle (synthetic world; not with --folder)")
    parser.add_argument("--judge", required=True)
    parser.add_argument("--robust_judge", help="an adversarially trained judge (optional)")
    parser.add_argument(
        "--folder", type=Path,
        help="train and score on this image folder (`cfgen data digits`) instead of the "
        "synthetic world: the classifier's target, no truth",
    )  # fmt: skip
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--n_queries", type=int, default=n_queries)
    parser.add_argument("--n_real", type=int, default=2000)


def scoring_context(args: argparse.Namespace):
    """The evaluation's data module and context (queries, reference sets, oracle, judges) for
    the scoring arguments of `args`. On the validation split the realism reference is the
    first `--n_real` validation images after the queries."""
    data = EvalData() if args.folder is None else EvalData(source="folder", root=str(args.folder))
    config = SuiteConfig(
        explainer="",
        oracle=args.oracle,
        judge=args.judge,
        robust_judge=getattr(args, "robust_judge", None),
        data=data,
        split=getattr(args, "split", "test"),
        n_queries=args.n_queries,
        n_real=args.n_real,
        logger="none",
    )
    module = data_module(config, args.classifier, classifier_facts(args.classifier)["image_size"])
    return module, build_context(config, load_blackbox(args.classifier), module)


def metadata(args: argparse.Namespace) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    except OSError:  # no git where it runs (a copy of the tree on a GPU machine)
        commit = os.environ.get("CFGEN_COMMIT", "")
    return {
        "command": shlex.join(sys.argv),
        "commit": commit.strip(),
        "threads": args.threads,
        "generator_steps": args.generator_steps,
        "seeds": args.seeds,
        "split": args.split,
        "n_queries": args.n_queries,
        "placement_steps": args.placement_steps,
        "machine": platform.platform(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_scoring_arguments(parser, n_queries=300)
    parser.add_argument("--generator_steps", type=int, default=700)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shown", type=int, default=6)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument(
        "--placement_steps", type=int, default=0,
        help="score PE with this many placement bisections (default 0: frames as drawn)",
    )  # fmt: skip
    parser.add_argument(
        "--config", default=CONFIG,
        help="the explainer config the rows start from (e.g. configs/explainer/"
        "celeba_smile_64.yaml on a GPU, with --overrides '--data.source synthetic')",
    )  # fmt: skip
    parser.add_argument(
        "--overrides", default="",
        help="more arguments of `cfgen explainer fit`, applied before the rows' options "
        "(one string, split as a shell would)",
    )  # fmt: skip
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument(
        "--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")),
        help="torch threads (default: OMP_NUM_THREADS, else 1)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.folder is None and args.oracle is None:
        parser.error("--oracle is needed on the synthetic world (or give --folder)")
    return args


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "ablation.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    _, context = scoring_context(args)
    results["_meta"] = metadata(args)
    # One run at a time, trained then scored, the files rewritten after each: a run cut short
    # keeps the runs it finished.
    for row in args.rows:
        runs = results.setdefault(row, {})
        for seed in args.seeds:
            run = runs.setdefault(str(seed), {"options": ROWS[row][0]})
            if args.retrain or not (run_dir(args, row, seed) / "explainer.pt").is_file():
                load = os.getloadavg()[0]
                run["seconds"] = train(row, seed, args)
                run["load_1min"] = [load, os.getloadavg()[0]]  # at start and end
            run["entry"] = score(row, seed, args, context)
            results_path.write_text(json.dumps(results, indent=1, default=float))
            done = {name: results[name] for name in args.rows if name in results}
            (args.out / "ablation.md").write_text(table(done) + "\n")
            print(f"{row} seed {seed}: {run.get('seconds')} load {run.get('load_1min')}")
        print(table({name: results[name] for name in args.rows if name in results}), flush=True)


if __name__ == "__main__":
    main()
