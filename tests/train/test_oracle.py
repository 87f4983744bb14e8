import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from cfgen.data.synthetic import SyntheticFaces
from cfgen.errors import ConfigError
from cfgen.io import load_bundle
from cfgen.models.oracle import AttributeOracle, load_oracle
from cfgen.train.oracle import AttributeFigures, OracleModule, format_figures

REPO = Path(__file__).resolve().parents[2]


class TinyWorld(pl.LightningDataModule):
    """A few synthetic faces at 16 px; `with_factors=False` mimics a real attribute folder."""

    image_size, channels = 16, 3

    def __init__(self, with_factors: bool = True) -> None:
        super().__init__()
        self.train_dataset = SyntheticFaces(16, image_size=16)
        if not with_factors:
            self.train_dataset.factor_names = []

    @property
    def attribute_names(self) -> list[str]:
        return self.train_dataset.attribute_names

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=8)

    val_dataloader = train_dataloader


def _trainer(tmp_path: Path) -> pl.Trainer:
    return pl.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_a_training_step_logs_per_factor_figures_and_exports_the_bundle(tmp_path):
    module = OracleModule(width=8, num_features=16)
    # fast_dev_run keeps the run directory clean: export by hand where `fit` would.
    _trainer(tmp_path).fit(module, datamodule=TinyWorld())
    names = SyntheticFaces(1, image_size=16).factor_names
    assert list(module.validation_figures["mae"]) == names
    assert all(0 <= mae <= 1 for mae in module.validation_figures["mae"].values())
    path = module.export(tmp_path / "oracle.pt")
    bundle = load_bundle(path, "oracle")
    assert bundle["meta"]["image_size"] == 16
    assert bundle["meta"]["validation"] == module.validation_figures
    assert load_oracle(path).factor_names == names
    assert "smile" in format_figures(module.validation_figures)


def test_a_factor_oracle_of_data_without_factors_is_refused(tmp_path):
    module = OracleModule(kind="factors", width=8)
    with pytest.raises(ConfigError, match="no generative factors.*--model.kind attributes"):
        _trainer(tmp_path).fit(module, datamodule=TinyWorld(with_factors=False))


def test_data_without_factors_gets_an_attribute_oracle_of_its_columns(tmp_path):
    module = OracleModule(width=8, num_features=16)
    _trainer(tmp_path).fit(module, datamodule=TinyWorld(with_factors=False))
    names = SyntheticFaces(1, image_size=16).attribute_names
    assert module.oracle.kind == "attributes" and module.oracle.output_names == names
    assert list(module.validation_figures) == ["acc", "auc"]
    assert list(module.validation_figures["acc"]) == names
    loaded = load_oracle(module.export(tmp_path / "oracle.pt"))
    assert isinstance(loaded, AttributeOracle) and loaded.attribute_names == names


def test_attribute_figures_are_accuracy_at_one_half_and_auc_nan_when_constant():
    figures = AttributeFigures(2)
    outputs = torch.tensor([[0.9, 0.6], [0.2, 0.6], [0.7, 0.4], [0.4, 0.8]])
    labels = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    figures.update(outputs[:2], labels[:2])
    figures.update(outputs[2:], labels[2:])
    computed = figures.compute()
    torch.testing.assert_close(computed["acc"], torch.tensor([0.5, 0.75]))
    # AUC of column 0: positives 0.9, 0.4 vs negatives 0.2, 0.7 -> 3 of 4 pairs ordered.
    torch.testing.assert_close(computed["auc"], torch.tensor([0.75, float("nan")]), equal_nan=True)


def test_cfgen_oracle_fit_command(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "cfgen.cli", "oracle", "fit"]
    command += ["--config", str(REPO / "configs/oracle/synthetic.yaml")]
    command += ["--trainer.default_root_dir", str(run_dir), "--trainer.max_steps", "2"]
    command += ["--trainer.limit_val_batches", "1", "--logger", "csv", "--model.width", "8"]
    command += ["--data.n_train", "64", "--data.n_val", "32", "--data.n_test", "8"]
    command += ["--data.batch_size", "32", "--trainer.enable_progress_bar", "false"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "val MAE" in done.stdout and f"oracle bundle: {run_dir / 'oracle.pt'}" in done.stdout
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints/last.ckpt").is_file()
    oracle = load_oracle(run_dir / "oracle.pt")
    assert oracle(torch.zeros(2, 3, 32, 32)).shape == (2, len(oracle.factor_names))


@pytest.mark.parametrize("source", ["celeba", "chexpert"])
def test_attribute_oracles_train_on_celeba_and_chexpert_layouts(tmp_path, source, capsys):
    from cfgen.cli import main
    from tests.data.fakes import celeba_folder, chexpert_folder

    if source == "celeba":
        labels = [[1, -1], [-1, 1], [1, 1], [-1, -1]] * 2
        root = celeba_folder(tmp_path / "celeba", [0, 0, 0, 0, 1, 1, 2, 2], labels)
        names, channels = ["Smiling", "Young"], 3
    else:
        root = chexpert_folder(tmp_path / "CheXpert-v1.0-small")
        names, channels = ["Cardiomegaly", "Edema"], 1  # in the order of OBSERVATIONS
    run_dir = tmp_path / "run"
    argv = ["oracle", "fit", "--data.source", source, "--data.root", str(root)]
    argv += ["--data.image_size", "16", "--data.batch_size", "4", "--model.width", "8"]
    argv += ["--trainer.default_root_dir", str(run_dir), "--trainer.max_epochs", "1"]
    argv += ["--logger", "none", "--trainer.enable_progress_bar", "false"]
    assert main(argv) == 0
    assert "attributes oracle, validation figures" in capsys.readouterr().out
    oracle = load_oracle(run_dir / "oracle.pt")
    assert (oracle.kind, oracle.output_names, oracle.in_channels) == ("attributes", names, channels)
    outputs = oracle(torch.rand(3, channels, 16, 16) * 2 - 1)
    assert outputs.shape == (3, 2) and bool(((outputs > 0) & (outputs < 1)).all())
