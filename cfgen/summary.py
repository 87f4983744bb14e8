"""The demo's closing summary: headline figures, the bias finding, where everything is.

Reads the evaluation stage's `results.json`; prints one row per counterfactual method (flip rate,
compatibility MAE, monotonicity, FID, foreign-factor drift), the bias finding, the report's path,
and the `wandb sync` command for every offline W&B run the stages wrote.
"""

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

# (column, metric group, key) for the closing table.
COLUMNS = [
    ("flip rate", "shift", "flip_rate"),
    ("compat MAE", "shift", "compat_mae"),
    ("monotonicity", "shift", "monotonicity"),
    ("FID overall", "realism", "fid_overall"),
    ("foreign drift", "preservation", "foreign_drift"),
]


def _cell(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def headline(results: dict) -> Table:
    """Rich table of the counterfactual methods' headline figures."""
    table = Table(title="headline figures (held-out queries)")
    for label in ["method", *(label for label, _, _ in COLUMNS), "ms / query"]:
        table.add_column(label, justify="left" if label == "method" else "right")
    for name, entry in results["methods"].items():
        if entry.get("kind") != "counterfactual":
            continue
        metrics = entry.get("metrics", {})
        cells = [_cell(metrics.get(group, {}).get(key)) for _, group, key in COLUMNS]
        timing = results.get("timing", {}).get(name, {}).get("ms_per_query")
        table.add_row(name, *cells, _cell(timing))
    return table


def wandb_runs(folders: dict[str, Path]) -> list[Path]:
    """Offline W&B run folders written by the stages, oldest first."""
    runs = [run for folder in folders.values() for run in folder.glob("**/offline-run-*")]
    return sorted({run for run in runs if run.is_dir()}, key=lambda run: run.name)


def print_summary(config, folders: dict[str, Path], seconds: float) -> None:
    """Print the closing summary of a pipeline run (`config`: a `PipelineConfig`)."""
    # Rich assumes 80 columns when writing to a file or pipe: too narrow for the table.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    results_path = folders.get(config.report_stage, Path()) / "results.json"
    console.print(
        f"\nall stages finished in {seconds / 60:.1f} min; stage folders under {config.out}"
    )
    if results_path.is_file():
        results = json.loads(results_path.read_text())
        console.print(headline(results))
        if "bias" in results:
            console.print(f"bias: {results['bias']['finding']}")
        console.print(f"report: {results_path.parent / 'report.html'}")
    runs = wandb_runs(folders)
    if runs:
        console.print("W&B runs were saved offline; upload them with:")
        console.print("  wandb sync " + " ".join(str(run) for run in runs), soft_wrap=True)
    if config.note:
        console.print(config.note)
