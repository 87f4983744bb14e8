import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from cfgen.data.synthetic import SyntheticFaces
from cfgen.errors import ConfigError
from cfgen.io import load_bundle
from cfgen.models.autoencoder import load_autoencoder
from cfgen.train.autoencoder import AutoencoderModule

REPO = Path(__file__).resolve().parents[2]


class TinyFaces(pl.LightningDataModule):
    """A few synthetic faces at 16 px, as `AttributeDataModule` hands them out."""

    image_size, channels = 16, 3

    def __init__(self, n: int = 64) -> None:
        super().__init__()
        self.train_dataset = SyntheticFaces(n, image_size=16)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=16, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=32)


def _trainer(tmp_path: Path, **options) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **options,
    )


def _reconstruction_error(module: AutoencoderModule, images: torch.Tensor) -> float:
    module.eval()
    with torch.no_grad():
        error = F.l1_loss(module(images), images).item()
    module.train()
    return error


def test_training_lowers_the_reconstruction_error_and_exports_the_bundle(tmp_path):
    data, module = (
        TinyFaces(),
        AutoencoderModule(code_channels=4, width=4, max_width=8, code_noise=0.1),
    )
    module.configure_data(16, 3)
    images = data.train_dataset.images
    before = _reconstruction_error(module, images)
    # Validation (the exported figures) once, after the last of 20 epochs.
    _trainer(tmp_path, max_epochs=20, check_val_every_n_epoch=20, num_sanity_val_steps=0).fit(
        module, datamodule=data
    )
    after = _reconstruction_error(module, images)
    assert after < 0.6 * before, (before, after)
    figures = module.validation_figures
    torch.testing.assert_close(figures["l1"], after, atol=1e-4, rtol=0)
    # PSNR of a [-1, 1] image: 10 log10(2^2 / MSE).
    module.eval()
    with torch.no_grad():
        mse = F.mse_loss(module(images), images).item()
    torch.testing.assert_close(figures["psnr"], 10 * torch.log10(torch.tensor(4 / mse)).item(),
                               atol=1e-3, rtol=0)  # fmt: skip
    bundle = load_bundle(tmp_path / "autoencoder.pt", "autoencoder")  # written by on_fit_end
    assert bundle["meta"]["validation"] == figures
    loaded = load_autoencoder(tmp_path / "autoencoder.pt")
    torch.testing.assert_close(loaded(images[:4]), module(images[:4]))


def test_training_decodes_noisy_codes_of_the_set_scale(tmp_path):
    module = AutoencoderModule(code_noise=0.5)
    codes = (
        torch.randn(4000, 2, 3, 3)
        * torch.tensor([1.0, 10.0, 100.0, 1000.0]).repeat(1000)[:, None, None, None]
    )
    noise = module._noisy(codes) - codes
    rms = codes.flatten(1).pow(2).mean(dim=1).sqrt()
    relative = noise.flatten(1).std(dim=1) / rms  # every code gets half its own RMS as noise
    torch.testing.assert_close(relative.mean(), torch.tensor(0.5), atol=0.01, rtol=0)
    assert AutoencoderModule(code_noise=0.0)._noisy(codes) is codes
    with pytest.raises(ConfigError, match="code_noise must be >= 0"):
        AutoencoderModule(code_noise=-0.1)


def test_cfgen_autoencoder_fit_command(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "cfgen.cli", "autoencoder", "fit"]
    command += ["--config", str(REPO / "configs/autoencoder/synthetic.yaml")]
    command += ["--trainer.default_root_dir", str(run_dir), "--trainer.max_steps", "2"]
    command += ["--trainer.limit_val_batches", "1", "--logger", "csv", "--model.width", "4"]
    command += ["--data.n_train", "64", "--data.n_val", "32", "--data.n_test", "8"]
    command += ["--data.batch_size", "32", "--trainer.enable_progress_bar", "false"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "autoencoder validation: psnr" in done.stdout
    assert f"autoencoder bundle: {run_dir / 'autoencoder.pt'}" in done.stdout
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints/last.ckpt").is_file()
    autoencoder = load_autoencoder(run_dir / "autoencoder.pt")
    assert autoencoder(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 32, 32)
