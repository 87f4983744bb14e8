"""Train the autoencoder of the latent-shift baseline: `cfgen autoencoder fit|validate`.

    cfgen autoencoder fit --config configs/autoencoder/synthetic.yaml

The autoencoder (`cfgen.models.autoencoder.Autoencoder`) learns to reconstruct the images of the
data source (any `data.source` of `AttributeDataModule`; labels are not used) with an L1 loss,
decoding codes with Gaussian noise added during training (`code_noise` times each code's RMS):
the latent shift decodes codes moved off the training codes, and a decoder trained on noisy
codes turns them into images like the data instead of artefacts (docs/DESIGN.md, "The latent
shift's autoencoder").
Each validation epoch logs the mean absolute error (`val/l1`, on the [-1, 1] scale) and the peak
signal-to-noise ratio (`val/psnr`, dB, data range 2). At the end of `fit` the weights are
exported as `<run dir>/autoencoder.pt` (bundle kind "autoencoder", read by
`cfgen.models.autoencoder.load_autoencoder`), and the CLI prints the validation figures.

It never sees a classifier: one autoencoder serves every classifier of the same images.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.image import PeakSignalNoiseRatio

from cfgen.errors import ConfigError
from cfgen.io import save_bundle
from cfgen.models.autoencoder import BUNDLE_KIND, Autoencoder
from cfgen.train.lightning_cli import CfgenCLI, run_cli, training_data
from cfgen.train.schedule import adamw_one_cycle, check_adamw

BUNDLE_NAME = "autoencoder.pt"


class AutoencoderModule(pl.LightningModule):
    """L1 reconstruction; validation L1 and PSNR.

    Args:
        code_channels: channels of the code map.
        downsamplings: stride-2 steps between the image and the code (the code's side is
            image_size / 2**downsamplings).
        width: channels of the first convolution.
        max_width: cap on the channels of the deepest feature maps.
        code_noise: standard deviation of the noise added to each code while training, as a
            fraction of the code's root mean square (0: a plain autoencoder).
        lr: peak AdamW learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.

    The image size and channels come from the datamodule in `setup` (or from `configure_data`
    when used without a Trainer).
    """

    def __init__(
        self,
        code_channels: int = 16,
        downsamplings: int = 2,
        width: int = 8,
        max_width: int = 32,
        code_noise: float = 0.3,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        if code_noise < 0:
            raise ConfigError(f"code_noise must be >= 0, got {code_noise}")
        check_adamw(lr, weight_decay)
        self.save_hyperparameters()
        self.autoencoder: Autoencoder | None = None
        self.val_psnr = PeakSignalNoiseRatio(data_range=2.0)
        self.validation_figures: dict[str, float] = {}

    def setup(self, stage: str) -> None:
        if self.autoencoder is not None:
            return
        data = getattr(self.trainer, "datamodule", None)
        if data is None:
            raise ConfigError("AutoencoderModule needs a datamodule (the `data:` config section)")
        self.configure_data(data.image_size, data.channels)

    def configure_data(self, image_size: int, channels: int) -> None:
        """Build the autoencoder for images (N, channels, image_size, image_size)."""
        hparams = self.hparams
        self.autoencoder = Autoencoder(
            int(image_size),
            int(channels),
            hparams.code_channels,
            hparams.downsamplings,
            hparams.width,
            hparams.max_width,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstructions of images (N, C, H, W) in [-1, 1]."""
        return self.autoencoder(images)

    def _noisy(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (N, ...) plus Gaussian noise of `code_noise` times each code's RMS."""
        if self.hparams.code_noise == 0:
            return codes
        rms = codes.detach().flatten(1).pow(2).mean(dim=1).sqrt()
        scale = self.hparams.code_noise * rms.view(-1, *[1] * (codes.dim() - 1))
        return codes + scale * torch.randn_like(codes)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        images = batch["image"]
        codes = self._noisy(self.autoencoder.encode(images))
        loss = F.l1_loss(self.autoencoder.decode(codes), images)
        self.log("train/l1", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_index: int) -> None:
        images = batch["image"]
        reconstructions = self(images)
        self.val_psnr.update(reconstructions, images)
        self.log("val/l1", F.l1_loss(reconstructions, images), prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        psnr = self.val_psnr.compute()
        self.val_psnr.reset()
        self.log("val/psnr", psnr, prog_bar=True)
        l1 = self.trainer.callback_metrics.get("val/l1")
        self.validation_figures = {"psnr": float(psnr)}
        if l1 is not None:
            self.validation_figures["l1"] = float(l1)

    def configure_optimizers(self) -> Any:
        return adamw_one_cycle(self, self.hparams.lr, self.hparams.weight_decay)

    def export(self, path: str | Path) -> Path:
        """Write the autoencoder bundle (kind "autoencoder") with its latest validation figures."""
        return save_bundle(
            path,
            BUNDLE_KIND,
            self.autoencoder.config(),
            self.autoencoder.state_dict(),
            validation=self.validation_figures,
            data=training_data(self),
        )

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            self.export(Path(self.trainer.default_root_dir) / BUNDLE_NAME)


class AutoencoderCLI(CfgenCLI):
    """`fit` and `validate` end with the validation figures and where the bundle was written."""

    def after_fit(self) -> None:
        self._print_summary()

    def after_validate(self) -> None:
        self._print_summary()

    def _print_summary(self) -> None:
        if not self.trainer.is_global_zero:
            return
        figures = self.model.validation_figures
        if figures:
            text = ", ".join(f"{name} {value:.4f}" for name, value in figures.items())
            print(f"autoencoder validation: {text}")
        bundle = self.run_dir / BUNDLE_NAME
        if bundle.is_file():
            print(f"autoencoder bundle: {bundle}")
        print(f"run directory: {self.run_dir}")


def cli_main(argv: Sequence[str]) -> int:
    """`cfgen autoencoder fit|validate ...`; returns the exit code."""
    from cfgen.data.datamodule import AttributeDataModule

    return run_cli(
        AutoencoderModule,
        AttributeDataModule,
        argv,
        run_dir="runs/autoencoder/default",
        cli_class=AutoencoderCLI,
        trainer_overrides={"max_epochs": 5},
    )
