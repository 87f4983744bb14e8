"""Training the Progressive Exaggeration explainer (METHOD.md §1) as a Lightning module.

    cfgen explainer fit --config configs/explainer/synthetic_smile.yaml
    cfgen explainer fit --config configs/explainer/synthetic_smile.yaml --ckpt_path last
    cfgen explainer validate --config configs/explainer/synthetic_smile.yaml \
        --ckpt_path runs/explainer/synthetic_smile/checkpoints/best.ckpt

Steps: each batch makes one discriminator step; every `n_critic`-th batch also makes one
generator step, which reuses the images generated for that batch's discriminator step. Lightning
counts every optimiser step (`trainer.max_steps`, `global_step`); `generator_steps_done` and
`optimizer_steps` are the only conversions between the two counts, and `--generator_steps N`
sets the length of a run in generator steps.

EMA: an exponential moving average of the generator weights (and batch-norm statistics),
`torch.optim.swa_utils.AveragedModel` updated after every generator step, is what validation and
the exported `<run>/explainer.pt` use: GAN weights oscillate from step to step, their average
does not. Lightning's `WeightAveraging` callback is not used: it averages the whole
LightningModule (the discriminator too, which nothing reads), would update after the
discriminator's steps as well, and swaps the average into the live module for validation, while
the GAN game must go on with the live generator.

Blend options (`generator_output="blend"`, see `cfgen.models.generator`): `weight_mask`,
`weight_mask_tv` and `weight_mask_binary` penalise the mask's area, speckle and transparency;
`weight_redraw` trains what is drawn as the official generator's image (adversarial and
classifier terms on the redraw, the discriminator judging redraws as fakes too) and lets the
blend's classifier term move only the mask.

Difference output (`generator_output="difference"`): the image x + G(x, c) - G(x, c_x) gets
every official term (the cycle and reconstruction read its redraw G(x', c_x)); the identity term
reads the redraw G(x, c_x) the render made; `weight_redraw` adds the official adversarial and
classifier terms on the redraw G(x, c) itself, which the discriminator then judges as a fake too.

Discriminator views (`discriminator_views`, e.g. "translation,cutout"): every image D judges,
real or generated, in D's step and in G's adversarial terms, is a fresh random view
(`cfgen.train.augment.DiscriminatorViews`, DiffAugment), so that D cannot learn a small training
set by heart. Off by default.

Batch-norm statistics (`bn_statistics`): with `edit` (default), before every validation,
checkpoint and the export (once per training batch at most) the EMA generator's running
statistics are recomputed over the edit pass (real queries at random target bins, batch
statistics, as in training's edit) of the last `standing_images` training images
(`cfgen.train.explainer_steps.standing_statistics`; BigGAN's "standing statistics", SWA's
`update_bn`); `running` keeps the averages training left. Why and
what it changes: benchmarks/README.md, "Batch norm's statistics".

Learning rates (`lr_decay`): constant (0, the official) or, for a share `lr_decay` of the run at
its end, falling linearly to 0 (CycleGAN's schedule), both optimisers' `LambdaLR` stepped once per
generator step; the run's length must then be known (`--generator_steps`).

Validation: `validation_step` renders the validation queries (`data.val_queries` images, one
batch) at every bin with the EMA generator and logs `val/compat_mae`, `val/flip_rate`,
`val/monotonicity` and `val/identity_l1`, figures that need only the black box, so a
`ModelCheckpoint` can keep the best explainer (`checkpoints/best.ckpt`, by `val/compat_mae`).

The checkpoint records which classifier was explained (path + sha256) and resuming with another
one is refused. A non-finite loss stops training with `TrainingDivergedError` before any
optimiser step, so no checkpoint ever holds NaN weights.

Defaults are the official hyper-parameters; `configs/explainer/*.yaml` override them per setting.
"""

import sys
from collections import deque
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.optim.swa_utils import AveragedModel

from cfgen.bins import BIN_TARGETS, bin_target, posterior_to_bin
from cfgen.errors import CheckpointError, ConfigError, TrainingDivergedError
from cfgen.evaluate.shift import shift_summary
from cfgen.explain.progressive import EXPLAINER_KIND, generator_strip
from cfgen.explain.strip import Strip
from cfgen.io import save_bundle
from cfgen.losses import get_loss
from cfgen.models.blackbox import classifier_fingerprint, load_blackbox
from cfgen.models.discriminator import Discriminator
from cfgen.models.generator import Generator, Rendered
from cfgen.train.augment import DiscriminatorViews, RandomViews
from cfgen.train.explainer_steps import (
    classifier_logit,
    generator_steps_done,
    linear_decay,
    standing_statistics,
    warmup_ema,
)

BUNDLE_NAME = "explainer.pt"
CLASSIFIER_KEYS = ("classifier", "allow_classifier_mismatch")
SAMPLE_SIZE = 16  # strips kept from each validation for the monitor's figure
# Where the rendering generator's batch-norm statistics come from: `edit`, recomputed over the
# edit pass of the last training batches (`standing_statistics`); `running`, the running
# averages training left (official: every pass of the training step, by the raw weights).
BN_STATISTICS = ("edit", "running")


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
        generator_skips: bool = False,
        generator_output: str = "image",
        edit_downsample: int = 1,
        mask_downsample: int = 1,
        generator_norm: str = "batch",
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
        weight_mask: float = 0.0,
        weight_mask_tv: float = 0.0,
        weight_mask_binary: float = 0.0,
        weight_redraw: float = 0.0,
        weight_context: float = 0.0,
        view_shift: float = 0.0,
        view_blur: float = 0.0,
        view_noise: float = 0.0,
        discriminator_views: str = "",
        n_critic: int = 5,
        lr_generator: float = 2e-4,
        lr_discriminator: float = 2e-4,
        beta1: float = 0.0,
        beta2: float = 0.9,
        lr_decay: float = 0.0,
        ema_decay: float = 0.999,
        channels_last: bool = True,
        bn_statistics: str = "edit",
        standing_images: int = 1024,
    ) -> None:
        super().__init__()
        # The classifier is an input, not a hyper-parameter: kept out of the checkpoint's
        # hyper-parameters, a resumed run (which Lightning configures from them) explains the
        # classifier the user names, and `on_load_checkpoint` checks it against the recorded one.
        self.save_hyperparameters(ignore=list(CLASSIFIER_KEYS))
        self.classifier_path = classifier
        self.allow_classifier_mismatch = allow_classifier_mismatch
        self.automatic_optimization = False
        if n_critic < 1:
            raise ConfigError(f"n_critic must be >= 1, got {n_critic}")
        self.generator_config = {
            "image_size": image_size,
            "channels": channels,
            "n_bins": n_bins,
            "base_width": generator_width,
            "max_width": generator_max_width,
            "skips": generator_skips,
            "output": generator_output,
            "edit_downsample": edit_downsample,
            "mask_downsample": mask_downsample,
            "norm": generator_norm,
        }
        self.generator = Generator(**self.generator_config)
        self.discriminator = Discriminator(
            image_size, channels, n_bins, discriminator_width, discriminator_max_width, projection
        )
        self.ema = AveragedModel(
            self.generator, multi_avg_fn=warmup_ema(ema_decay), use_buffers=True
        ).requires_grad_(False)
        # The first queries of the last validation and their strips, for the monitor's figure.
        self.validation_sample: tuple[torch.Tensor, Strip] | None = None
        # Not a registered submodule: the black box is not part of the explainer's weights
        # (checkpoints refer to it by path and sha256, and must never overwrite it).
        object.__setattr__(self, "classifier", load_blackbox(classifier))
        self.classifier_sha256 = classifier_fingerprint(classifier)
        self.classifier_loss = get_loss(classifier_loss)
        self.views = RandomViews(view_shift, view_blur, view_noise)
        self.discriminator_views = DiscriminatorViews(discriminator_views)
        if max(weight_mask, weight_mask_tv, weight_mask_binary) > 0 and generator_output != "blend":
            raise ConfigError(
                "weight_mask / weight_mask_tv / weight_mask_binary act on the blend's mask: set "
                "generator_output: blend"
            )
        if weight_redraw > 0 and generator_output not in ("blend", "difference"):
            raise ConfigError(
                "weight_redraw trains the redraw of a blend or difference generator: set "
                "generator_output: blend or difference"
            )
        if not 0.0 <= lr_decay <= 1.0:
            raise ConfigError(
                f"lr_decay is the share of the run over which the learning rates fall to 0: "
                f"give a value in [0, 1], got {lr_decay}"
            )
        if standing_images < 1:
            raise ConfigError(
                f"standing_images must be >= 1 (training images the batch-norm statistics are "
                f"recomputed from), got {standing_images}"
            )
        if bn_statistics not in BN_STATISTICS:
            raise ConfigError(
                f"unknown bn_statistics {bn_statistics!r}; choose one of {list(BN_STATISTICS)}"
            )
        # The last training batches (images, their bins), >= standing_images images, from which
        # the EMA generator's batch-norm statistics are recomputed (`bn_statistics: edit`).
        self.recent_batches: deque[tuple[torch.Tensor, torch.Tensor]] = deque()
        self._statistics_current = False  # recomputed since the last training batch
        if bin_target_kind not in BIN_TARGETS:
            raise ConfigError(
                f"unknown bin_target_kind {bin_target_kind!r}; choose one of {sorted(BIN_TARGETS)}"
            )

    @property
    def ema_generator(self) -> Generator:
        """The averaged generator: what validation and the exported explainer use."""
        return self.ema.module

    @property
    def generator_steps(self) -> int:
        """Generator steps made so far."""
        return generator_steps_done(self.global_step, self.hparams.n_critic)

    # --- optimisation -------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        betas = (self.hparams.beta1, self.hparams.beta2)
        optimizers = [
            torch.optim.Adam(self.generator.parameters(), self.hparams.lr_generator, betas=betas),
            torch.optim.Adam(
                self.discriminator.parameters(), self.hparams.lr_discriminator, betas=betas
            ),
        ]
        if self.hparams.lr_decay == 0:
            return optimizers
        # Stepped once per generator step (`_generator_step`); Lightning checkpoints their
        # state, so a resumed run continues the schedule.
        max_steps = self.trainer.max_steps
        if max_steps is None or max_steps <= 0:
            raise ConfigError(
                "lr_decay needs the run's length: give --generator_steps (or --trainer.max_steps)"
            )
        factor = linear_decay(
            generator_steps_done(max_steps, self.hparams.n_critic), self.hparams.lr_decay
        )
        schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in optimizers]
        return optimizers, schedulers

    def on_fit_start(self) -> None:
        self._prepare_classifier()

    def on_validation_start(self) -> None:
        self._prepare_classifier()
        self.standing_statistics()

    def _prepare_classifier(self) -> None:
        self.classifier.to(self.device)
        # Run the black box's output checks once, so that training can use its raw logits.
        size = self.hparams.image_size
        example = torch.zeros(2, self.hparams.channels, size, size, device=self.device)
        self.classifier.check(example)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        images, posteriors = batch["image"], batch["posterior"]
        if self.hparams.channels_last:  # speed: benchmarks/README.md "Explainer speed"
            images = images.contiguous(memory_format=torch.channels_last)
        source_bin = posterior_to_bin(posteriors, self.hparams.n_bins)
        target_bin = torch.randint_like(source_bin, self.hparams.n_bins)
        generator_turn = batch_idx % self.hparams.n_critic == self.hparams.n_critic - 1
        with torch.set_grad_enabled(generator_turn):
            fakes = self.generator.render(images, target_bin, source_bin)
        fake_images, fake_bins = fakes.image.detach(), target_bin
        if self.hparams.weight_redraw > 0:  # D judges the redraws too: they are trained as fakes
            fake_images = torch.cat([fake_images, fakes.drawn.detach()])
            fake_bins = torch.cat([target_bin, target_bin])
        self._remember(images, source_bin)
        losses = self._discriminator_step(images, source_bin, fake_images, fake_bins)
        if generator_turn:
            context = batch.get("context")
            losses |= self._generator_step(
                images, posteriors, source_bin, fakes, target_bin, context
            )
            self._update_ema()
        self.log_dict({f"loss/{name}": value for name, value in losses.items()}, prog_bar=False)

    def _remember(self, images: torch.Tensor, source_bin: torch.Tensor) -> None:
        """Keep the batch for `standing_statistics`: the last batches, >= standing_images images."""
        if self.hparams.bn_statistics != "edit":
            return
        self.recent_batches.append((images.detach(), source_bin.detach()))
        self._statistics_current = False
        kept = sum(len(batch) for batch, _ in self.recent_batches)
        while kept - len(self.recent_batches[0][0]) >= self.hparams.standing_images:
            kept -= len(self.recent_batches.popleft()[0])

    def standing_statistics(self) -> bool:
        """Recompute the EMA generator's batch-norm statistics over the edit pass of the last
        training batches at random target bins (`bn_statistics: edit`); False when there is
        nothing to recompute (no batch norm, no batch seen yet, or `bn_statistics: running`).
        The target bins come from a generator of their own: training's random stream is
        untouched."""
        if self.hparams.bn_statistics != "edit" or not self.recent_batches:
            return False
        if self._statistics_current:  # no training batch since the last recomputation
            return True
        draws = torch.Generator().manual_seed(0)
        batches = [
            (images, bins, torch.randint(self.hparams.n_bins, bins.shape, generator=draws).to(bins))
            for images, bins in self.recent_batches
        ]
        done = standing_statistics(self.ema_generator, batches)
        self._statistics_current = done
        if done and torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in self.ema.buffers():  # every process renders with rank 0's
                torch.distributed.broadcast(buffer, src=0)
        return done

    def _update_ema(self) -> None:
        self.ema.update_parameters(self.generator)
        # DDP keeps the weights equal (all-reduced gradients) but each process's batch-norm
        # statistics are its own batches': keep rank 0's, as DDP does for the generator's.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in self.ema.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def _discriminator_step(
        self,
        images: torch.Tensor,
        source_bin: torch.Tensor,
        fakes: torch.Tensor,
        target_bin: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """One hinge step of D: real images with their own bin, fakes with their target bin."""
        real_scores = self._judge(images, source_bin)
        fake_scores = self._judge(fakes, target_bin)
        loss = get_loss("hinge_discriminator")(real_scores, fake_scores)
        losses = {"discriminator": loss}
        self._step("discriminator", losses, loss)
        return {name: value.detach() for name, value in losses.items()}

    def _judge(self, images: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """D's scores of `images` in `bins`, through the discriminator's views if any."""
        return self.discriminator(self.discriminator_views(images), bins)

    def _generator_step(
        self,
        images: torch.Tensor,
        posteriors: torch.Tensor,
        source_bin: torch.Tensor,
        rendered: Rendered,
        target_bin: torch.Tensor,
        context: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One step of G on the weighted sum of the METHOD.md §1 terms (and the options')."""
        hp = self.hparams
        fakes = rendered.image
        fake_features = self.generator.encode(fakes, source_bin)
        cycled = self.generator.decode(fake_features, fakes, source_bin).image
        target_posterior = bin_target(target_bin, hp.n_bins, hp.bin_target_kind)
        classified = fakes
        if hp.weight_redraw > 0 and rendered.mask is not None:
            # The redraw is trained as the official generator's whole image is; the blend's
            # classifier term then moves only the mask (where to take the redraw), not what is
            # drawn, so the drawing cannot become a pattern that only f reads.
            mask, drawn = rendered.mask, rendered.drawn
            classified = mask * drawn.detach() + (1.0 - mask) * images
        viewed = self.views(classified) if self.views.active else classified
        losses = {
            "adversarial": get_loss("hinge_generator")(self._judge(fakes, target_bin)),
            "classifier": self.classifier_loss(
                classifier_logit(self.classifier, viewed), target_posterior
            ),
            "reconstruction": self.classifier_loss(
                classifier_logit(self.classifier, cycled), posteriors
            ),
            "cycle": get_loss("cycle_l1")(images, cycled),
        }
        # A difference generator's render already holds the redraw in the query's own bin
        # (`reference`): its identity term needs no encoder pass of its own.
        same = rendered.reference
        if hp.weight_embedding > 0 or (hp.weight_identity > 0 and same is None):
            features = self.generator.encode(images, source_bin)
            losses["embedding"] = get_loss("embedding_l2")(features[-1], fake_features[-1])
            if hp.weight_identity > 0 and same is None:
                same = self.generator.decode(features, images, source_bin).image
        if hp.weight_identity > 0:
            losses["identity"] = get_loss("identity_l1")(images, same)
        if hp.weight_context > 0:
            if context is None:
                raise ConfigError(
                    "weight_context needs region masks in the batches: set data.context_region"
                )
            losses["context"] = get_loss("context_l1")(images, fakes, context)
        if hp.weight_redraw > 0:
            drawn = rendered.drawn
            losses["redraw"] = get_loss("hinge_generator")(
                self._judge(drawn, target_bin)
            ) + self.classifier_loss(classifier_logit(self.classifier, drawn), target_posterior)
        if rendered.mask is not None:
            losses["mask"] = get_loss("mask_area")(rendered.mask)
            losses["mask_tv"] = get_loss("mask_total_variation")(rendered.mask)
            losses["mask_binary"] = get_loss("mask_binary")(rendered.mask)
        total = sum(getattr(hp, f"weight_{name}") * value for name, value in losses.items())
        losses["generator"] = total
        self._step("generator", losses, total)
        for scheduler in self.lr_schedulers() or []:
            scheduler.step()
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

    # --- validation -----------------------------------------------------------------------

    @torch.no_grad()
    def validation_figures(self, queries: torch.Tensor) -> tuple[Strip, dict[str, float]]:
        """The EMA generator's strips of `queries` (N, C, H, W) at every bin, and their figures:
        compat MAE, flip rate, monotonicity (`shift_summary`) and identity L1, the mean |x - I(x,
        c_x)| at each query's own bin c_x. Only the black box is used."""
        generator = self.ema_generator
        training = generator.training
        generator.eval()
        try:
            strip = generator_strip(generator, self.classifier, queries, self.hparams.n_bins)
        finally:
            generator.train(training)
        hp = self.hparams
        figures = shift_summary(
            strip.posteriors,
            strip.target_bins,
            strip.query_posteriors,
            hp.n_bins,
            hp.bin_target_kind,
        )
        own_bin = posterior_to_bin(strip.query_posteriors, hp.n_bins)
        same = strip.images[own_bin, torch.arange(len(queries), device=own_bin.device)]
        figures["identity_l1"] = (same - queries).abs().mean().item()
        return strip, figures

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        images = batch["image"]
        strip, figures = self.validation_figures(images)
        if batch_idx == 0:
            shown = slice(0, SAMPLE_SIZE)
            self.validation_sample = (images[shown], strip.select(shown))
        metrics = {f"val/{name}": value for name, value in figures.items()}
        self.log_dict(metrics, batch_size=len(images), sync_dist=True)

    # --- checkpoints and export ---------------------------------------------------------

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
        checkpoint["cfgen_classifier"] = {
            "path": self.classifier_path,
            "sha256": self.classifier_sha256,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        recorded = checkpoint.get("cfgen_classifier", {})
        if recorded.get("sha256") == self.classifier_sha256:
            return
        message = (
            f"the checkpoint was trained to explain classifier {recorded.get('path')} "
            f"(sha256 {str(recorded.get('sha256'))[:12]}…) but {self.classifier_path} "
            f"(sha256 {self.classifier_sha256[:12]}…) is configured"
        )
        if not self.allow_classifier_mismatch:
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
            "classifier": {"path": self.classifier_path, "sha256": self.classifier_sha256},
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
        self.standing_statistics()
        if self.trainer.is_global_zero:
            path = self.export(Path(self.trainer.default_root_dir) / BUNDLE_NAME)
            print(f"explainer saved to {path}", file=sys.stderr)
