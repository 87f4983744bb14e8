"""The explainer's training options in typed groups (`ExplainerModule`'s arguments).

    cfgen explainer fit --model.generator.output blend --model.weights.cycle 10 \
        --model.optimisation.n_critic 1 --model.averaging.decay 0.995

    ExplainerModule("classifier.pt", generator=GeneratorOptions(output="blend"),
                    weights=LossWeights(cycle=10.0, identity=10.0, embedding=0.0))

Every group is a frozen dataclass (`cfgen.options`): `--help` prints each field's text below,
a value outside a `Literal` is refused by the command line and by the constructor, and a
checkpoint stores each group as a dict of its fields. The defaults are the official
hyper-parameters of Progressive Exaggeration (docs/DESIGN.md, "Official defaults");
`configs/explainer/*.yaml` override them per setting, each with its reason. The generator's
own group, `GeneratorOptions`, lives beside the generator (`cfgen.models.generator`): explainer
bundles are rebuilt from it without the training code.

A new option goes into the group it belongs to, with its line under `Args:`; a new group is a
new dataclass here and one argument of `ExplainerModule`.
"""

from dataclasses import dataclass, field
from typing import Literal

from cfgen.errors import ConfigError
from cfgen.models.generator import MASKED, MOVES, PAINTED, GeneratorOptions
from cfgen.options import check_choices

ClassifierLoss = Literal["classifier_cross_entropy", "classifier_kl", "classifier_logit_l1"]
DiscriminatorView = Literal["translation", "cutout", "colour"]


@dataclass(frozen=True)
class DiscriminatorOptions:
    """The discriminator D(x, c): a spectrally-normalised ResNet with a projection head.

    Args:
        width: channels of its first level; they double at each level down to 4x4.
        max_width: the most channels of any level.
        projection: how D scores an image in a bin: ordinal (official: one learned vector
            per threshold between bins, a bin sums those below it) or plain (one learned
            embedding per bin).
        views: random views of every image D judges, real or generated, applied in this
            order (DiffAugment: translation, cutout, colour), so that D cannot learn a small
            training set by heart; empty = none.
        patch_size: 0 (official: none) or the window, in pixels (odd, >= 3), of a second,
            unconditional critic that scores every window of an image at full resolution
            (PatchGAN); the generator's term against it is weighted by weights.patch.
        patch_negatives: what else the patch critic learns is fake: none, or cutmix (real
            images with a small box from another image; the windows that see it, scored
            without views).
        patch_fakes: which windows of a frame the patch critic learns are fake, and its
            generator term scores: all, or edited (only those that see a pixel the frame
            changed; the others are the query's own pixels, real ones; scored without views).
        history: 0 (official: none) or how many earlier frames the discriminator keeps; half
            of each step's fakes are then drawn from them, so that the critics remember what
            the generator drew before (in memory only: a resumed run starts it empty).
    """

    width: int = 32
    max_width: int = 256
    projection: Literal["ordinal", "plain"] = "ordinal"
    views: list[DiscriminatorView] = field(default_factory=list)
    patch_size: int = 0
    patch_negatives: Literal["none", "cutmix"] = "none"
    patch_fakes: Literal["all", "edited"] = "all"
    history: int = 0

    @property
    def patch_reach(self) -> int:
        """How many pixels either side of its centre a patch critic's window reaches."""
        return (self.patch_size - 1) // 2

    def __post_init__(self) -> None:
        check_choices(self, "discriminator")
        for name, plain in (("patch_negatives", "none"), ("patch_fakes", "all")):
            if getattr(self, name) != plain and not self.patch_size:
                raise ConfigError(
                    f"discriminator.{name} trains the patch critic: set "
                    "discriminator.patch_size (e.g. 9) and weights.patch too"
                )
        if self.history < 0:
            raise ConfigError(
                f"discriminator.history must be >= 0 frames (0: none), got {self.history}"
            )
        if self.history and self.patch_fakes == "edited":
            raise ConfigError(
                "discriminator.history draws earlier frames whose queries are gone, and "
                "patch_fakes: edited needs each frame's query: use one or the other"
            )


@dataclass(frozen=True)
class LossWeights:
    """The weight of each term of the generator's loss (0 leaves a term out).

    Args:
        adversarial: the hinge loss against D.
        classifier: classifier consistency: f of the edit reaches the target bin's posterior.
        reconstruction: f of the edit taken back to the query's bin is f of the query.
        cycle: L1 between the query and its edit taken back to the query's own bin.
        embedding: L2 between the encoder's embeddings of the query and of its edit.
        identity: L1 between the query and its render in its own bin (the paper's, off in
            the official code).
        mask: the blend mask's area (blend only).
        mask_tv: the blend mask's total variation, its speckle (blend only).
        mask_binary: 4 m (1 - m), pushing the blend mask to opaque or clear (blend only).
        redraw: the adversarial and classifier terms on what a blend or difference generator
            draws, which D then judges as a fake too; the blend's classifier term then moves
            only the mask.
        context: L1 outside the region the decision may change (needs data.context_region).
        inpaint: L1 between real images and what the inpainter draws where a random box hides
            them, in their own bin (inpaint only): what an edit draws is learned from the data.
        flow_tv: the warp's total variation in pixels, mean |difference| of the flow between
            neighbours (warp and warp_blend only): parts bend smoothly rather than zigzag.
        patch: the hinge loss against the patch critic, mean over every window (needs
            discriminator.patch_size).
    """

    adversarial: float = 1.0
    classifier: float = 1.0
    reconstruction: float = 1.0
    cycle: float = 100.0
    embedding: float = 100.0
    identity: float = 0.0
    mask: float = 0.0
    mask_tv: float = 0.0
    mask_binary: float = 0.0
    redraw: float = 0.0
    context: float = 0.0
    inpaint: float = 0.0
    flow_tv: float = 0.0
    patch: float = 0.0

    def check_discriminator(self, discriminator: DiscriminatorOptions) -> None:
        """Refuse a patch critic without its term, or the term without the critic."""
        if (self.patch > 0) != (discriminator.patch_size > 0):
            raise ConfigError(
                "weights.patch and discriminator.patch_size go together: the patch critic is "
                "trained for the generator's term against it; set both (e.g. "
                "discriminator.patch_size: 9 and weights.patch: 1) or neither"
            )

    def check_generator(self, generator: GeneratorOptions) -> None:
        """Refuse weights of terms that the generator's output does not have."""
        masked = generator.output in MASKED
        if max(self.mask, self.mask_tv, self.mask_binary) > 0 and not masked:
            raise ConfigError(
                "weights.mask / weights.mask_tv / weights.mask_binary act on the generator's "
                "mask: set generator.output: blend, warp_blend or inpaint"
            )
        if self.flow_tv > 0 and generator.output not in MOVES:
            raise ConfigError(
                "weights.flow_tv smooths a warp's flow: set generator.output: warp or warp_blend"
            )
        if self.inpaint > 0 and generator.output != "inpaint":
            raise ConfigError("weights.inpaint trains an inpainter: set generator.output: inpaint")
        if generator.output == "inpaint" and self.embedding > 0:
            raise ConfigError(
                "the inpainter has no embedding of the whole query to compare: set "
                "weights.embedding: 0 with generator.output: inpaint"
            )
        if self.redraw > 0 and generator.output not in ("blend", "difference"):
            raise ConfigError(
                "weights.redraw trains the redraw of a blend or difference generator: set "
                "generator.output: blend or difference"
            )


@dataclass(frozen=True)
class ClassifierTerm:
    """How the classifier-consistency terms read f.

    Args:
        loss: between f's logit and the target posterior: classifier_cross_entropy
            (official), classifier_kl (the same gradients, zero at a match) or
            classifier_logit_l1 (L1 on logits).
        view_shift: the classifier term reads a random view of the edit, each image shifted
            by up to this many pixels (0 = no shift).
        view_blur: the view is blurred with a Gaussian of sigma drawn in [0, view_blur]
            pixels (0 = no blur).
        view_noise: Gaussian noise of this standard deviation is added to the view (0 = none).
        drawing: whether the term trains what a blend or warp_blend draws: trained (the
            official: every pixel of the frame) or fixed (the term moves only the mask and the
            warp's flow, where to draw and how to move the query; what is drawn is learned
            from D and the keeping terms alone, so it cannot become a pattern only f reads).
        drawing_gradient: with the drawing fixed, the share of the term's gradient that still
            reaches what is drawn (0 = none; in [0, 1)): f nudges which way the drawing goes,
            D and the keeping terms shape it.
        drawing_warmup: with the drawing fixed, the share of the run, from its start, during
            which the term still trains the drawing in full (f shows which way to draw, then D
            and the keeping terms alone shape it; 0 = none; needs --generator_steps).
    """

    loss: ClassifierLoss = "classifier_cross_entropy"
    view_shift: float = 0.0
    view_blur: float = 0.0
    view_noise: float = 0.0
    drawing: Literal["trained", "fixed"] = "trained"
    drawing_gradient: float = 0.0
    drawing_warmup: float = 0.0

    def __post_init__(self) -> None:
        check_choices(self, "classifier_term")
        if not 0.0 <= self.drawing_warmup < 1.0:
            raise ConfigError(
                f"classifier_term.drawing_warmup must be in [0, 1), got {self.drawing_warmup}"
            )
        if self.drawing_warmup > 0 and self.drawing != "fixed":
            raise ConfigError(
                "classifier_term.drawing_warmup ends the training of a fixed drawing: set "
                "classifier_term.drawing: fixed, or leave drawing_warmup at 0"
            )
        if not 0.0 <= self.drawing_gradient < 1.0:
            raise ConfigError(
                f"classifier_term.drawing_gradient must be in [0, 1), got {self.drawing_gradient}"
                ": 1 is classifier_term.drawing: trained"
            )
        if self.drawing_gradient > 0 and self.drawing != "fixed":
            raise ConfigError(
                "classifier_term.drawing_gradient scales the gradient of a fixed drawing: set "
                "classifier_term.drawing: fixed, or leave drawing_gradient at 0"
            )

    def drawing_share(self, done: int, total: int | None) -> float:
        """The share of the term's gradient that reaches what is drawn after `done` of `total`
        generator steps (None: the run's length is not known): 1 for a trained drawing and
        during a fixed drawing's warm-up, `drawing_gradient` after it."""
        if self.drawing == "trained":
            return 1.0
        if self.drawing_warmup > 0:
            if total is None:
                raise ConfigError(
                    "classifier_term.drawing_warmup needs the run's length: give "
                    "--generator_steps (or --trainer.max_steps)"
                )
            if done < self.drawing_warmup * total:
                return 1.0
        return self.drawing_gradient

    def check_generator(self, generator: GeneratorOptions) -> None:
        """Refuse a fixed drawing for a generator that draws through no mask."""
        if self.drawing == "fixed" and generator.output not in PAINTED:
            raise ConfigError(
                "classifier_term.drawing: fixed keeps the classifier term off what a blend "
                "draws: set generator.output: blend or warp_blend (the inpainter's drawing is "
                "never trained by it)"
            )


@dataclass(frozen=True)
class Optimisation:
    """Both networks' optimisers (Adam) and their steps.

    Args:
        n_critic: discriminator steps per generator step.
        lr_generator: the generator's learning rate.
        lr_discriminator: the discriminator's learning rate.
        beta1: Adam's first beta, both optimisers.
        beta2: Adam's second beta, both optimisers.
        lr_decay: the share of the run, at its end, over which both learning rates fall
            linearly to 0 (0 = constant, the official; needs --generator_steps).
        channels_last: feed the networks channels-last images (the same results; no speed-up
            measured on a CPU).
    """

    n_critic: int = 5
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.9
    lr_decay: float = 0.0
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.n_critic < 1:
            raise ConfigError(f"optimisation.n_critic must be >= 1, got {self.n_critic}")
        # Adam would refuse these only when training starts, with a traceback.
        for network in ("generator", "discriminator"):
            lr = getattr(self, f"lr_{network}")
            if not lr > 0:
                raise ConfigError(
                    f"optimisation.lr_{network} must be > 0 (the {network}'s learning rate), "
                    f"got {lr}"
                )
        for name, moment in (("beta1", "gradient's mean"), ("beta2", "squared gradient's mean")):
            beta = getattr(self, name)
            if not 0.0 <= beta < 1.0:
                raise ConfigError(
                    f"optimisation.{name} must be in [0, 1) (the decay of Adam's running "
                    f"{moment}), got {beta}"
                )
        if not 0.0 <= self.lr_decay <= 1.0:
            raise ConfigError(
                f"optimisation.lr_decay is the share of the run over which the learning rates "
                f"fall to 0: give a value in [0, 1], got {self.lr_decay}"
            )


@dataclass(frozen=True)
class Averaging:
    """The averaged (EMA) generator that validation and the exported explainer use.

    Args:
        decay: the decay per generator step of its exponential moving average of the
            generator's weights.
        bn_statistics: where its batch-norm statistics come from: edit (recomputed over the
            edit pass of the last training images before every validation, checkpoint and
            export) or running (the running averages training left, the official).
        standing_images: how many of the last training images the edit statistics are
            recomputed from.
    """

    decay: float = 0.999
    bn_statistics: Literal["edit", "running"] = "edit"
    standing_images: int = 1024

    def __post_init__(self) -> None:
        check_choices(self, "averaging")
        if self.standing_images < 1:
            raise ConfigError(
                f"averaging.standing_images must be >= 1 (training images the batch-norm "
                f"statistics are recomputed from), got {self.standing_images}"
            )
