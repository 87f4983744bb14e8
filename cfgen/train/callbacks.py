"""Watching the explainer train: val figures, time and strips after every validation.

Lightning's validation loop runs `ExplainerModule.validation_step` every `every_n_steps`
generator steps (the explainer CLI sets `trainer.val_check_interval` from it) on the first
`n_queries` validation images (`data.val_queries`): it logs `val/compat_mae`, `val/flip_rate`,
`val/monotonicity`, `val/identity_l1` into `callback_metrics`. `ExplainerMonitor` adds the wall
and CPU time since training started, so time-to-quality can be read from any logger or from
`<run>/monitor.json` (rewritten atomically at every check), and saves a grid of the first strips
as `<run>/strips/step_XXXXXXX.png` (sent to W&B / TensorBoard when they are the logger). When
training ends between two validations, it scores the final EMA generator once more itself.
"""

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger
from pytorch_lightning.trainer.states import TrainerFn

from cfgen.explain.strip import Strip
from cfgen.figures import strip_figure
from cfgen.io import atomic_write_bytes, atomic_write_json


def _log_wandb(logger: Logger, png: bytes, step: int) -> None:
    image = Image.open(io.BytesIO(png))
    logger.log_image(key="val/strips", images=[image], step=step)


def _log_tensorboard(logger: Logger, png: bytes, step: int) -> None:
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    logger.experiment.add_image("val/strips", image, step, dataformats="HWC")


IMAGE_LOGGERS: dict[type, Callable[[Logger, bytes, int], None]] = {
    WandbLogger: _log_wandb,
    TensorBoardLogger: _log_tensorboard,
}


class ExplainerMonitor(pl.Callback):
    """After each validation of a fit (and once at the end): val figures + time, strips.

    Needs an `ExplainerModule` (`validation_figures`, `critic_figures`, `validation_sample`,
    `generator_steps`) and a datamodule with `query_images(n)` (`ExplainerDataModule`).

    Args:
        every_n_steps: validate every this many generator steps (read by the explainer CLI).
        n_queries: how many validation images are scored (the CLI links `data.val_queries`).
        n_shown: how many strips the saved figure shows.
    """

    def __init__(self, every_n_steps: int = 200, n_queries: int = 256, n_shown: int = 8) -> None:
        if every_n_steps < 1 or n_queries < 1:
            raise ValueError("every_n_steps and n_queries must be at least 1")
        self.every_n_steps = every_n_steps
        self.n_queries = n_queries
        self.n_shown = n_shown
        self.history: list[dict[str, float]] = []
        self._start = 0.0
        self._cpu_start = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # On resume, the wall time goes on from the last check of the interrupted run.
        last = self.history[-1] if self.history else {}
        self._start = time.perf_counter() - last.get("wall_time_s", 0.0)
        self._cpu_start = time.process_time() - last.get("cpu_time_s", 0.0)

    # Rank 0 only: the EMA generator is the same on every process (DDP all-reduces the
    # gradients it averages, rank 0's BN statistics are broadcast), and the logged figures are
    # already reduced over the processes.
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.state.fn != TrainerFn.FITTING:
            return
        figures = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith("val/")
        }
        queries, strip = pl_module.validation_sample
        self._record(trainer, pl_module, figures, queries, strip, log=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if self.history and self.history[-1]["step"] == pl_module.generator_steps:
            return
        queries = trainer.datamodule.query_images(self.n_queries).to(pl_module.device)
        strip, figures = pl_module.validation_figures(queries)
        figures |= pl_module.critic_figures(queries, strip)
        figures = {f"val/{name}": value for name, value in figures.items()}
        self._record(trainer, pl_module, figures, queries, strip, log=True)

    def _record(self, trainer, pl_module, figures, queries, strip, log: bool) -> None:
        step = pl_module.generator_steps
        # CPU time (all threads of this process) is the steadier figure on a shared machine.
        record = {"step": step, "wall_time_s": time.perf_counter() - self._start}
        record["cpu_time_s"] = time.process_time() - self._cpu_start
        record |= figures
        self.history.append(record)
        # Validation logged the figures itself; the final check (in on_train_end, where
        # `self.log` is not allowed) and the times go to the loggers directly.
        metrics = {k: float(v) for k, v in record.items() if k != "step" and (log or "time" in k)}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        self._write(trainer, queries, strip, step)

    def _write(self, trainer: pl.Trainer, queries: torch.Tensor, strip: Strip, step: int) -> None:
        run_dir = Path(trainer.default_root_dir)
        atomic_write_json(run_dir / "monitor.json", self.history)
        shown = strip.select(slice(0, self.n_shown))
        png = strip_figure(
            shown.images.cpu().numpy(),
            shown.posteriors.cpu().numpy(),
            queries[: self.n_shown].cpu().numpy(),
            shown.query_posteriors.cpu().numpy(),
            f"step {step}",
        )
        atomic_write_bytes(run_dir / "strips" / f"step_{step:07d}.png", png)
        for logger in trainer.loggers:
            for logger_type, log_image in IMAGE_LOGGERS.items():
                if isinstance(logger, logger_type):
                    log_image(logger, png, trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        # A resumed run must not score the step of its checkpoint again.
        self._last_step = self.history[-1]["step"] if self.history else -1
