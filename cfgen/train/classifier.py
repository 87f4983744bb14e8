"""Train the black-box classifier that cfgen explains: `cfgen classifier fit|test`.

    cfgen classifier fit --config configs/classifier/synthetic_smile.yaml --trainer.max_epochs 3
    cfgen classifier test --config configs/classifier/synthetic_smile.yaml \
        --ckpt_path runs/classifier/synthetic_smile/checkpoints/last.ckpt

For a binary target the network predicts every attribute of the data set at once (multi-label
binary cross-entropy, one logit per attribute, sigmoid; labels that are not finite, e.g.
uncertain ones dropped by the data, are left out of the loss). Learning all attributes costs
nothing extra and gives the explainer a classifier whose other outputs can be checked too. For
a class of a multi-class column (`--data.target digit=8`) it predicts that column's classes
with a softmax (cross-entropy), and the explainer explains the class against the others. The
metrics are computed on the target, one against the rest: `val/auc`, `test/auc`, `test/acc`,
`test/ece` (expected calibration error, 15 bins); a softmax classifier adds `test/class_acc`.

Sizes (number of outputs, attribute names, image size, channels) come from the datamodule in
`setup`, so a config only names the architecture and the optimiser; `data.target` picks the
explained attribute. At the end of `fit` the
weights are exported as `<run dir>/classifier.pt`, a safe bundle read by
`cfgen.models.blackbox.load_blackbox`; the CLI (`cfgen.train.classifier_cli`) then tests it and
prints a summary.
"""

from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryCalibrationError,
    MulticlassAccuracy,
)

from cfgen.errors import ConfigError, DataError
from cfgen.io import save_bundle
from cfgen.models.blackbox_adapter import ACTIVATIONS
from cfgen.models.classifiers import build_classifier
from cfgen.train.lightning_cli import training_data
from cfgen.train.robust import fgsm_random_start
from cfgen.train.schedule import check_adamw

BUNDLE_NAME = "classifier.pt"
ECE_BINS = 15


def masked_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the finite entries of `labels`; logits and labels `(N, A)`."""
    known = torch.isfinite(labels)
    if not known.any():
        return logits.sum() * 0.0  # keeps the graph; a batch without labels teaches nothing
    return F.binary_cross_entropy_with_logits(logits[known], labels[known])


def class_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy; labels `(N, K)` one-hot (rows with a non-finite label skipped)."""
    known = torch.isfinite(labels).all(dim=1)
    if not known.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known], labels[known].argmax(dim=1))


# Loss of each output activation: independent attributes, or the classes of one column.
LOSSES = {"sigmoid": masked_bce, "softmax": class_cross_entropy}


class ClassifierModule(pl.LightningModule):
    """Multi-label attribute classifier; metrics and export for the explained target.

    Args:
        arch: a name of `cfgen.models.classifiers.ARCHITECTURES`.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        pretrained: start from ImageNet weights if their file is in the torch cache.
        schedule: "cosine" decays the learning rate to 0 over training; "constant" keeps it.
        adversarial_radius: > 0 trains on adversarial images within this L-infinity radius (in
            the [-1, 1] units of the images; `cfgen.train.robust`, fast FGSM with a random
            start): a robust classifier, the evaluation's robust judge. 0: plain training.
        adversarial_warmup: the share of training over which the radius grows linearly from 0
            to `adversarial_radius` (a network attacked at the full radius from its first step
            may not start to learn at all: docs/DESIGN.md, "The robust judge").

    The data facts (attribute names, target, image size, channels) are not arguments: they
    come from the datamodule in `setup`, or from `configure_data` when used without a Trainer.
    """

    def __init__(
        self,
        arch: str = "small_cnn",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        pretrained: bool = False,
        schedule: Literal["cosine", "constant"] = "cosine",
        adversarial_radius: float = 0.0,
        adversarial_warmup: float = 0.4,
    ) -> None:
        super().__init__()
        if not 0.0 <= adversarial_radius < 1.0:
            raise ConfigError(
                f"adversarial_radius is an L-infinity radius in [-1, 1] image units: give a "
                f"value in [0, 1), e.g. 0.03; got {adversarial_radius}"
            )
        if not 0.0 <= adversarial_warmup <= 1.0:
            raise ConfigError(
                f"adversarial_warmup is a share of the training steps: give a value in [0, 1], "
                f"got {adversarial_warmup}"
            )
        check_adamw(lr, weight_decay)
        self.save_hyperparameters()
        self.network: torch.nn.Module | None = None
        self.data_facts: dict[str, Any] = {}
        self.label_columns: list[int] | None = None  # the data's label columns of the outputs
        self.val_auc = BinaryAUROC()
        self.test_auc = BinaryAUROC()
        self.test_acc = BinaryAccuracy()
        self.test_ece = BinaryCalibrationError(n_bins=ECE_BINS)

    # ---- data facts and network -----------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.network is not None:
            return
        data = getattr(self.trainer, "datamodule", None)
        if data is None:
            raise ConfigError("ClassifierModule needs a datamodule (the `data:` config section)")
        names = list(data.attribute_names)
        target = names[data.target_index]
        lacking = data.missing_class("train") if hasattr(data, "missing_class") else None
        if stage == "fit" and lacking:
            raise DataError(
                f"{lacking}: a classifier cannot learn {target!r} from one class. Give the train "
                "split images of both (check the labels, or the split column)"
            )
        # A data module without multi-class columns need not know the method.
        classes = data.class_names(target) if hasattr(data, "class_names") else None
        outputs, activation = (classes, "softmax") if classes else (names, "sigmoid")
        self.configure_data(outputs, target, data.image_size, data.channels, activation)
        self.label_columns = [names.index(name) for name in outputs]

    def configure_data(
        self,
        attribute_names: list[str],
        target: str,
        image_size: int,
        in_channels: int = 3,
        activation: str = "sigmoid",
    ) -> None:
        """Fix the outputs (one per attribute name, or per class with "softmax") and the
        input size, and build the network. Batches' labels are taken as they come, in the
        order of `attribute_names` (`setup` picks the columns of a data module)."""
        if target not in attribute_names:
            raise ConfigError(f"target {target!r} is not one of the attributes {attribute_names}")
        if activation not in LOSSES or (activation == "softmax" and len(attribute_names) < 2):
            raise ConfigError(
                f"activation {activation!r} needs one of {sorted(LOSSES)} (softmax: 2+ classes)"
            )
        self.data_facts = {
            "attribute_names": list(attribute_names),
            "target": target,
            "image_size": int(image_size),
            "in_channels": int(in_channels),
            "activation": activation,
        }
        self.label_columns = None
        self.network = build_classifier(
            self.hparams.arch,
            len(attribute_names),
            int(image_size),
            int(in_channels),
            self.hparams.pretrained,
        )
        if activation == "softmax":
            self.test_class_acc = MulticlassAccuracy(len(attribute_names), average="micro")

    @property
    def target_index(self) -> int:
        return self.data_facts["attribute_names"].index(self.data_facts["target"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> logits (N, A)."""
        return self.network(images)

    # ---- steps ----------------------------------------------------------------------------
    def _outputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, K) and the labels of the K outputs (N, K)."""
        labels = batch["labels"]
        if self.label_columns is not None:
            labels = labels[:, self.label_columns]
        return self(batch["image"]), labels

    def _target_scores(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss over all outputs, and target posterior (N,) and labels (N,)."""
        logits, labels = self._outputs(batch)
        activation = self.data_facts["activation"]
        loss = LOSSES[activation](logits, labels)
        posterior = ACTIVATIONS[activation](logits)[:, self.target_index]
        return loss, posterior, labels[:, self.target_index]

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        if self.hparams.adversarial_radius > 0:
            batch = {**batch, "image": self._adversarial(batch)}
        loss, _, _ = self._target_scores(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _adversarial(self, batch: dict) -> torch.Tensor:
        """The batch's images moved within `adversarial_radius` to raise the training loss."""
        logits_loss = LOSSES[self.data_facts["activation"]]
        labels = batch["labels"]
        if self.label_columns is not None:
            labels = labels[:, self.label_columns]
        return fgsm_random_start(
            lambda images: logits_loss(self(images), labels), batch["image"], self._radius()
        )

    def _radius(self) -> float:
        """The attack's radius at this step: `adversarial_radius` after the warm-up."""
        warmup = self.hparams.adversarial_warmup * self.trainer.estimated_stepping_batches
        done = 1.0 if warmup <= 0 else min(1.0, self.global_step / warmup)
        return self.hparams.adversarial_radius * done

    def validation_step(self, batch: dict, batch_index: int) -> None:
        loss, posterior, labels = self._target_scores(batch)
        known = torch.isfinite(labels)
        self.val_auc.update(posterior[known], labels[known].long())
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/auc", self.val_auc, prog_bar=True)

    def test_step(self, batch: dict, batch_index: int) -> None:
        loss, posterior, labels = self._target_scores(batch)
        known = torch.isfinite(labels)
        posterior, labels = posterior[known], labels[known].long()
        for name, metric in [
            ("auc", self.test_auc),
            ("acc", self.test_acc),
            ("ece", self.test_ece),
        ]:
            metric.update(posterior, labels)
            self.log(f"test/{name}", metric)
        self.log("test/loss", loss, sync_dist=True)
        if self.data_facts["activation"] == "softmax":
            logits, classes = self._outputs(batch)
            self.test_class_acc.update(logits, classes.argmax(dim=1))
            self.log("test/class_acc", self.test_class_acc)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        if self.hparams.schedule == "constant":
            return optimizer
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ---- export ---------------------------------------------------------------------------
    def bundle_config(self) -> dict:
        """What `load_blackbox` needs to rebuild this classifier (see `cfgen.models.blackbox`)."""
        facts = self.data_facts
        return {
            "arch": self.hparams.arch,
            "num_outputs": len(facts["attribute_names"]),
            **facts,
            "output": "logits",
            "adversarial_radius": self.hparams.adversarial_radius,
        }

    def export(self, path: str | Path) -> Path:
        """Write the classifier bundle to `path`."""
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if v.numel() == 1}
        return save_bundle(
            path,
            "classifier",
            self.bundle_config(),
            self.network.state_dict(),
            metrics=metrics,
            data=training_data(self),
        )

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            self.export(Path(self.trainer.default_root_dir) / BUNDLE_NAME)
