"""Ablation of the explainer's generator and loss options: which keeps the query?

    OMP_NUM_THREADS=2 flock /tmp/cfgen-heavy.lock .venv/bin/python benchmarks/bench_ablation.py \
        --classifier runs/demo/classifier-*/classifier.pt --oracle runs/demo/oracle-*/oracle.pt \
        --judge runs/demo/judge-*/classifier.pt --generator_steps 1000 --out runs/ablation
    .venv/bin/python benchmarks/bench_ablation.py ... --rows official blend   # some rows only

Every row trains `cfgen explainer fit --config configs/explainer/synthetic_smile.yaml` (or the
`--config` given, with `--overrides`) with the row's options on top of the official generator
(`OFFICIAL`), at the classifier's image size, for the same number of generator steps and
the same seed, one row at a time, then scores the exported explainer with the project's
evaluation (`cfgen.evaluate.suite.score_counterfactual`) on the same held-out test faces:
classifier flip, oracle-judged flip, judge flip, compat MAE, monotonicity, FID and sFID
(oracle features), foreign drift, identity L1, relevance mass of |x - x_far| in the mouth, and
the row's training time (wall and CPU seconds, in this process, with the 1-minute load at its
start and end; `--threads`, default OMP_NUM_THREADS). No row's training reads the
oracle, the judge or the synthetic factors; a row that reads the ground-truth masks says so in
its name (`gt_`). Writes `<out>/ablation.json`, `<out>/ablation.md` (the table) and
`<out>/strips/<row>.png` (the strips of the same first queries). A row whose `explainer.pt`
exists is only scored again (`--retrain` trains it anew).
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

from cfgen.evaluate.build import build_context, data_module
from cfgen.evaluate.loading import EvalData, SuiteConfig
from cfgen.evaluate.methods import score_counterfactual
from cfgen.explain.progressive import PLACEMENT_STEPS, ProgressiveExaggeration
from cfgen.figures import strip_figure
from cfgen.models.blackbox import classifier_facts, load_blackbox
from cfgen.train.explainer_cli import cli_main

CONFIG = "configs/explainer/synthetic_smile.yaml"
# The official generator (docs/DESIGN.md, "Official defaults"): encoder-decoder to a 4x4
# bottleneck, no skips, the whole image redrawn; the CPU config's loss weights. Every row
# starts from it.
OFFICIAL = [
    "--model.generator.output", "image", "--model.generator.skips", "false",
    "--model.generator.edit_downsample", "1", "--model.generator.mask_downsample", "1",
    "--model.generator.norm", "batch",
    "--model.weights.mask", "0", "--model.weights.mask_tv", "0",
    "--model.weights.mask_binary", "0", "--model.weights.redraw", "0",
    "--model.classifier_term.view_shift", "0", "--model.classifier_term.view_blur", "0",
    "--model.classifier_term.view_noise", "0",
    "--model.classifier_term.loss", "classifier_cross_entropy",
    "--model.discriminator.views", "[]",
]  # fmt: skip
BLEND = ["--model.generator.output", "blend", "--model.weights.mask", "1.0"]
DIFFERENCE = ["--model.generator.output", "difference"]
REDRAW = ["--model.weights.redraw", "1.0"]
MASK4 = ["--model.generator.mask_downsample", "4"]
BINARY = ["--model.weights.mask_binary", "1.0"]
LOW2 = ["--model.generator.edit_downsample", "2"]
AREA01 = ["--model.weights.mask", "0.1"]  # a tenth of the blend's area penalty
DVIEWS = ["--model.discriminator.views", "[translation, cutout]"]  # DiffAugment for D
# The CPU config's 16 -> 128 channels halved, in the generator and the discriminator.
NARROW = [
    "--model.generator.width", "8", "--model.generator.max_width", "64",
    "--model.discriminator.width", "8", "--model.discriminator.max_width", "64",
]  # fmt: skip
VIEWS = [
    "--model.classifier_term.view_shift", "1.0", "--model.classifier_term.view_blur", "0.7",
    "--model.classifier_term.view_noise", "0.03",
]  # fmt: skip
# Row name -> (options on top of OFFICIAL, what the row changes).
ROWS: dict[str, tuple[list[str], str]] = {
    "official": ([], "official encoder-decoder (4x4 bottleneck, no skips)"),
    "skips": (["--model.generator.skips", "true"], "+ U-Net skips, image output"),
    "residual": (["--model.generator.output", "residual"], "residual output x + tanh(Δ)"),
    "blend": (BLEND, "blend m·G + (1 − m)·x, mask area 1.0"),
    "blend_views": ([*BLEND, *VIEWS], "blend + classifier term on random views"),
    "blend_low2": ([*BLEND, *LOW2], "blend, edit at half resolution"),
    "blend_bin": ([*BLEND, *BINARY], "blend, opaque-or-clear mask"),
    "blend_low2_bin": (
        [*BLEND, *BINARY, *LOW2],
        "blend at half resolution, opaque-or-clear mask",
    ),
    "redraw": ([*BLEND, *REDRAW], "blend of a redraw trained as the official image; f moves m"),
    "redraw_mask4": ([*BLEND, *REDRAW, *MASK4], "redraw, blended through a 1/4-resolution mask"),
    "blend_mask4": ([*BLEND, *MASK4], "blend of the redraw through a mask at 1/4 resolution"),
    "blend_low2_area01": ([*BLEND, *LOW2, *AREA01], "blend_low2 with mask area 0.1"),
    "blend_low2_area0": (
        [*BLEND, *LOW2, "--model.weights.mask", "0"],
        "blend_low2 without a mask area penalty",
    ),
    "redraw_mask4_area01": ([*BLEND, *REDRAW, *MASK4, *AREA01], "redraw_mask4, mask area 0.1"),
    "difference": (DIFFERENCE, "x + G(x, c) - G(x, c_x): the redraw's change added to the query"),
    "official_running": (
        ["--model.averaging.bn_statistics", "running"],
        "official, rendering with the running batch-norm averages (the default before 2026-12-03)",
    ),
    "official_group": (
        ["--model.generator.norm", "group"],
        "official, conditional group norm instead of batch norm",
    ),
    "official_dviews": (DVIEWS, "official, D judges translated and cut-out views (DiffAugment)"),
    "official_batch16": (
        ["--data.batch_size", "16"],
        "official, batches of 16 instead of 32 (half the work per generator step)",
    ),
    "official_logit_l1": (
        ["--model.classifier_term.loss", "classifier_logit_l1"],
        "official, classifier term L1 on logits (MedIA follow-up) instead of cross-entropy",
    ),
    "official_cls3": (
        ["--model.weights.classifier", "3.0"],
        "official, classifier term weighted 3 instead of 1",
    ),
    "blend_low2_area01_cls3": (
        [*BLEND, *LOW2, *AREA01, "--model.weights.classifier", "3.0"],
        "blend_low2_area01, classifier term weighted 3 instead of 1",
    ),
    "official_decay": (
        ["--model.optimisation.lr_decay", "0.5"],
        "official, learning rates fall linearly to 0 over the second half of the run",
    ),
    "blend_low2_area01_decay": (
        [*BLEND, *LOW2, *AREA01, "--model.optimisation.lr_decay", "0.5"],
        "blend_low2_area01, learning rates fall linearly to 0 over the second half",
    ),
    "official_decay25": (
        ["--model.optimisation.lr_decay", "0.25"],
        "official, learning rates fall linearly to 0 over the last quarter of the run",
    ),
    "official_narrow": (NARROW, "official, generator and discriminator at half the channels"),
    "official_narrow_d": (NARROW[4:], "official, the discriminator alone at half the channels"),
    "difference_redraw": (
        [*DIFFERENCE, *REDRAW],
        "difference, the redraw also trained as the official image",
    ),
}
# Groups whose ground truth is missing (a folder without an oracle) are skipped by the suite.
METRICS = [
    "shift", "validity", "judge", "identity", "realism", "preservation", "localisation",
    "closeness",
]  # fmt: skip
# Table column -> (metric group, key) in `score_counterfactual`'s entry.
COLUMNS = {
    "cls flip": ("shift", "flip_rate"),
    "oracle flip": ("validity", "oracle_flip"),
    "judge flip": ("judge", "judge_flip_rate"),
    "compat MAE": ("shift", "compat_mae"),
    "compat as drawn": ("shift", "compat_mae_as_drawn"),
    "monotonicity": ("shift", "monotonicity"),
    "FID": ("realism", "fid_overall"),
    "sFID": ("realism", "sfid"),
    "foreign drift": ("preservation", "foreign_drift"),
    "identity L1": ("identity", "identity_l1"),
    "mouth mass": ("localisation", "relevance_mass"),
    "L1 x-x_far": ("closeness", "l1"),
}


def train(row: str, args: argparse.Namespace) -> dict[str, float]:
    """Train one row; returns its wall and CPU seconds."""
    options, _ = ROWS[row]
    argv = ["fit", "--config", args.config, "--trainer.default_root_dir", str(args.out / row)]
    argv += ["--model.classifier", args.classifier, "--generator_steps", str(args.generator_steps)]
    argv += ["--seed_everything", str(args.seed), "--logger", "csv"]
    argv += ["--trainer.enable_progress_bar", "false", *shlex.split(args.overrides)]
    argv += [*OFFICIAL, *options]
    if args.folder is not None:
        argv += ["--data.source", "folder", "--data.root", str(args.folder)]
    # The explainer is trained at the classifier's image size (a 64 px black box, say).
    argv += ["--data.image_size", str(classifier_facts(args.classifier)["image_size"])]
    wall, cpu = time.perf_counter(), time.process_time()
    cli_main(argv)
    return {"train_wall_s": time.perf_counter() - wall, "train_cpu_s": time.process_time() - cpu}


def score(row: str, args: argparse.Namespace, context) -> dict:
    explainer = ProgressiveExaggeration.from_checkpoint(
        args.out / row / "explainer.pt", placement_steps=args.placement_steps
    )
    entry, strip = score_counterfactual(explainer, context, METRICS)
    shown = strip.select(slice(0, args.shown))
    png = strip_figure(
        shown.images.numpy(),
        shown.posteriors.numpy(),
        context.queries[: args.shown].numpy(),
        shown.query_posteriors.numpy(),
        f"{row}: {ROWS[row][1]}",
    )
    (args.out / "strips").mkdir(parents=True, exist_ok=True)
    (args.out / "strips" / f"{row}.png").write_bytes(png)
    return entry


def table(results: dict[str, dict]) -> str:
    # Only the columns some row has (a folder has no oracle, the synthetic rows no closeness).
    columns = {
        name: where
        for name, where in COLUMNS.items()
        if any(where[1] in r["entry"]["metrics"].get(where[0], {}) for r in results.values())
    }
    header = ["row", *columns, "train s (wall / CPU)"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row, result in results.items():
        metrics = result["entry"]["metrics"]
        cells = [f"`{row}`"]
        for group, key in columns.values():
            value = metrics.get(group, {}).get(key)
            cells.append("–" if value is None else f"{value:.3f}")
        seconds = result.get("seconds", {})
        cells.append(f"{seconds.get('train_wall_s', 0):.0f} / {seconds.get('train_cpu_s', 0):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_scoring_arguments(parser: argparse.ArgumentParser, n_queries: int) -> None:
    """The options `scoring_context` reads, shared by the benches that score explainers."""
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--oracle", help="the factor oracle (synthetic world; not with --folder)")
    parser.add_argument("--judge", required=True)
    parser.add_argument(
        "--folder", type=Path,
        help="train and score on this image folder (`cfgen data digits`) instead of the "
        "synthetic world: the classifier's target, test split, no oracle",
    )  # fmt: skip
    parser.add_argument("--n_queries", type=int, default=n_queries)
    parser.add_argument("--n_real", type=int, default=2000)


def scoring_context(args: argparse.Namespace):
    """The evaluation's data module and context (queries, reference, oracle, judge) for the
    `--classifier`, `--oracle`, `--judge`, `--folder`, `--n_queries` and `--n_real` of `args`."""
    data = EvalData() if args.folder is None else EvalData(source="folder", root=str(args.folder))
    config = SuiteConfig(
        explainer="",
        oracle=args.oracle,
        judge=args.judge,
        data=data,
        n_queries=args.n_queries,
        n_real=args.n_real,
        logger="none",
    )
    module = data_module(config, args.classifier, classifier_facts(args.classifier)["image_size"])
    return module, build_context(config, load_blackbox(args.classifier), module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_scoring_arguments(parser, n_queries=500)
    parser.add_argument("--generator_steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shown", type=int, default=6)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument(
        "--placement_steps", type=int, default=PLACEMENT_STEPS,
        help="score PE with this many placement bisections (0: frames as drawn)",
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
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "ablation.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if args.folder is None and args.oracle is None:
        parser.error("--oracle is needed on the synthetic world (or give --folder)")
    _, context = scoring_context(args)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    except OSError:  # no git where it runs (a copy of the tree on a GPU machine)
        commit = os.environ.get("CFGEN_COMMIT", "")
    results["_meta"] = {
        "command": shlex.join(sys.argv),
        "commit": commit.strip(),
        "threads": args.threads,
        "generator_steps": args.generator_steps,
        "seed": args.seed,
        "n_queries": args.n_queries,
        "placement_steps": args.placement_steps,
        "machine": platform.platform(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    # One row at a time, trained then scored, the files rewritten after each: a run cut short
    # keeps the rows it finished.
    for row in args.rows:
        if args.retrain or not (args.out / row / "explainer.pt").is_file():
            load = os.getloadavg()[0]
            results[row] = {"seconds": train(row, args), "options": ROWS[row][0]}
            results[row]["load_1min"] = [load, os.getloadavg()[0]]  # at start and end
        results.setdefault(row, {"options": ROWS[row][0]})["entry"] = score(row, args, context)
        results_path.write_text(json.dumps(results, indent=1, default=float))
        done = {name: results[name] for name in args.rows if "entry" in results.get(name, {})}
        markdown = table(done)
        (args.out / "ablation.md").write_text(markdown + "\n")
        print(f"{row}: {results[row].get('seconds')} load {results[row].get('load_1min')}")
        print(markdown, flush=True)


if __name__ == "__main__":
    main()
