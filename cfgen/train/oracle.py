"""Train the oracle used by evaluation: `cfgen oracle fit|validate`.

    cfgen oracle fit --config configs/oracle/synthetic.yaml                     # factors
    cfgen oracle fit --data.source folder --data.root DIR [--data.target digit=8]  # attributes

Two kinds (`cfgen.models.oracle`), chosen by `model.kind` (default: "factors" when the data has
generative factors, i.e. the synthetic world, else "attributes"):

- "factors": regresses every generative factor of the synthetic world (the items' `factors`,
  (F,) in [0, 1]) with a mean squared error; each validation epoch logs per factor the mean
  absolute error (`val/mae/<factor>`, a fraction of the factor's range) and R² (`val/r2/...`).
- "attributes": a multi-label classifier of the data's attribute columns (the items' `labels`,
  binary cross-entropy), for any labelled source: a folder, CelebA, CheXpert. The columns are
  the data module's `attribute_names` (by default a folder's binary columns; `--data.target`
  or `--data.attributes` add multi-class ones as `digit=0` ... `digit=9`). Validation logs per
  attribute the accuracy at 0.5 (`val/acc/<name>`) and the AUC (`val/auc/<name>`; NaN for an
  attribute constant in the validation split).

At the end of `fit` the weights are exported as `<run dir>/oracle.pt` (bundle kind "oracle",
read by `cfgen.models.oracle.load_oracle`), and the CLI prints the per-output figures.
"""

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import (
    BinaryAUROC,
    BinaryStatScores,
    MultilabelAUROC,
    MultilabelStatScores,
)
from torchmetrics.regression import MeanAbsoluteError, R2Score

from cfgen.errors import ConfigError
from cfgen.io import save_bundle
from cfgen.models.oracle import BUNDLE_KIND, Oracle, build_oracle
from cfgen.train.classifier import masked_bce
from cfgen.train.lightning_cli import CfgenCLI, run_cli, training_data
from cfgen.train.schedule import adamw_one_cycle, check_adamw

BUNDLE_NAME = "oracle.pt"


class FactorFigures(nn.Module):
    """Per-factor validation MAE and R² of outputs (N, F) against factors (N, F)."""

    def __init__(self, num_outputs: int) -> None:
        super().__init__()
        self.mae = MeanAbsoluteError(num_outputs=num_outputs)
        self.r2 = R2Score(multioutput="raw_values")

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.mae.update(outputs, targets)
        self.r2.update(outputs, targets)

    def compute(self) -> dict[str, torch.Tensor]:
        figures = {"mae": self.mae.compute(), "r2": self.r2.compute()}
        self.mae.reset()
        self.r2.reset()
        return figures


class AttributeFigures(nn.Module):
    """Per-attribute validation accuracy at 0.5 and AUC of outputs (N, A) against 0/1 labels."""

    def __init__(self, num_outputs: int) -> None:
        super().__init__()
        # torchmetrics' multi-label metrics need two labels or more: one attribute is binary.
        self.single = num_outputs == 1
        if self.single:
            self.stats, self.auc = BinaryStatScores(), BinaryAUROC()
        else:
            self.stats = MultilabelStatScores(num_outputs, average=None)
            self.auc = MultilabelAUROC(num_outputs, average=None)

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        labels = targets.long()
        if self.single:
            outputs, labels = outputs[:, 0], labels[:, 0]
        self.stats.update(outputs, labels)
        self.auc.update(outputs, labels)

    def compute(self) -> dict[str, torch.Tensor]:
        # (A, 5) statistics and (A,) AUCs, A = 1 for a single attribute too.
        tp, fp, tn, fn, positives = self.stats.compute().float().view(-1, 5).unbind(dim=1)
        total = tp + fp + tn + fn
        auc = self.auc.compute().float().view(-1)
        # torchmetrics answers 0 for an attribute with one value only: no AUC exists there.
        auc = auc.masked_fill((positives == 0) | (positives == total), float("nan"))
        self.stats.reset()
        self.auc.reset()
        return {"acc": (tp + tn) / total, "auc": auc}


def _factor_loss(oracle: Oracle, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(oracle(images), targets)


def _attribute_loss(oracle: Oracle, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return masked_bce(oracle.predict_logits(images), targets)


@dataclass(frozen=True)
class Task:
    """What an oracle kind reads from the data and how it learns and is judged."""

    names: Callable[[Any], list[str]]  # data module -> output names
    batch_key: str  # the batch entry holding the targets
    loss: Callable[[Oracle, torch.Tensor, torch.Tensor], torch.Tensor]
    figures: type[nn.Module]
    headline: str  # the figure shown in the progress bar


def _factor_names(data: Any) -> list[str]:
    names = list(getattr(data.train_dataset, "factor_names", None) or [])
    if not names:
        raise ConfigError(
            f"data source {getattr(data.hparams, 'source', '?')!r} has no generative factors "
            "to regress; the factor oracle trains on the synthetic world (data.source: "
            "synthetic). On real data, train an attribute oracle (--model.kind attributes)"
        )
    return names


def _attribute_names(data: Any) -> list[str]:
    names = list(data.attribute_names)
    if not names:
        raise ConfigError(
            "the data has no attribute columns for the attribute oracle to read; list them "
            "with --data.attributes (a multi-class column becomes one attribute per value)"
        )
    return names


TASKS = {
    "factors": Task(_factor_names, "factors", _factor_loss, FactorFigures, "mae"),
    "attributes": Task(_attribute_names, "labels", _attribute_loss, AttributeFigures, "acc"),
}


class OracleModule(pl.LightningModule):
    """Trains an oracle of `kind` (see the module docstring); per-output validation figures.

    Args:
        kind: "factors" or "attributes"; None: factors when the data has them, else attributes.
        width: channels of the oracle's first convolution.
        num_features: size of its trunk embedding (the FID feature space).
        lr: peak AdamW learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.

    The output names and input channels come from the datamodule in `setup` (or from
    `configure_data` when used without a Trainer).
    """

    def __init__(
        self,
        kind: Literal["factors", "attributes"] | None = None,
        width: int = 32,
        num_features: int = 128,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        check_adamw(lr, weight_decay)
        self.save_hyperparameters()
        self.oracle: Oracle | None = None
        self.image_size: int | None = None
        self.validation_figures: dict[str, dict[str, float]] = {}

    def setup(self, stage: str) -> None:
        if self.oracle is not None:
            return
        data = getattr(self.trainer, "datamodule", None)
        if data is None:
            raise ConfigError("OracleModule needs a datamodule (the `data:` config section)")
        kind = self.hparams.kind
        if kind is None:
            kind = "factors" if getattr(data.train_dataset, "factor_names", None) else "attributes"
        self.configure_data(TASKS[kind].names(data), data.channels, data.image_size, kind)

    def configure_data(
        self,
        output_names: Sequence[str],
        in_channels: int,
        image_size: int,
        kind: str = "factors",
    ) -> None:
        """Build the oracle of `kind` and its per-output metrics."""
        hparams = self.hparams
        self.oracle = build_oracle(
            kind, output_names, in_channels=in_channels, width=hparams.width,
            num_features=hparams.num_features,
        )  # fmt: skip
        self.task = TASKS[kind]
        self.image_size = int(image_size)
        self.figures = self.task.figures(len(output_names))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> outputs (N, K) in [0, 1]."""
        return self.oracle(images)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        loss = self.task.loss(self.oracle, batch["image"], batch[self.task.batch_key])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_index: int) -> None:
        targets = batch[self.task.batch_key]
        self.figures.update(self(batch["image"]), targets)
        self.log("val/loss", self.task.loss(self.oracle, batch["image"], targets), prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        figures = self.figures.compute()
        names = self.oracle.output_names
        self.validation_figures = {
            name: dict(zip(names, values.tolist(), strict=True)) for name, values in figures.items()
        }
        for name, values in figures.items():
            self.log(f"val/{name}", values.nanmean(), prog_bar=name == self.task.headline)
            for output, value in zip(names, values, strict=True):
                self.log(f"val/{name}/{output}", value)

    def configure_optimizers(self) -> Any:
        return adamw_one_cycle(self, self.hparams.lr, self.hparams.weight_decay)

    def export(self, path: str | Path) -> Path:
        """Write the oracle bundle (kind "oracle") with its latest validation figures."""
        return save_bundle(
            path,
            BUNDLE_KIND,
            self.oracle.config(),
            self.oracle.state_dict(),
            image_size=self.image_size,
            validation=self.validation_figures,
            data=training_data(self),
        )

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            self.export(Path(self.trainer.default_root_dir) / BUNDLE_NAME)


def format_figures(figures: dict[str, dict[str, float]]) -> str:
    """Per-output validation figures as an aligned text table (one column per figure)."""
    if not figures:
        return "no validation figures (validation did not run)"
    columns = list(figures)
    outputs = list(figures[columns[0]])
    width = max(12, *(len(name) for name in outputs))
    lines = [f"{'output':<{width}} " + " ".join(f"{'val ' + c.upper():>8}" for c in columns)]
    for output in outputs:
        values = " ".join(f"{figures[column][output]:>8.4f}" for column in columns)
        lines.append(f"{output:<{width}} {values}")
    return "\n".join(lines)


class OracleCLI(CfgenCLI):
    """`fit` and `validate` end with the per-output table and where the oracle was written."""

    def after_fit(self) -> None:
        self._print_summary()

    def after_validate(self) -> None:
        self._print_summary()

    def _print_summary(self) -> None:
        print(f"{self.model.oracle.kind} oracle, validation figures:")
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
