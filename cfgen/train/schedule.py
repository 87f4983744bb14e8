"""The optimiser of the supervised trainers (oracle, autoencoder): AdamW with one LR cycle."""

from typing import Any

import pytorch_lightning as pl
import torch


def adamw_one_cycle(module: pl.LightningModule, lr: float, weight_decay: float) -> dict[str, Any]:
    """AdamW and a one-cycle schedule over the run's steps, stepped every batch: a short warm-up
    then annealing reaches a low error in very few epochs."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, int(module.trainer.estimated_stepping_batches))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
