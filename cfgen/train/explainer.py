"""Training the Progressive Exaggeration explainer as a Lightning module.

    cfgen explainer fit --config configs/explainer/synthetic_smile.yaml
    cfgen explainer fit --config configs/explainer/synthetic_smile.yaml --ckpt_path last
    cfgen explainer fit --help          # every option, by group

    module = ExplainerModule(my_classifier, image_size=64, generator={"output": "blend"})
    cfgen.fit_explainer(module, data, generator_steps=700, out="runs/pe")  # from Python

Steps: each batch makes one discriminator step; every `optimisation.n_critic`-th batch also
makes one generator step (`cfgen.train.explainer_objective`), which reuses the images generated
for that batch's discriminator step. Lightning counts every optimiser step (`trainer.max_steps`,
`global_step`); `generator_steps_done` and `optimizer_steps` are the only conversions between
the two counts, and `--generator_steps N` sets the length of a run in generator steps.

EMA: an exponential moving average of the generator weights (and batch-norm statistics),
`torch.optim.swa_utils.AveragedModel` updated after every generator step, is what validation and
the exported `<run>/explainer.pt` use (docs/DESIGN.md, "The averaged generator" and
"Batch-norm statistics").

Validation: `validation_step` renders the validation queries at every bin with the EMA
generator and logs `val/compat_mae`, `val/flip_rate`, `val/monotonicity` and `val/identity_l1`,
figures that need only the black box, so that a `ModelCheckpoint` can keep the best explainer;
beside them `val/critic_auc` (and `val/patch_critic_auc`), how well the critics tell the queries
from their far frames, which says whether they still see what the generator draws.

The classifier is a file (a cfgen bundle, TorchScript, torch.export) or, from Python, a model
held in memory (an nn.Module or any callable): `classifier_output` and `classifier_activation`
say how its posterior is read (`cfgen.models.blackbox`). Checkpoints and the exported bundle
record which classifier was explained and how (`cfgen.models.blackbox_record`); resuming with
another is refused. A non-finite loss stops training with `TrainingDivergedError` before any
optimiser step, so no checkpoint ever holds NaN weights.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from cfgen.bins import posterior_to_bin
from cfgen.errors import ConfigError, TrainingDivergedError
from cfgen.explain.strip import Strip
from cfgen.losses import get_loss
from cfgen.models.blackbox import Activation, as_blackbox
from cfgen.models.discriminator import Discriminator
from cfgen.models.generator import Generator, GeneratorOptions, Rendered
from cfgen.options import as_dict, as_group
from cfgen.train.augment import DiscriminatorViews, cutmix_negatives, edited_windows
from cfgen.train.explainer_checkpoint import ExplainerCheckpoint
from cfgen.train.explainer_objective import GeneratorObjective
from cfgen.train.explainer_options import (
    Averaging,
    ClassifierTerm,
    DiscriminatorOptions,
    LossWeights,
    Optimisation,
)
from cfgen.train.explainer_steps import (
    FakeHistory,
    RecentBatches,
    broadcast_from_rank_zero,
    critic_auc,
    generator_optimizers,
    generator_steps_done,
    standing_statistics,
    validation_figures,
    warmup_ema,
)

DEFAULT_CLASSIFIER = "runs/classifier/synthetic_smile/classifier.pt"
SAMPLE_SIZE = 16  # strips kept from each validation for the monitor's figure
Classifier = str | nn.Module | Callable[[torch.Tensor], torch.Tensor]


class ExplainerModule(ExplainerCheckpoint):
    """The explainer GAN: generator I_f(x, c), discriminator D(x, c), frozen classifier f.

    Batches: `{"image": (B, C, H, W), "posterior": (B,)}` with f(image) precomputed (see
    `ExplainerDataModule`). Each group of options is a dataclass (or a dict of its fields).

    Args:
        classifier: the black box to explain: a file (cfgen bundle, TorchScript, torch.export
            .pt2) or, from Python, a model in memory (an nn.Module or a callable returning
            scores (N, K) or (N,)).
        classifier_output: the explained output column, an index or a name (default: the
            bundle's target, else the only column; needed for several columns).
        classifier_activation: how its scores become a posterior: sigmoid, softmax or none
            (default: the bundle's, else sigmoid for one column; needed for several columns).
        allow_classifier_mismatch: resume a run with another classifier than its checkpoint's.
        image_size: side of the square images, in pixels (the CLI takes the data's).
        channels: image channels (the CLI takes the data's).
        n_bins: posterior bins that condition the generator (official: 10).
        bin_target_kind: the posterior a bin stands for: its centre or its lower edge.
        generator: the generator's architecture (GeneratorOptions).
        discriminator: the discriminator's architecture and views (DiscriminatorOptions).
        weights: the weight of each term of the generator's loss (LossWeights).
        classifier_term: how the classifier-consistency terms read f (ClassifierTerm).
        optimisation: optimisers, learning rates and steps (Optimisation).
        averaging: the averaged generator that validation and the export use (Averaging).
    """

    def __init__(
        self,
        classifier: Classifier = DEFAULT_CLASSIFIER,
        classifier_output: int | str | None = None,
        classifier_activation: Activation | None = None,
        allow_classifier_mismatch: bool = False,
        image_size: int = 32,
        channels: int = 3,
        n_bins: int = 10,
        bin_target_kind: Literal["centre", "lower"] = "centre",
        generator: GeneratorOptions = GeneratorOptions(),
        discriminator: DiscriminatorOptions = DiscriminatorOptions(),
        weights: LossWeights = LossWeights(),
        classifier_term: ClassifierTerm = ClassifierTerm(),
        optimisation: Optimisation = Optimisation(),
        averaging: Averaging = Averaging(),
    ) -> None:
        super().__init__()
        self.generator_options = as_group(generator, GeneratorOptions, "generator")
        self.discriminator_options = as_group(discriminator, DiscriminatorOptions, "discriminator")
        self.weights = as_group(weights, LossWeights, "weights")
        self.classifier_term = as_group(classifier_term, ClassifierTerm, "classifier_term")
        self.optimisation = as_group(optimisation, Optimisation, "optimisation")
        self.averaging = as_group(averaging, Averaging, "averaging")
        self.weights.check_generator(self.generator_options)
        self.weights.check_discriminator(self.discriminator_options)
        self.classifier_term.check_generator(self.generator_options)
        if bin_target_kind not in ("centre", "lower"):
            raise ConfigError(
                f"unknown bin_target_kind {bin_target_kind!r}; choose one of ['centre', 'lower']"
            )
        # Plain values and dicts only: checkpoints load with weights_only. The classifier is an
        # input, not a hyper-parameter: a resumed run explains the classifier the user names,
        # and `on_load_checkpoint` checks it against the recorded one.
        shape = dict(image_size=image_size, channels=channels, n_bins=n_bins)
        groups = {name: as_dict(options) for name, options in self.option_groups().items()}
        self.save_hyperparameters(shape | {"bin_target_kind": bin_target_kind} | groups)
        self.automatic_optimization = False
        self.generator = Generator(**self.generator_options.generator_config(**shape))
        options = self.discriminator_options
        self.discriminator = Discriminator(
            image_size,
            channels,
            n_bins,
            options.width,
            options.max_width,
            options.projection,
            options.patch_size,
        )
        self.discriminator_views = DiscriminatorViews(",".join(options.views))
        self.ema = AveragedModel(
            self.generator, multi_avg_fn=warmup_ema(self.averaging.decay), use_buffers=True
        ).requires_grad_(False)
        # The first queries of the last validation and their strips, for the monitor's figure.
        self.validation_sample: tuple[torch.Tensor, Strip] | None = None
        # Not a registered submodule: the black box is not part of the explainer's weights
        # (checkpoints refer to it by its record, and must never overwrite it).
        self.classifier_path = str(classifier) if isinstance(classifier, str | Path) else None
        black_box = as_blackbox(classifier, classifier_output, classifier_activation)
        object.__setattr__(self, "classifier", black_box)
        self.allow_classifier_mismatch = allow_classifier_mismatch
        # The last training batches, from which the EMA generator's batch-norm statistics are
        # recomputed (`averaging.bn_statistics: edit`).
        self.recent_batches = RecentBatches(self.averaging.standing_images)
        self._statistics_current = False  # recomputed since the last training batch
        self.fake_history = FakeHistory(options.history)  # `discriminator.history`

    def option_groups(self) -> dict[str, Any]:
        """Every option group, by its argument name."""
        return {
            "generator": self.generator_options,
            "discriminator": self.discriminator_options,
            "weights": self.weights,
            "classifier_term": self.classifier_term,
            "optimisation": self.optimisation,
            "averaging": self.averaging,
        }

    @property
    def ema_generator(self) -> Generator:
        """The averaged generator: what validation and the exported explainer use."""
        return self.ema.module

    @property
    def generator_steps(self) -> int:
        """Generator steps made so far."""
        return generator_steps_done(self.global_step, self.optimisation.n_critic)

    # --- optimisation -------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        # The schedulers are stepped once per generator step (`_generator_step`); Lightning
        # checkpoints their state, so a resumed run continues the schedule.
        return generator_optimizers(
            self.generator, self.discriminator, self.optimisation, self.trainer.max_steps
        )

    def setup(self, stage: str) -> None:
        # The black box's output checks (its reading chosen) before anything is written.
        self.check_classifier()

    def on_fit_start(self) -> None:
        self._prepare_classifier()

    def on_validation_start(self) -> None:
        self._prepare_classifier()
        self.standing_statistics()

    def _prepare_classifier(self) -> None:
        self.classifier.to(self.device)
        # Run the black box's output checks once, so that training can use its raw logits.
        self.check_classifier(self.device)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        images, posteriors = batch["image"], batch["posterior"]
        if self.optimisation.channels_last:  # faster convolutions, the same results
            images = images.contiguous(memory_format=torch.channels_last)
        source_bin = posterior_to_bin(posteriors, self.hparams.n_bins)
        target_bin = torch.randint_like(source_bin, self.hparams.n_bins)
        n_critic = self.optimisation.n_critic
        generator_turn = batch_idx % n_critic == n_critic - 1
        with torch.set_grad_enabled(generator_turn):
            fakes = self.generator.render(images, target_bin, source_bin)
        fake_images, fake_bins = fakes.image.detach(), target_bin
        if self.weights.redraw > 0:  # D judges the redraws too: they are trained as fakes
            fake_images = torch.cat([fake_images, fakes.drawn.detach()])
            fake_bins = torch.cat([target_bin, target_bin])
        self._remember(images, source_bin)
        if self.discriminator_options.history:
            fake_images, fake_bins = self.fake_history.mix(fake_images, fake_bins)
        losses = self._discriminator_step(images, source_bin, fake_images, fake_bins)
        if generator_turn:
            context = batch.get("context")
            losses |= self._generator_step(
                images, posteriors, source_bin, fakes, target_bin, context
            )
            self._update_ema()
        self.log_dict({f"loss/{name}": value for name, value in losses.items()}, prog_bar=False)

    def _remember(self, images: torch.Tensor, source_bin: torch.Tensor) -> None:
        """Keep the batch for `standing_statistics` (`averaging.bn_statistics: edit`)."""
        if self.averaging.bn_statistics == "edit":
            self.recent_batches.add(images, source_bin)
            self._statistics_current = False

    def standing_statistics(self) -> bool:
        """Recompute the EMA generator's batch-norm statistics over the edit pass of the last
        training batches at random target bins (`averaging.bn_statistics: edit`); False when
        there is nothing to recompute (no batch norm, no batch seen yet, or `running`)."""
        if self.averaging.bn_statistics != "edit" or not self.recent_batches:
            return False
        if self._statistics_current:  # no training batch since the last recomputation
            return True
        batches = self.recent_batches.at_random_bins(self.hparams.n_bins)
        done = standing_statistics(self.ema_generator, batches)
        self._statistics_current = done
        if done:  # every process renders with rank 0's
            broadcast_from_rank_zero(self.ema.buffers())
        return done

    def _update_ema(self) -> None:
        self.ema.update_parameters(self.generator)
        # DDP keeps the weights equal (all-reduced gradients) but each process's batch-norm
        # statistics are its own batches': keep rank 0's, as DDP does for the generator's.
        broadcast_from_rank_zero(self.ema.buffers())

    def _discriminator_step(
        self,
        images: torch.Tensor,
        source_bin: torch.Tensor,
        fakes: torch.Tensor,
        target_bin: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """One hinge step of D: real images with their own bin, fakes with their target bin;
        with a patch critic, the hinge over every window of both added (of the fakes, only
        the windows that see an edit with `patch_fakes: edited`), and with its cutmix
        negatives the fake half of the hinge over the windows that see a foreign box."""
        hinge = get_loss("hinge_discriminator")
        real_scores = self._judge(images, source_bin)
        fake_scores = self._judge(fakes, target_bin)
        loss = hinge(real_scores, fake_scores)
        losses = {"discriminator": loss}
        options = self.discriminator_options
        if options.patch_size:
            losses["discriminator_patch"] = self._patch_hinge(images, fakes)
            loss = loss + losses["discriminator_patch"]
        if options.patch_negatives == "cutmix":
            negatives, windows = cutmix_negatives(images, options.patch_reach)
            losses["discriminator_negatives"] = get_loss("hinge_fake_windows")(
                self.discriminator.patch_scores(negatives), windows
            )
            loss = loss + losses["discriminator_negatives"]
        self._step("discriminator", losses, loss)
        return {name: value.detach() for name, value in losses.items()}

    def _patch_hinge(self, images: torch.Tensor, fakes: torch.Tensor) -> torch.Tensor:
        """The patch critic's hinge: every window of the real `images` and of the `fakes`, or
        with `patch_fakes: edited` only the fakes' windows that see an edit (without views,
        so that the windows stay where the edits are)."""
        if self.discriminator_options.patch_fakes != "edited":
            return get_loss("hinge_discriminator")(
                self._patch_judge(images), self._patch_judge(fakes)
            )
        frames = fakes[: len(images)]  # a redraw's drawings, after them, are not edits
        scores = self.discriminator.patch_scores
        windows = edited_windows(images, frames, self.discriminator_options.patch_reach)
        return get_loss("hinge_real")(scores(images)) + get_loss("hinge_fake_windows")(
            scores(frames), windows
        )

    def _judge(self, images: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """D's scores of `images` in `bins`, through the discriminator's views if any."""
        return self.discriminator(self.discriminator_views(images), bins)

    def _patch_judge(self, images: torch.Tensor) -> torch.Tensor:
        """The patch critic's scores of `images`, through the discriminator's views if any."""
        return self.discriminator.patch_scores(self.discriminator_views(images))

    def _patch_term(self) -> tuple[Callable | None, int | None]:
        """What the generator's patch term reads: the patch critic (None without one) and,
        when it scores only the windows that see an edit, its reach (those windows are scored
        without views, as the critic learnt them)."""
        options = self.discriminator_options
        if not options.patch_size:
            return None, None
        if options.patch_fakes == "edited":
            return self.discriminator.patch_scores, options.patch_reach
        return self._patch_judge, None

    def objective(self) -> GeneratorObjective:
        """The generator's loss terms with the current networks and options."""
        return GeneratorObjective(
            self.generator,
            self.classifier,
            self._judge,
            self.weights,
            self.classifier_term,
            self.hparams.n_bins,
            self.hparams.bin_target_kind,
            *self._patch_term(),
            self.classifier_term.drawing_share(self.generator_steps, self._run_length()),
        )

    def _run_length(self) -> int | None:
        """The run's length in generator steps, or None when it is not bounded."""
        max_steps = self.trainer.max_steps
        if max_steps is None or max_steps <= 0:
            return None
        return generator_steps_done(max_steps, self.optimisation.n_critic)

    def _generator_step(
        self,
        images: torch.Tensor,
        posteriors: torch.Tensor,
        source_bin: torch.Tensor,
        rendered: Rendered,
        target_bin: torch.Tensor,
        context: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One step of G on the weighted sum of its loss terms."""
        objective = self.objective()
        losses = objective.losses(images, posteriors, source_bin, rendered, target_bin, context)
        total = objective.total(losses)
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

    def validation_figures(self, queries: torch.Tensor) -> tuple[Strip, dict[str, float]]:
        """The EMA generator's strips of `queries` (N, C, H, W) at every bin and their figures
        (`cfgen.train.explainer_steps.validation_figures`)."""
        hp = self.hparams
        return validation_figures(
            self.ema_generator, self.classifier, queries, hp.n_bins, hp.bin_target_kind
        )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        images = batch["image"]
        strip, figures = self.validation_figures(images)
        if batch_idx == 0:
            shown = slice(0, SAMPLE_SIZE)
            self.validation_sample = (images[shown], strip.select(shown))
        figures |= self.critic_figures(images, strip)
        metrics = {f"val/{name}": value for name, value in figures.items()}
        self.log_dict(metrics, batch_size=len(images), sync_dist=True)

    def critic_figures(self, queries: torch.Tensor, strip: Strip) -> dict[str, float]:
        """Whether the critics still see the far frames of `queries`' strips (`critic_auc`):
        `critic_auc` for D and, with a patch critic, `patch_critic_auc` (an image scored by
        its least real window), both without the discriminator's views."""
        n_bins = self.hparams.n_bins
        figures = {"critic_auc": critic_auc(self.discriminator, queries, strip, n_bins)}
        if self.discriminator_options.patch_size:
            figures["patch_critic_auc"] = critic_auc(
                lambda images, _: self.discriminator.patch_scores(images).flatten(1).amin(1),
                queries,
                strip,
                n_bins,
            )
        return figures
