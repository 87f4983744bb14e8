"""Log the suite's tables and figures to Weights & Biases, after every file is written.

W&B runs offline unless an API key is set (see `cfgen.loggers`), never prompts, and a
failure here only prints a warning: `results.json` and the report are already on disk.
"""

import logging
from pathlib import Path

from cfgen.evaluate.tables import (
    COUNTERFACTUAL_COLUMNS,
    MAP_COLUMNS,
    headline_tables,
    interval,
    metric,
    timing_table,
)

log = logging.getLogger(__name__)


def _log_run(run, results: dict, paths: dict[str, Path]) -> None:
    import wandb

    tables = {
        f"evaluate/{title.lower()}": table for title, table in headline_tables(results).items()
    }
    tables["evaluate/timing"] = timing_table(results)
    for key, (columns, rows) in tables.items():
        run.log({key: wandb.Table(columns=columns, data=rows)})
    run.summary.update(summary_figures(results))
    figures = sorted(Path(paths["markdown"]).parent.glob("figures/*.png"))
    run.log({f"evaluate/{path.stem}": wandb.Image(str(path)) for path in figures})
    if "bias" in results:
        run.summary["bias/finding"] = results["bias"]["finding"]
        run.summary["bias/detected"] = results["bias"]["detected"]


def summary_figures(results: dict) -> dict[str, float | str]:
    """The headline figures as W&B summary values, `<method>/<group>/<key>` (their 95% interval
    as `<key>_low` / `<key>_high`), the number of queries, and the reason of every skipped
    group, `<method>/skipped/<group>`."""
    summary: dict[str, float | str] = {}
    for name, entry in results["methods"].items():
        summary[f"{name}/n_queries"] = entry.get("n_queries")
        columns = COUNTERFACTUAL_COLUMNS + MAP_COLUMNS
        for _, group, key in columns:
            value = metric(entry, group, key)
            if value is not None:
                summary[f"{name}/{group}/{key}"] = value
            bounds = interval(entry, group, key)
            if bounds is not None:
                summary[f"{name}/{group}/{key}_low"] = bounds[0]
                summary[f"{name}/{group}/{key}_high"] = bounds[1]
        for group, why in entry.get("skipped", {}).items():
            summary[f"{name}/skipped/{group}"] = why
    return summary


def log_to_wandb(
    results: dict, paths: dict[str, Path], out: Path, kind: str = "wandb"
) -> str | None:
    """Log tables and figures; returns the `wandb sync ...` command for an offline run, or None.

    `kind` other than "wandb" (e.g. "none") logs nothing.
    """
    if kind != "wandb":
        return None
    try:
        from pytorch_lightning.loggers import WandbLogger

        from cfgen.loggers import build_logger, sync_command

        logger = build_logger("wandb", out, run_name=f"evaluate-{out.name}")
        if not isinstance(logger, WandbLogger):
            return None  # wandb could not start; build_logger already said why
        _log_run(logger.experiment, results, paths)
        command = sync_command(logger)
        logger.experiment.finish()
        return command
    except Exception as error:  # any W&B failure is recoverable: the results are on disk
        log.warning(
            "W&B logging failed (%s: %s); results are in %s", type(error).__name__, error, out
        )
        return None
