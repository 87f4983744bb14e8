"""Experiment loggers for every training command, chosen by name.

    logger: wandb        # default: Weights & Biases, offline unless WANDB_API_KEY is set
    logger: tensorboard  # TensorBoard event files in the run directory
    logger: csv          # metrics.csv in the run directory
    logger: none         # no logger

The name goes at the top level of a training YAML (or `--logger csv` on the command line). An
explicit `trainer.logger` (class_path + init_args) in the config still wins over it.

Weights & Biases never prompts and never needs the network: without an API key it runs offline
and writes its files under `<run_dir>/wandb`, to be uploaded later with `wandb sync`
(`sync_command` gives the exact command). If wandb is missing or fails to start, training goes on
with a CSV logger and a warning saying so. `WANDB_MODE=disabled` (used by the tests) is honoured.
"""

import logging
import os
from collections.abc import Callable
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

log = logging.getLogger(__name__)

# Lightning logs go straight into the run directory: no extra `lightning_logs/version_N` level.
_NAME = ""
_VERSION = ""


def _wandb_mode() -> str:
    """`WANDB_MODE` if the user set it; otherwise online only with an API key, else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def _wandb_logger(run_dir: Path, project: str, run_name: str | None) -> Logger:
    os.environ.setdefault("WANDB_SILENT", "true")
    logger = WandbLogger(
        project=project, name=run_name, save_dir=str(run_dir), mode=_wandb_mode(), log_model=False
    )
    logger.experiment  # noqa: B018 -- start the run now, so a failure falls back to CSV here
    return logger


def _tensorboard_logger(run_dir: Path, project: str, run_name: str | None) -> Logger:
    return TensorBoardLogger(save_dir=str(run_dir), name=_NAME, version=_VERSION)


def _csv_logger(run_dir: Path, project: str, run_name: str | None) -> Logger:
    return CSVLogger(save_dir=str(run_dir), name=_NAME, version=_VERSION)


LOGGERS: dict[str, Callable[[Path, str, str | None], Logger]] = {
    "wandb": _wandb_logger,
    "tensorboard": _tensorboard_logger,
    "csv": _csv_logger,
}
LOGGER_NAMES = (*LOGGERS, "none")


def build_logger(
    kind: str, run_dir: str | os.PathLike, project: str = "cfgen", run_name: str | None = None
) -> Logger | None:
    """The logger named `kind` (one of `LOGGER_NAMES`), writing under `run_dir`.

    A wandb logger that cannot start is replaced by a CSV logger, with a warning naming why.
    """
    if kind == "none":
        return None
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return LOGGERS[kind](run_dir, project, run_name)
    except Exception as error:  # wandb fails in many ways (import, service, disk): recoverable
        if kind != "wandb":
            raise
        log.warning(
            "wandb could not start (%s: %s); logging metrics to %s/metrics.csv instead",
            type(error).__name__,
            error,
            run_dir,
        )
        return _csv_logger(run_dir, project, run_name)


def sync_command(logger: Logger | None) -> str | None:
    """`wandb sync DIR` for an offline wandb run, else None (online, disabled or not wandb)."""
    if not isinstance(logger, WandbLogger) or _wandb_mode() not in {"offline", "dryrun"}:
        return None
    run_files = getattr(logger.experiment, "dir", None)
    if not run_files:
        return None
    # wandb keeps the run's files in `<offline-run-...>/files`; sync takes the run folder.
    return f"wandb sync {Path(run_files).parent}"


def finish_logger(logger: Logger | None) -> str | None:
    """Close a wandb run (flushes it to disk); returns its `wandb sync` command if offline."""
    hint = sync_command(logger)
    if isinstance(logger, WandbLogger):
        logger.experiment.finish()
    return hint
