import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from cfgen.errors import TrainingDivergedError
from cfgen.io import safe_torch_load
from cfgen.train.collapse import LOSS_KEY, DiscriminatorCollapse


@pytest.mark.parametrize(("loss", "state"), [(0.0, "overpowered"), (2.0, "dead")])
def test_a_collapse_held_for_patience_steps_stops_naming_step_loss_and_checkpoint(loss, state):
    monitor = DiscriminatorCollapse(patience=3)
    monitor.observe(loss, step=10, run_dir="runs/x")
    monitor.observe(loss, step=11, run_dir="runs/x")
    with pytest.raises(TrainingDivergedError) as caught:
        monitor.observe(loss, step=12, run_dir="runs/x")
    message = str(caught.value)
    assert f"step 12: the discriminator collapsed ({state}" in message
    assert "for 3 consecutive steps" in message
    assert "runs/x/checkpoints/last.ckpt) is kept" in message


def test_healthy_or_interrupted_losses_never_stop_training():
    monitor = DiscriminatorCollapse(patience=3)
    for step, loss in enumerate([1.3, 0.0, 0.0, 0.9, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 1.1] * 3):
        monitor.observe(loss, step, "run")
    assert (monitor.state, monitor.streak) == (None, 1)


def test_streak_survives_a_resume():
    monitor = DiscriminatorCollapse(patience=3)
    monitor.observe(0.0, 1, "run")
    monitor.observe(0.0, 2, "run")
    resumed = DiscriminatorCollapse(patience=3)
    resumed.load_state_dict(monitor.state_dict())
    with pytest.raises(TrainingDivergedError, match="step 3"):
        resumed.observe(0.0, 3, "run")


class CollapsingGAN(pl.LightningModule):
    """Logs a healthy discriminator loss for `healthy_steps` batches, then 0 (overpowered)."""

    def __init__(self, healthy_steps: int) -> None:
        super().__init__()
        self.healthy_steps = healthy_steps
        self.linear = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.linear(batch[0]).pow(2).mean()
        collapsed = self.global_step >= self.healthy_steps
        self.log(LOSS_KEY, 0.0 if collapsed else 1.2)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)  # 2 steps per epoch
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_steps=20,
        callbacks=[checkpoint, DiscriminatorCollapse(patience=3)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(TrainingDivergedError, match="overpowered"):
        trainer.fit(CollapsingGAN(healthy_steps=4), data)
    assert safe_torch_load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 6
