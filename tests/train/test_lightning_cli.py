import pytest
import pytorch_lightning as pl
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from cfgen.errors import ConfigError
from cfgen.train.lightning_cli import CONFIG_FILENAME, run_cli


class LineData(pl.LightningDataModule):
    """y = 1 when the first of 4 features is positive; 32 rows."""

    def __init__(self, batch_size: int = 8) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str) -> None:
        features = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
        self.dataset = TensorDataset(features, (features[:, 0] > 0).float())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)


class LineModel(pl.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.linear = torch.nn.Linear(4, 1)

    def _loss(self, batch) -> torch.Tensor:
        features, labels = batch
        logits = self.linear(features).squeeze(1)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)

    def training_step(self, batch, batch_index: int) -> torch.Tensor:
        return self._loss(batch)

    def validation_step(self, batch, batch_index: int) -> None:
        self.log("val/loss", self._loss(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def fit_args(run_dir, *extra: str) -> list[str]:
    return [
        "fit",
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.max_steps", "4",
        "--trainer.enable_progress_bar", "false",
        "--logger", "csv",
        *extra,
    ]  # fmt: skip


def test_fit_writes_resolved_config_last_checkpoint_and_metrics(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(LineModel, LineData, fit_args(run_dir, "--model.lr", "0.05")) == 0
    config = yaml.safe_load((run_dir / CONFIG_FILENAME).read_text())
    assert config["model"]["lr"] == 0.05
    assert config["trainer"]["max_steps"] == 4
    assert config["trainer"]["accelerator"] == "cpu"  # cfgen's default, resolved
    assert config["seed_everything"] == 0
    assert config["logger"] == "csv"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "val/loss" in (run_dir / "metrics.csv").read_text()


def test_resume_rewrites_the_config_instead_of_failing(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(LineModel, LineData, fit_args(run_dir)) == 0
    last = run_dir / "checkpoints" / "last.ckpt"
    resumed = fit_args(run_dir, "--trainer.max_steps", "8", "--ckpt_path", str(last))
    assert run_cli(LineModel, LineData, resumed) == 0
    config = yaml.safe_load((run_dir / CONFIG_FILENAME).read_text())
    assert config["trainer"]["max_steps"] == 8
    assert torch.load(last, weights_only=True)["global_step"] == 8


def test_unknown_config_key_fails_naming_the_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  lr: 0.1\n  learning_rate: 0.2\n")
    with pytest.raises(ConfigError, match="does not accept option 'model.learning_rate'"):
        run_cli(LineModel, LineData, fit_args(tmp_path / "run", "--config", str(config)))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.lrr", "3"], "unrecognized arguments: --model.lrr"),
        (["--model.lr", "fast"], "model.lr"),
        (["--config", "missing.yaml"], "missing.yaml"),
        (["--logger", "mlflow"], "logger"),
    ],
)
def test_bad_command_lines_raise_config_errors(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        run_cli(LineModel, LineData, fit_args(tmp_path / "run", *extra))


def test_help_and_print_config_exit_cleanly(capsys):
    assert run_cli(LineModel, LineData, ["fit", "--help"]) == 0
    assert "--trainer.max_epochs" in capsys.readouterr().out
    assert run_cli(LineModel, LineData, ["fit", "--print_config"], run_dir="runs/x") == 0
    assert "default_root_dir: runs/x" in capsys.readouterr().out
