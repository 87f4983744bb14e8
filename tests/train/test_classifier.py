import csv
import io
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import BinaryAUROC

from cfgen.errors import ConfigError
from cfgen.io import load_bundle
from cfgen.models.blackbox import load_blackbox
from cfgen.train.classifier import (
    BUNDLE_NAME,
    ClassifierModule,
    class_cross_entropy,
    masked_bce,
)
from cfgen.train.classifier_cli import ClassifierCLI
from cfgen.train.lightning_cli import run_cli

REPO = Path(__file__).resolve().parents[2]


class DictImages(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "labels": self.labels[index], "index": index}


def tiny_faces(n: int, seed: int) -> DictImages:
    """8 px images; Smiling = bright bottom half, Eyeglasses = bright top half."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 8, 8, generator=generator) * 2 - 1
    # A brightness offset per half makes the label learnable from a few images (its sign is
    # the label, up to the pixels' noise).
    offsets = torch.rand(n, 1, 2, 1, generator=generator) - 0.5
    images = (images + offsets.repeat_interleave(4, dim=2)).clamp(-1, 1)
    smiling = (images[:, :, 4:].mean(dim=(1, 2, 3)) > 0).float()
    glasses = (images[:, :, :4].mean(dim=(1, 2, 3)) > 0).float()
    return DictImages(images, torch.stack([glasses, smiling], dim=1))


class TinyAttributes(pl.LightningDataModule):
    """Stand-in for AttributeDataModule: train and validation images, held-out test images."""

    attribute_names = ["Eyeglasses", "Smiling"]
    target_index = 1
    image_size = 8
    channels = 3

    def __init__(self, n: int = 48, n_test: int = 64, batch_size: int = 16) -> None:
        super().__init__()
        self.n, self.n_test, self.batch_size = n, n_test, batch_size

    def setup(self, stage: str) -> None:
        self.dataset = tiny_faces(self.n, seed=0)
        self.held_out = tiny_faces(self.n_test, seed=1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.held_out, batch_size=self.batch_size)


def test_masked_bce_leaves_out_unknown_labels():
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.3]])
    labels = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    expected = F.binary_cross_entropy_with_logits(
        torch.tensor([0.5, 2.0, 0.3]), torch.tensor([1.0, 0.0, 1.0])
    )
    torch.testing.assert_close(masked_bce(logits, labels), expected)


def test_module_without_trainer_predicts_every_attribute_and_checks_the_target():
    module = ClassifierModule(arch="small_cnn")
    module.configure_data(["Eyeglasses", "Smiling", "Young"], "Young", image_size=16)
    assert module.target_index == 2
    assert module(torch.zeros(2, 3, 16, 16)).shape == (2, 3)
    with pytest.raises(ConfigError, match="target 'Bangs' is not one of"):
        module.configure_data(["Smiling"], "Bangs", image_size=16)


def run(argv: list[str]) -> tuple[int, str]:
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = run_cli(ClassifierModule, TinyAttributes, argv, cli_class=ClassifierCLI)
    return code, printed.getvalue()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One short fit (2 epochs of 3 steps), shared by the tests that inspect its outputs."""
    run_dir = tmp_path_factory.mktemp("classifier") / "run"
    args = ["fit", "--trainer.default_root_dir", str(run_dir), "--trainer.max_epochs", "2"]
    args += ["--trainer.enable_progress_bar", "false", "--logger", "csv", "--model.lr", "0.01"]
    code, printed = run(args)
    return run_dir, code, printed


def test_fit_exports_a_bundle_that_loads_as_the_black_box(fitted):
    run_dir, code, _ = fitted
    assert code == 0
    bundle = load_bundle(run_dir / BUNDLE_NAME, kind="classifier")
    assert bundle["config"] == {
        "arch": "small_cnn",
        "num_outputs": 2,
        "attribute_names": ["Eyeglasses", "Smiling"],
        "target": "Smiling",
        "image_size": 8,
        "in_channels": 3,
        "output": "logits",
        "activation": "sigmoid",
        "adversarial_radius": 0.0,
    }
    assert set(bundle["meta"]["metrics"]) >= {"val/auc", "train/loss"}
    # A data module without a training record leaves none (AttributeDataModule's is checked in
    # tests/evaluate/test_held_out.py).
    assert bundle["meta"]["data"] is None
    box = load_blackbox(str(run_dir / BUNDLE_NAME))
    assert box.target_name == "Smiling"
    posterior = box(torch.rand(4, 3, 8, 8) * 2 - 1)
    assert posterior.shape == (4,) and bool(((posterior > 0) & (posterior < 1)).all())


def test_fit_tests_the_result_and_prints_a_summary(fitted):
    run_dir, _, printed = fitted
    assert "classifier target 'Smiling': test auc" in printed
    assert "acc" in printed and "ece" in printed
    assert f"classifier bundle: {run_dir / BUNDLE_NAME}" in printed
    metrics = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/auc", "test/auc", "test/acc", "test/ece"} <= set(metrics)


def test_fit_learns_the_toy_well_above_chance_on_held_out_images(fitted):
    run_dir, _, printed = fitted
    with open(run_dir / "metrics.csv", newline="") as handle:
        [auc] = [float(row["test/auc"]) for row in csv.DictReader(handle) if row["test/auc"]]
    assert f"test auc {auc:.4f}" in printed
    assert auc >= 0.9
    # The exported black box ranks the held-out images as well (by its own AUC, torchmetrics').
    box = load_blackbox(str(run_dir / BUNDLE_NAME))
    held_out = tiny_faces(64, seed=1)
    with torch.no_grad():
        posterior = box(held_out.images)
    exported = BinaryAUROC()(posterior, held_out.labels[:, 1].long()).item()
    assert exported == pytest.approx(auc, abs=1e-4)


def test_fit_saves_the_resolved_config_and_last_checkpoint(fitted):
    run_dir, _, _ = fitted
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"] == {
        "arch": "small_cnn",
        "lr": 0.01,
        "weight_decay": 1e-4,
        "pretrained": False,
        "schedule": "cosine",
        "adversarial_radius": 0.0,
        "adversarial_warmup": 0.4,
    }
    assert config["trainer"]["max_epochs"] == 2
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_test_subcommand_restores_the_checkpoint(fitted, tmp_path):
    run_dir, _, _ = fitted
    args = ["test", "--trainer.default_root_dir", str(tmp_path), "--logger", "none"]
    args += ["--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt")]
    args += ["--trainer.enable_progress_bar", "false"]
    code, printed = run(args)
    assert code == 0
    assert "classifier target 'Smiling': test auc" in printed


def test_unknown_model_key_is_a_config_error(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("model:\n  arhc: resnet18\n")
    with pytest.raises(ConfigError, match="model.arhc"):
        run(["fit", "--config", str(config)])


@pytest.mark.slow
def test_cfgen_classifier_fit_command_on_synthetic_faces(tmp_path):
    command = [sys.executable, "-m", "cfgen.cli", "classifier", "fit"]
    command += ["--config", str(REPO / "configs/classifier/synthetic_smile.yaml")]
    command += ["--trainer.default_root_dir", str(tmp_path / "run"), "--logger", "csv"]
    command += ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "1"]
    command += ["--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false"]
    command += ["--data.n_train", "64", "--data.n_val", "32", "--data.n_test", "32"]
    command += ["--data.batch_size", "32"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "classifier target 'Smiling': test auc" in result.stdout
    assert (tmp_path / "run" / BUNDLE_NAME).is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_class_cross_entropy_is_the_softmax_loss_of_the_one_hot_class():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0]])
    labels = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [float("nan")] * 3])
    expected = F.cross_entropy(logits[:2], torch.tensor([1, 2]))
    torch.testing.assert_close(class_cross_entropy(logits, labels), expected)


def test_a_class_target_trains_a_softmax_over_its_column_on_grey_images(tmp_path):
    from cfgen.data.datamodule import AttributeDataModule
    from tests.data.fakes import user_folder

    user_folder(tmp_path / "data", n=60, size=8, classes=3)
    run_dir = tmp_path / "run"
    args = ["fit", "--trainer.default_root_dir", str(run_dir), "--trainer.max_epochs", "6"]
    args += ["--data.source", "folder", "--data.root", str(tmp_path / "data")]
    args += ["--data.target", "digit=2", "--data.image_size", "8", "--data.batch_size", "8"]
    args += ["--trainer.enable_progress_bar", "false", "--logger", "csv", "--model.lr", "0.01"]
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = run_cli(ClassifierModule, AttributeDataModule, args, cli_class=ClassifierCLI)
    assert code == 0
    config = load_bundle(run_dir / BUNDLE_NAME, kind="classifier")["config"]
    assert config["attribute_names"] == ["digit=0", "digit=1", "digit=2"]
    assert (config["target"], config["activation"], config["in_channels"]) == (
        "digit=2",
        "softmax",
        1,
    )
    box = load_blackbox(str(run_dir / BUNDLE_NAME))
    images = torch.rand(5, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(box(images), box.model(images).softmax(1)[:, 2])
    # The band's height is the class: the test split (rows 4, 9, ...) is learnt.
    assert "classifier target 'digit=2': test auc" in printed.getvalue()
    with open(run_dir / "metrics.csv", newline="") as handle:
        [accuracy] = [
            row["test/class_acc"] for row in csv.DictReader(handle) if row["test/class_acc"]
        ]
    assert float(accuracy) >= 0.9


def test_adversarial_training_attacks_within_the_radius_after_its_warm_up():
    """FGSM with a random start stays in the L-infinity ball and raises the loss it attacks."""
    from cfgen.train.robust import fgsm_random_start

    weights = torch.randn(3 * 8 * 8)
    images = torch.rand(16, 3, 8, 8) * 1.6 - 0.8

    def loss(x):
        return (x.flatten(1) @ weights).sum()

    attacked = fgsm_random_start(loss, images, radius=0.05)
    assert (attacked - images).abs().max() <= 0.05 + 1e-6
    assert loss(attacked) > loss(images)
    torch.testing.assert_close(fgsm_random_start(loss, images, radius=0.0), images)
