"""Train the factor oracle used by evaluation: `cfgen oracle fit|validate`.

    cfgen oracle fit --config configs/oracle/synthetic.yaml

The oracle (`cfgen.models.oracle.FactorOracle`) regresses every generative factor of the
synthetic world (the dataset items' `factors`, (F,) in [0, 1]) with a mean squared error. Each
validation epoch logs, per factor and averaged, the mean absolute error (`val/mae/<factor>`, a
fraction of the factor's range) and the coefficient of determination (`val/r2/<factor>`).
At the end of `fit` the weights are exported as `<run dir>/oracle.pt` (bundle kind "oracle",
read by `cfgen.models.oracle.load_oracle`), and the CLI prints the per-factor figures.

On real data the oracle is not trained here: pass any multi-label attribute classifier returning
probabilities to the evaluation instead (the metrics take a callable).
"""

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.regression import MeanAbsoluteError, R2Score

from cfgen.errors import ConfigError
from cfgen.io import save_bundle
from cfgen.models.oracle import BUNDLE_KIND, FactorOracle
from cfgen.train.cli import CfgenCLI, run_cli

BUNDLE_NAME = "oracle.pt"


class OracleModule(pl.LightningModule):
    """Mean-squared-error regression of every factor; per-factor validation MAE and R².

    Args:
        width: channels of the oracle's first convolution.
        num_features: size of its trunk embedding (the FID feature space).
        lr: peak AdamW learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.

    The factor names and input channels come from the datamodule in `setup` (or from
    `configure_data` when used without a Trainer).
    """

    def __init__(
        self,
        width: int = 32,
        num_features: int = 128,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.oracle: FactorOracle | None = None
        self.image_size: int | None = None
        self.validation_figures: dict[str, dict[str, float]] = {}

    def setup(self, stage: str) -> None:
        if self.oracle is not None:
            return
        data = getattr(self.trainer, "datamodule", None)
        if data is None:
            raise ConfigError("OracleModule needs a datamodule (the `data:` config section)")
        factor_names = getattr(data.train_dataset, "factor_names", None)
        if not factor_names:
            raise ConfigError(
                f"data source {getattr(data.hparams, 'source', '?')!r} has no generative factors "
                "to regress; the factor oracle trains on the synthetic world (data.source: "
                "synthetic). On real data, give the evaluation an attribute classifier instead"
            )
        self.configure_data(factor_names, data.channels, data.image_size)

    def configure_data(
        self, factor_names: Sequence[str], in_channels: int, image_size: int
    ) -> None:
        """Build the oracle and its per-factor metrics."""
        hparams = self.hparams
        self.oracle = FactorOracle(factor_names, in_channels, hparams.width, hparams.num_features)
        self.image_size = int(image_size)
        self.val_mae = MeanAbsoluteError(num_outputs=len(factor_names))
        self.val_r2 = R2Score(multioutput="raw_values")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> factors (N, F) in [0, 1]."""
        return self.oracle(images)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        loss = F.mse_loss(self(batch["image"]), batch["factors"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_index: int) -> None:
        predicted, factors = self(batch["image"]), batch["factors"]
        self.val_mae.update(predicted, factors)
        self.val_r2.update(predicted, factors)
        self.log("val/loss", F.mse_loss(predicted, factors), prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        figures = {"mae": self.val_mae.compute(), "r2": self.val_r2.compute()}
        self.val_mae.reset()
        self.val_r2.reset()
        self.validation_figures = {
            name: dict(zip(self.oracle.factor_names, values.tolist(), strict=True))
            for name, values in figures.items()
        }
        for name, values in figures.items():
            self.log(f"val/{name}", values.mean(), prog_bar=name == "mae")
            for factor, value in zip(self.oracle.factor_names, values, strict=True):
                self.log(f"val/{name}/{factor}", value)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        # One cycle: a short warm-up then annealing reaches a low error in very few epochs.
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, self.hparams.lr, total_steps=steps
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def export(self, path: str | Path) -> Path:
        """Write the oracle bundle (kind "oracle") with its latest validation figures."""
        return save_bundle(
            path,
            BUNDLE_KIND,
            self.oracle.config(),
            self.oracle.state_dict(),
            image_size=self.image_size,
            validation=self.validation_figures,
        )

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            self.export(Path(self.trainer.default_root_dir) / BUNDLE_NAME)


def format_figures(figures: dict[str, dict[str, float]]) -> str:
    """Per-factor validation MAE and R² as an aligned text table."""
    if not figures:
        return "no validation figures (validation did not run)"
    lines = [f"{'factor':<12} {'val MAE':>8} {'val R2':>8}"]
    for factor, mae in figures["mae"].items():
        lines.append(f"{factor:<12} {mae:>8.4f} {figures['r2'][factor]:>8.4f}")
    return "\n".join(lines)


class OracleCLI(CfgenCLI):
    """`fit` and `validate` end with the per-factor table and where the oracle was written."""

    def after_fit(self) -> None:
        self._print_summary()

    def after_validate(self) -> None:
        self._print_summary()

    def _print_summary(self) -> None:
        print(format_figures(self.model.validation_figures))
        bundle = self.run_dir / BUNDLE_NAME
        if bundle.is_file():
            print(f"oracle bundle: {bundle}")
        print(f"run directory: {self.run_dir}", file=sys.stdout)


def cli_main(argv: Sequence[str]) -> int:
    """`cfgen oracle fit|validate ...`; returns the exit code."""
    from cfgen.data.datamodule import AttributeDataModule

    return run_cli(
        OracleModule,
        AttributeDataModule,
        argv,
        run_dir="runs/oracle/default",
        cli_class=OracleCLI,
        trainer_overrides={"max_epochs": 3},
    )
