"""The optimiser of the supervised trainers (classifier, oracle, autoencoder): AdamW, with one
LR cycle for the oracle and the autoencoder; its settings are checked when the module is built."""

from typing import Any

import pytorch_lightning as pl
import torch

from cfgen.errors import ConfigError


def check_adamw(lr: float, weight_decay: float) -> None:
    """Refuse settings AdamW would refuse only when training starts, with a traceback."""
    if not lr > 0:
        raise ConfigError(f"lr must be > 0 (the learning rate), got {lr}")
    if not weight_decay >= 0:
        raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")


def adamw_one_cycle(module: pl.LightningModule, lr: float, weight_decay: float) -> dict[str, Any]:
    """AdamW and a one-cycle schedule over the run's steps, stepped every batch: a short warm-up
    then annealing reaches a low error in very few epochs."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, int(module.trainer.estimated_stepping_batches))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
