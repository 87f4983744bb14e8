"""Stopping a training run cleanly: SIGTERM or SIGINT write `checkpoints/last.ckpt`, then stop.

On SIGTERM (a scheduler pre-empting the job, `kill`), Lightning stops `fit` at the next batch
boundary by raising `SIGTERMException` out of its loops. `RunCheckpoint`, the run's checkpoint
callback (`last.ckpt` at every epoch end), also writes `last.ckpt` at that moment, so a stopped
run loses at most one batch. While training runs, SIGINT (Ctrl+C) takes the same path
(`sigint_stops_training`); a second Ctrl+C interrupts at once, without saving. SIGKILL cannot be
caught: the run resumes from the last epoch's checkpoint.
"""

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException


class RunCheckpoint(ModelCheckpoint):
    """`<dirpath>/last.ckpt` at every epoch end and when SIGTERM / SIGINT stop training.

    `stopped_at` is `(path, global_step)` of the checkpoint written on such a stop, else None;
    `signal_name` the signal that stopped it.
    """

    def __init__(self, dirpath: str | Path) -> None:
        # At the end of every training epoch, also when validation runs at other intervals.
        super().__init__(dirpath=dirpath, save_last=True, save_on_train_epoch_end=True)
        self.training = False
        self.signal_name = "SIGTERM"
        self.stopped_at: tuple[Path, int] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.training = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.training = False
        super().on_train_end(trainer, pl_module)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        was_training, self.training = self.training, False
        super().on_exception(trainer, pl_module, exception)
        # Only a requested stop is saved: after any other exception (a diverged loss, a bug)
        # the state is not worth resuming from, and the previous last.ckpt is kept.
        if isinstance(exception, SIGTERMException) and was_training:
            path = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
            # Part of the saved state: the resumed run then updates this file (not last-v1).
            self.last_model_path = str(path)
            trainer.save_checkpoint(path, weights_only=False)  # the whole state: resumable
            self.stopped_at = (path, trainer.global_step)


@contextlib.contextmanager
def sigint_stops_training(checkpoint: Callable[[], RunCheckpoint | None]) -> Iterator[None]:
    """While training runs, the first SIGINT stops it as SIGTERM does (at a batch boundary,
    `last.ckpt` written). `checkpoint()` gives the run's `RunCheckpoint` once there is one."""
    previous = signal.getsignal(signal.SIGINT)
    # Signal handlers can only be set from the main thread; an ignored SIGINT stays ignored.
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return

    def on_sigint(signum: int, frame: object) -> None:
        callback = checkpoint()
        if callback is None or not callback.training:
            previous(signum, frame)  # as before (by default: KeyboardInterrupt)
            return
        callback.signal_name = "SIGINT"
        signal.signal(signal.SIGINT, previous)  # a second Ctrl+C interrupts at once
        signal.raise_signal(signal.SIGTERM)  # Lightning's handler: stop at the next batch

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
