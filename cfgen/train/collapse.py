"""Stop a GAN run whose discriminator has collapsed, keeping the last good checkpoint.

Non-finite losses are caught where they appear (`ExplainerModule._check_finite`). A collapse is
finite and silent, so it is detected from the logged hinge loss of the discriminator,
`loss/discriminator = mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))`, over a window of
consecutive steps:

- **overpowered**: the loss stays near 0. Every real and every fake image is beyond the hinge
  margin: the discriminator separates them perfectly and the generator has lost the game.
- **dead**: the loss stays at 2 (scores all 0, e.g. after its weights vanished). The
  discriminator no longer tells real from fake and teaches the generator nothing.

Either state held for `patience` steps raises `TrainingDivergedError` naming the step, the
loss and the checkpoint that is kept; Lightning does not save on an exception, so
`checkpoints/last.ckpt` is the last one written before the collapse.
"""

from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch

from cfgen.errors import TrainingDivergedError

LOSS_KEY = "loss/discriminator"
DEAD_LOSS = 2.0  # hinge loss of a discriminator whose scores are all 0

# Collapse states by name: a test on the loss value, and what it means for the user.
STATES: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "overpowered": (
        lambda loss, tolerance: loss < tolerance,
        "it separates real and generated images perfectly, so the generator has lost the game; "
        "lower lr_discriminator or raise weight_adversarial",
    ),
    "dead": (
        lambda loss, tolerance: abs(loss - DEAD_LOSS) < tolerance,
        "its scores are all 0, so it teaches the generator nothing; check the data and "
        "lr_discriminator",
    ),
}


class DiscriminatorCollapse(pl.Callback):
    """Raise `TrainingDivergedError` once the discriminator has been collapsed for `patience`
    consecutive training steps (see the module docstring for the states).

    Args:
        patience: consecutive steps in one state before training stops.
        tolerance: how close to 0 (overpowered) or to 2 (dead) the hinge loss must be.
    """

    def __init__(self, patience: int = 200, tolerance: float = 1e-3) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        self.patience = patience
        self.tolerance = tolerance
        self.state: str | None = None
        self.streak = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        loss = trainer.callback_metrics.get(LOSS_KEY)
        if loss is None:
            return
        # Each DDP process sees its own batch: decide on the mean loss, so all stop together.
        loss = torch.as_tensor(loss, device=pl_module.device)
        loss = trainer.strategy.reduce(loss, reduce_op="mean")
        self.observe(float(loss), trainer.global_step, trainer.default_root_dir)

    def observe(self, loss: float, step: int, run_dir: str | Path) -> None:
        """Record the discriminator loss of `step`; raise once a collapse lasts `patience`."""
        state = next((n for n, (test, _) in STATES.items() if test(loss, self.tolerance)), None)
        self.streak = self.streak + 1 if state is not None and state == self.state else 1
        self.state = state
        if state is None or self.streak < self.patience:
            return
        checkpoint = Path(run_dir) / "checkpoints" / "last.ckpt"
        raise TrainingDivergedError(
            f"training stopped at step {step}: the discriminator collapsed ({state}: "
            f"{LOSS_KEY} = {loss:.4g} for {self.streak} consecutive steps); "
            f"{STATES[state][1]}. The last good checkpoint ({checkpoint}) is kept"
        )

    def state_dict(self) -> dict:
        return {"state": self.state, "streak": self.streak}

    def load_state_dict(self, state_dict: dict) -> None:
        self.state, self.streak = state_dict["state"], state_dict["streak"]
