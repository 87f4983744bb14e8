"""Watching the explainer train: strips and shift figures every K generator steps.

`ExplainerMonitor` exaggerates a fixed set of held-out queries (the first `n_queries` validation
images) with the EMA generator, scores the strips with `cfgen.evaluate.shift.shift_summary` and
logs `val/compat_mae`, `val/flip_rate`, `val/monotonicity` together with the wall and CPU time
since training started, so time-to-quality can be read from any logger or from
`<run>/monitor.json` (rewritten atomically at every check). A grid of strips is saved as
`<run>/strips/step_XXXXXXX.png` and sent to W&B / TensorBoard when they are the logger.
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

from cfgen.evaluate.shift import shift_summary
from cfgen.explain.progressive import generator_strip
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
    """Every `every_n_steps` generator steps (and at the end): strips, val shift figures, time.

    Needs a module with `ema_generator`, `classifier`, `hparams.n_bins` / `n_critic` and a
    datamodule with `query_images(n)` (`ExplainerDataModule`).
    """

    def __init__(self, every_n_steps: int = 200, n_queries: int = 256, n_shown: int = 8) -> None:
        self.every_n_steps = every_n_steps
        self.n_queries = n_queries
        self.n_shown = n_shown
        self.history: list[dict[str, float]] = []
        self._queries: torch.Tensor | None = None
        self._start = 0.0
        self._cpu_start = 0.0
        self._last_step = -1

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # On resume, the wall time goes on from the last check of the interrupted run.
        last = self.history[-1] if self.history else {}
        self._start = time.perf_counter() - last.get("wall_time_s", 0.0)
        self._cpu_start = time.process_time() - last.get("cpu_time_s", 0.0)
        self._queries = trainer.datamodule.query_images(self.n_queries).to(pl_module.device)

    # Rank 0 only: the EMA generator is the same on every process (DDP all-reduces the
    # gradients it averages), so one process scores it and writes the run's figures.
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:
            return
        step = self._generator_steps(trainer, pl_module)
        if step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.check(trainer, pl_module, step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        step = self._generator_steps(trainer, pl_module)
        if step != self._last_step:
            self.check(trainer, pl_module, step)

    @staticmethod
    def _generator_steps(trainer: pl.Trainer, pl_module: pl.LightningModule) -> int:
        # Manual optimisation counts every optimiser step: n_critic D steps + 1 G step each.
        return trainer.global_step // (pl_module.hparams.n_critic + 1)

    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        """Score the current EMA generator and write/log the figures."""
        self._last_step = step
        generator = pl_module.ema_generator
        training = generator.training
        generator.eval()
        try:
            strip = generator_strip(
                generator, pl_module.classifier, self._queries, pl_module.hparams.n_bins
            )
        finally:
            generator.train(training)
        summary = shift_summary(
            strip.posteriors,
            strip.target_bins,
            strip.query_posteriors,
            pl_module.hparams.n_bins,
            pl_module.hparams.bin_target_kind,
        )
        # CPU time (all threads of this process) is the steadier figure on a shared machine.
        record = {"step": step, "wall_time_s": time.perf_counter() - self._start}
        record["cpu_time_s"] = time.process_time() - self._cpu_start
        record |= {f"val/{name}": value for name, value in summary.items()}
        self.history.append(record)
        metrics = {k: float(v) for k, v in record.items() if k != "step"}
        for logger in trainer.loggers:  # not `self.log`: this also runs in on_train_end
            logger.log_metrics(metrics, step=trainer.global_step)
        self._write(trainer, strip, step)

    def _write(self, trainer: pl.Trainer, strip: Strip, step: int) -> None:
        run_dir = Path(trainer.default_root_dir)
        atomic_write_json(run_dir / "monitor.json", self.history)
        shown = strip.select(slice(0, self.n_shown))
        png = strip_figure(
            shown.images.cpu().numpy(),
            shown.posteriors.cpu().numpy(),
            self._queries[: self.n_shown].cpu().numpy(),
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
