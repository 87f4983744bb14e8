"""The demo's closing summary: headline figures, the bias finding, where everything is.

Reads the evaluation stage's `results.json`; prints one row per counterfactual method in the
report's two counterfactual tables (whether the cause changed: the classifier's flip rate,
compatibility MAE and monotonicity, the distance to the true counterfactual, the oracle's reading
and the judges' flips; then what is kept and how real: manifold distance, identity L1, FID,
sFID, foreign-factor drift, MNAC), every
skipped metric group with its reason, the bias finding, the report's path, and the `wandb sync`
command for every offline W&B run the stages wrote.
"""

import json
import sys
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from cfgen.evaluate.tables import counterfactual_tables, skipped_groups


def headlines(results: dict) -> list[Table]:
    """Rich tables of the counterfactual methods' headline figures (the report's first two)."""
    titles = ["headline figures (held-out queries): did the cause change", "what is kept, how real"]
    halves = counterfactual_tables(results, intervals=False).values()
    pairs = zip(halves, titles, strict=True)
    return [headline(columns, rows, title) for (columns, rows), title in pairs]


def headline(columns: list[str], rows: list[list[str]], title: str) -> Table:
    """One headline table as a rich table."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for index, label in enumerate(columns):
        # Wide enough for every figure; headers wrap instead (a narrow terminal folds them).
        width = max([len(row[index]) for row in rows], default=1)
        justify = "left" if label == "method" else "right"
        table.add_column(label, justify=justify, min_width=width)
    for row in rows:
        table.add_row(*row)
    return table


def wandb_runs(folders: dict[str, Path]) -> list[Path]:
    """Offline W&B run folders written by the stages, oldest first."""
    runs = [run for folder in folders.values() for run in folder.glob("**/offline-run-*")]
    return sorted({run for run in runs if run.is_dir()}, key=lambda run: run.name)


def print_summary(config, folders: dict[str, Path], seconds: float) -> None:
    """Print the closing summary of a pipeline run (`config`: a `PipelineConfig`)."""
    # Rich assumes 80 columns when writing to a file or pipe: too narrow for the table.
    console = Console() if sys.stdout.isatty() else Console(width=150)
    results_path = folders.get(config.report_stage, Path()) / "results.json"
    console.print(
        f"\nall stages finished in {seconds / 60:.1f} min; stage folders under {config.out}"
    )
    if results_path.is_file():
        results = json.loads(results_path.read_text())
        for table in headlines(results):
            console.print(table)
        for reason, methods in skipped_groups(results).items():
            console.print(f"skipped {reason} ({', '.join(methods)})", soft_wrap=True)
        if "bias" in results:
            console.print(f"bias: {results['bias']['finding']}")
        console.print(f"report: {results_path.parent / 'report.html'}")
    runs = wandb_runs(folders)
    if runs:
        console.print("W&B runs were saved offline; upload them with:")
        console.print("  wandb sync " + " ".join(str(run) for run in runs), soft_wrap=True)
    if config.note:
        console.print(config.note)
