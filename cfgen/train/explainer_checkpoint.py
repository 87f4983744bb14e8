"""The explainer's files: what its checkpoints record, and the bundle it exports.

`ExplainerCheckpoint` is the base of `cfgen.train.explainer.ExplainerModule`, for the part of
the module that reads and writes files:

- every checkpoint records the explained classifier (`cfgen_classifier`: where it came from and
  how its posterior is read, `cfgen.models.blackbox_record`), holds the EMA generator with the
  batch-norm statistics it renders with, and is refused when a weight is not finite;
- resuming from a checkpoint with another classifier (another file, other weights in memory,
  another output or activation) is refused unless `allow_classifier_mismatch`;
- at the end of training, rank 0 exports the EMA generator as `<run>/explainer.pt`, a bundle
  whose config is `cfgen.explain.bundle.explainer_config` of the module's hyper-parameters:
  the same function rebuilds the explainer from a checkpoint.
"""

import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from cfgen.errors import CheckpointError, TrainingDivergedError
from cfgen.explain.bundle import EXPLAINER_KIND, explainer_config
from cfgen.io import save_bundle
from cfgen.models.blackbox_record import classifier_record, record_difference
from cfgen.train.lightning_cli import training_data

BUNDLE_NAME = "explainer.pt"


class ExplainerCheckpoint(pl.LightningModule):
    """Checkpoint hooks and export of the explainer module. The module provides `classifier`
    (a `BlackBox`), `classifier_path` (None for a model in memory), `allow_classifier_mismatch`,
    `ema` / `ema_generator`, `standing_statistics()` and the hyper-parameters `image_size`,
    `channels`, `n_bins`, `bin_target_kind` and `generator`."""

    def classifier_record(self) -> dict:
        """What checkpoints and the bundle record about the classifier: where it came from
        and how its posterior is read (`cfgen.models.blackbox_record`)."""
        if not self.classifier.checked:  # its reading is chosen on the first call
            self.check_classifier()
        return classifier_record(self.classifier_path, self.classifier)

    def check_classifier(self, device: torch.device | str | None = None) -> None:
        """Run the black box's output checks on two blank images, on `device` (default: where
        its weights are): a classifier whose reading is missing or wrong fails here."""
        if device is None:
            parameter = next(iter(self.classifier.parameters()), None)
            device = parameter.device if parameter is not None else "cpu"
        size, channels = self.hparams.image_size, self.hparams.channels
        self.classifier.check(torch.zeros(2, channels, size, size, device=device))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint renders as the export does: the EMA generator's statistics recomputed
        # from the last batches (every process saves, so every process recomputes).
        if self.standing_statistics():
            for name, buffer in self.ema.module.named_buffers():
                checkpoint["state_dict"][f"ema.module.{name}"] = buffer.detach().clone()
        for name, tensor in self.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise TrainingDivergedError(
                    f"refusing to save a checkpoint: weight {name} is not finite"
                )
        checkpoint["cfgen_classifier"] = self.classifier_record()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        recorded = checkpoint.get("cfgen_classifier", {})
        difference = record_difference(recorded, self.classifier_record())
        if difference is None:
            return
        message = f"the checkpoint was trained to explain another classifier: {difference}"
        if not self.allow_classifier_mismatch:
            raise CheckpointError(
                f"{message}; use the same classifier or pass "
                "--model.allow_classifier_mismatch true to continue anyway"
            )
        print(f"warning: {message}; continuing as asked", file=sys.stderr)

    def bundle_config(self) -> dict[str, Any]:
        """What `ProgressiveExaggeration.from_checkpoint` needs to rebuild the explainer."""
        return explainer_config(self.hparams, self.classifier_record())

    def export(self, path: str | Path) -> Path:
        """Save the EMA generator as an explainer bundle at `path`."""
        return save_bundle(
            path,
            EXPLAINER_KIND,
            self.bundle_config(),
            self.ema_generator.state_dict(),
            global_step=int(self.global_step),
            data=training_data(self),
        )

    def on_fit_end(self) -> None:
        self.standing_statistics()
        if self.trainer.is_global_zero:
            path = self.export(Path(self.trainer.default_root_dir) / BUNDLE_NAME)
            print(f"explainer saved to {path}", file=sys.stderr)
