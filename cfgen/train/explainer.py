"""Training the Progressive Exaggeration explainer (METHOD.md §1) as a Lightning module.

    cfgen explainer fit --config configs/explainer/synthetic_smile.yaml
    cfgen explainer fit --config configs/explainer/synthetic_smile.yaml --ckpt_path last

Each batch makes one discriminator step; every `n_critic`-th batch also makes one generator
step, which reuses the images generated for that batch's discriminator step. An exponential
moving average (EMA) of the generator weights is what validation and the exported
`<run>/explainer.pt` use: GAN weights oscillate from step to step, their average does not.
The checkpoint records which classifier was explained (path + sha256) and resuming with another
one is refused. A non-finite loss stops training with `TrainingDivergedError` before any
optimiser step, so no checkpoint ever holds NaN weights.

Defaults are the official hyper-parameters; `configs/explainer/*.yaml` override them per setting.
"""

import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LightningArgumentParser
from torch import nn

from cfgen.bins import BIN_TARGETS, bin_target, posterior_to_bin
from cfgen.errors import CheckpointError, ConfigError, TrainingDivergedError
from cfgen.explain.progressive import EXPLAINER_KIND
from cfgen.io import save_bundle
from cfgen.losses import get_loss
from cfgen.models.blackbox import BlackBox, classifier_fingerprint, load_blackbox
from cfgen.models.discriminator import Discriminator
from cfgen.models.generator import Generator
from cfgen.train.callbacks import ExplainerMonitor
from cfgen.train.collapse import DiscriminatorCollapse
from cfgen.train.explainer_data import ExplainerDataModule
from cfgen.train.lightning_cli import CfgenCLI, run_cli

BUNDLE_NAME = "explainer.pt"
CLASSIFIER_KEYS = ("classifier", "allow_classifier_mismatch")


def classifier_logit(classifier: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logit of the explained class, (N, C, H, W) -> (N,), without saturating.

    For a `BlackBox` over logits the raw score is used, so the gradient survives where the
    float32 posterior is exactly 0 or 1; otherwise the log-odds of the posterior.
    """
    if isinstance(classifier, BlackBox) and classifier.output == "logits" and classifier.checked:
        scores = classifier.model(images).reshape(len(images), -1)
        target = scores[:, classifier.target_index]
        if classifier.activation == "sigmoid":
            return target
        others = torch.cat(
            [scores[:, : classifier.target_index], scores[:, classifier.target_index + 1 :]], 1
        )
        return target - others.logsumexp(dim=1)
    return torch.logit(classifier(images).clamp(1e-6, 1 - 1e-6))


@torch.no_grad()
def update_ema(average: nn.Module, model: nn.Module, decay: float) -> None:
    """average <- decay * average + (1 - decay) * model, for weights and float buffers."""
    for mean, value in zip(average.parameters(), model.parameters(), strict=True):
        mean.lerp_(value, 1.0 - decay)
    for mean, value in zip(average.buffers(), model.buffers(), strict=True):
        if mean.is_floating_point():
            mean.lerp_(value, 1.0 - decay)
        else:
            mean.copy_(value)


class ExplainerModule(pl.LightningModule):
    """The explainer GAN: generator I_f(x, c), discriminator D(x, c), frozen classifier f.

    Batches: `{"image": (B, C, H, W), "posterior": (B,)}` with f(image) precomputed (see
    `ExplainerDataModule`). Loss weights `weight_*` are those of METHOD.md §1.
    """

    def __init__(
        self,
        classifier: str = "runs/classifier/synthetic_smile/classifier.pt",
        allow_classifier_mismatch: bool = False,
        image_size: int = 32,
        channels: int = 3,
        n_bins: int = 10,
        bin_target_kind: str = "centre",
        generator_width: int = 32,
        generator_max_width: int = 256,
        discriminator_width: int = 32,
        discriminator_max_width: int = 256,
        projection: str = "ordinal",
        classifier_loss: str = "classifier_cross_entropy",
        weight_adversarial: float = 1.0,
        weight_classifier: float = 1.0,
        weight_reconstruction: float = 1.0,
        weight_cycle: float = 100.0,
        weight_embedding: float = 100.0,
        weight_identity: float = 0.0,
        n_critic: int = 5,
        lr_generator: float = 2e-4,
        lr_discriminator: float = 2e-4,
        beta1: float = 0.0,
        beta2: float = 0.9,
        ema_decay: float = 0.999,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        if n_critic < 1:
            raise ConfigError(f"n_critic must be >= 1, got {n_critic}")
        self.generator_config = {
            "image_size": image_size,
            "channels": channels,
            "n_bins": n_bins,
            "base_width": generator_width,
            "max_width": generator_max_width,
        }
        self.generator = Generator(**self.generator_config)
        self.discriminator = Discriminator(
            image_size, channels, n_bins, discriminator_width, discriminator_max_width, projection
        )
        self.ema_generator = copy.deepcopy(self.generator).requires_grad_(False)
        # Not a registered submodule: the black box is not part of the explainer's weights
        # (checkpoints refer to it by path and sha256, and must never overwrite it).
        object.__setattr__(self, "classifier", load_blackbox(classifier))
        self.classifier_sha256 = classifier_fingerprint(classifier)
        self.classifier_loss = get_loss(classifier_loss)
        if bin_target_kind not in BIN_TARGETS:
            raise ConfigError(
                f"unknown bin_target_kind {bin_target_kind!r}; choose one of {sorted(BIN_TARGETS)}"
            )

    # --- optimisation -------------------------------------------------------------------

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (self.hparams.beta1, self.hparams.beta2)
        return [
            torch.optim.Adam(self.generator.parameters(), self.hparams.lr_generator, betas=betas),
            torch.optim.Adam(
                self.discriminator.parameters(), self.hparams.lr_discriminator, betas=betas
            ),
        ]

    def on_fit_start(self) -> None:
        self.classifier.to(self.device)
        # Run the black box's output checks once, so that training can use its raw logits.
        size = self.hparams.image_size
        example = torch.zeros(2, self.hparams.channels, size, size, device=self.device)
        self.classifier.check(example)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        images, posteriors = batch["image"], batch["posterior"]
        if self.hparams.channels_last:  # measured: ~25% less CPU time per step at 32 px
            images = images.contiguous(memory_format=torch.channels_last)
        source_bin = posterior_to_bin(posteriors, self.hparams.n_bins)
        target_bin = torch.randint_like(source_bin, self.hparams.n_bins)
        generator_turn = batch_idx % self.hparams.n_critic == self.hparams.n_critic - 1
        with torch.set_grad_enabled(generator_turn):
            fakes = self.generator(images, target_bin)
        losses = self._discriminator_step(images, source_bin, fakes.detach(), target_bin)
        if generator_turn:
            losses |= self._generator_step(images, posteriors, source_bin, fakes, target_bin)
            self._update_ema()
        self.log_dict({f"loss/{name}": value for name, value in losses.items()}, prog_bar=False)

    def _update_ema(self) -> None:
        update_ema(self.ema_generator, self.generator, self._ema_decay())
        # DDP keeps the weights equal (all-reduced gradients) but each process's batch-norm
        # statistics are its own batches': keep rank 0's, as DDP does for the generator's.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in self.ema_generator.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def _ema_decay(self) -> float:
        # Warm-up: early on the average would be dominated by the random initial weights.
        steps = self.global_step // (self.hparams.n_critic + 1)
        return min(self.hparams.ema_decay, (1 + steps) / (10 + steps))

    def _discriminator_step(
        self,
        images: torch.Tensor,
        source_bin: torch.Tensor,
        fakes: torch.Tensor,
        target_bin: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """One hinge step of D: real images with their own bin, fakes with their target bin."""
        real_scores = self.discriminator(images, source_bin)
        fake_scores = self.discriminator(fakes, target_bin)
        loss = get_loss("hinge_discriminator")(real_scores, fake_scores)
        losses = {"discriminator": loss}
        self._step("discriminator", losses, loss)
        return {name: value.detach() for name, value in losses.items()}

    def _generator_step(
        self,
        images: torch.Tensor,
        posteriors: torch.Tensor,
        source_bin: torch.Tensor,
        fakes: torch.Tensor,
        target_bin: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """One step of G on the weighted sum of the METHOD.md §1 terms."""
        hp = self.hparams
        fake_embedding = self.generator.encode(fakes, source_bin)
        cycled = self.generator.decode(fake_embedding, source_bin)
        target_posterior = bin_target(target_bin, hp.n_bins, hp.bin_target_kind)
        losses = {
            "adversarial": get_loss("hinge_generator")(self.discriminator(fakes, target_bin)),
            "classifier": self.classifier_loss(
                classifier_logit(self.classifier, fakes), target_posterior
            ),
            "reconstruction": self.classifier_loss(
                classifier_logit(self.classifier, cycled), posteriors
            ),
            "cycle": get_loss("cycle_l1")(images, cycled),
        }
        if hp.weight_embedding > 0 or hp.weight_identity > 0:
            embedding = self.generator.encode(images, source_bin)
            losses["embedding"] = get_loss("embedding_l2")(embedding, fake_embedding)
            if hp.weight_identity > 0:
                same = self.generator.decode(embedding, source_bin)
                losses["identity"] = get_loss("identity_l1")(images, same)
        total = sum(getattr(hp, f"weight_{name}") * value for name, value in losses.items())
        losses["generator"] = total
        self._step("generator", losses, total)
        return {name: value.detach() for name, value in losses.items()}

    def _step(self, which: str, losses: dict[str, torch.Tensor], total: torch.Tensor) -> None:
        """Refuse non-finite losses, then backward and step the optimiser of `which`."""
        self._check_finite(losses)
        optimizer = self.optimizers()[0 if which == "generator" else 1]
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(total)
        optimizer.step()

    def _check_finite(self, losses: dict[str, torch.Tensor]) -> None:
        finite = bool(torch.isfinite(torch.stack([v.detach() for v in losses.values()])).all())
        # Under DDP all processes stop at the same step, or the others wait in an all-reduce.
        if not self.trainer.strategy.reduce_boolean_decision(not finite, all=False):
            return
        name = next((n for n, v in losses.items() if not torch.isfinite(v).all()), None)
        raise TrainingDivergedError(
            f"training diverged at step {self.global_step}: "
            + (f"loss '{name}' is {losses[name].item()}" if name else "on another process")
            + ". No update was applied and the last checkpoint "
            f"({Path(self.trainer.default_root_dir) / 'checkpoints' / 'last.ckpt'}) is intact; "
            "lower the learning rates or the loss weights and resume with --ckpt_path last"
        )

    # --- checkpoints and export ---------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for name, tensor in self.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise TrainingDivergedError(
                    f"refusing to save a checkpoint: weight {name} is not finite"
                )
        checkpoint["cfgen_classifier"] = {
            "path": self.hparams.classifier,
            "sha256": self.classifier_sha256,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        recorded = checkpoint.get("cfgen_classifier", {})
        if recorded.get("sha256") == self.classifier_sha256:
            return
        message = (
            f"the checkpoint was trained to explain classifier {recorded.get('path')} "
            f"(sha256 {str(recorded.get('sha256'))[:12]}…) but {self.hparams.classifier} "
            f"(sha256 {self.classifier_sha256[:12]}…) is configured"
        )
        if not self.hparams.allow_classifier_mismatch:
            raise CheckpointError(
                f"{message}; use the same classifier or pass "
                "--model.allow_classifier_mismatch true to continue anyway"
            )
        print(f"warning: {message}; continuing as asked", file=sys.stderr)

    def bundle_config(self) -> dict[str, Any]:
        """What `ProgressiveExaggeration.from_checkpoint` needs to rebuild the explainer."""
        return {
            "generator": dict(self.generator_config),
            "n_bins": self.hparams.n_bins,
            "image_size": self.hparams.image_size,
            "channels": self.hparams.channels,
            "bin_target_kind": self.hparams.bin_target_kind,
            "classifier": {"path": self.hparams.classifier, "sha256": self.classifier_sha256},
        }

    def export(self, path: str | Path) -> Path:
        """Save the EMA generator as an explainer bundle at `path`."""
        return save_bundle(
            path,
            EXPLAINER_KIND,
            self.bundle_config(),
            self.ema_generator.state_dict(),
            global_step=int(self.global_step),
        )

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            path = self.export(Path(self.trainer.default_root_dir) / BUNDLE_NAME)
            print(f"explainer saved to {path}", file=sys.stderr)


class ExplainerCLI(CfgenCLI):
    """`CfgenCLI` + the monitor callback; the data module gets the model's classifier and bins."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(ExplainerMonitor, "monitor")
        parser.add_lightning_class_args(DiscriminatorCollapse, "collapse")  # --collapse.patience
        parser.link_arguments("model.classifier", "data.classifier")
        parser.link_arguments("model.n_bins", "data.n_bins")
        # The data module resolves them (option, else what the classifier records, else default).
        parser.link_arguments("data.image_size", "model.image_size", apply_on="instantiate")
        parser.link_arguments("data.channels", "model.channels", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        # A GAN's D step leaves G without gradients: DDP must look for unused parameters.
        if self.subcommand_config().trainer.get("strategy") == "ddp":
            kwargs["strategy"] = "ddp_find_unused_parameters_true"
        return super().instantiate_trainer(**kwargs)

    def _parse_ckpt_path(self) -> None:
        # Lightning replaces the model config with the checkpoint's hyper-parameters on resume,
        # command line included; the classifier choice must stay the user's, so that resuming
        # with another classifier is refused (or allowed) as the user asked.
        model = self.config[self.config.subcommand].model if self.config.get("subcommand") else None
        kept = {key: model[key] for key in CLASSIFIER_KEYS} if model else {}
        super()._parse_ckpt_path()
        if kept:
            config = self.config[self.config.subcommand]
            for key, value in kept.items():
                config.model[key] = value
            config.data["classifier"] = kept["classifier"]  # the link target, set before the swap

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:  # one summary per run, not one per process
            return
        monitors = [c for c in self.trainer.callbacks if isinstance(c, ExplainerMonitor)]
        if monitors and monitors[0].history:
            last = monitors[0].history[-1]
            figures = ", ".join(f"{k[4:]} {v:.3f}" for k, v in last.items() if k.startswith("val/"))
            print(f"explainer after {last['step']} generator steps: {figures}")
        print(f"explainer: {self.run_dir / BUNDLE_NAME}; run directory: {self.run_dir}")


def cli_main(argv: Sequence[str]) -> int:
    """`cfgen explainer fit|validate --config configs/explainer/synthetic_smile.yaml ...`."""
    return run_cli(
        ExplainerModule,
        ExplainerDataModule,
        argv,
        run_dir="runs/explainer/default",
        cli_class=ExplainerCLI,
    )
