"""The generator's objective: every term of its loss for one batch, and their weighted sum.

The official terms (docs/DESIGN.md, "Official defaults") for a query x of bin c_x and a target
bin c: adversarial (hinge, D's score of I(x, c) in c), classifier consistency (f(I(x, c)) at
the target posterior of c), reconstruction consistency (f of the edit taken back,
I(I(x, c), c_x), at f(x)), cycle (L1 between x and it), embedding (L2 between the encoder's
embeddings of x and of I(x, c), both under c_x); then the options' terms: identity
(L1 between x and I(x, c_x)), context (L1 outside the region the decision may change), the
blend mask's penalties, the redraw's own adversarial and classifier terms and the hinge against
the patch critic (`weights.patch`, every window of I(x, c)). A term whose
weight is 0 is still computed when it is cheap (it is logged), never when it costs a pass.

Blend (`generator.output: blend`): `weights.mask`, `mask_tv` and `mask_binary` penalise the
mask's area, speckle and transparency; `weights.redraw` trains what is drawn as the official
generator's image (adversarial and classifier terms on the redraw, D judging redraws as fakes
too) and lets the blend's classifier term move only the mask. Difference
(`generator.output: difference`): the image x + G(x, c) - G(x, c_x) gets every official term
(the cycle and reconstruction read its redraw G(x', c_x)); the identity term reads the redraw
G(x, c_x) the render made; `weights.redraw` adds the official adversarial and classifier terms
on the redraw G(x, c) itself.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cfgen.bins import bin_target
from cfgen.errors import ConfigError
from cfgen.explain.score import explained_logit
from cfgen.losses import get_loss
from cfgen.models.generator import Generator, Rendered
from cfgen.train.augment import RandomViews, edited_windows, inpainting_masks
from cfgen.train.explainer_options import ClassifierTerm, LossWeights


@dataclass
class GeneratorObjective:
    """The generator's loss terms against the frozen classifier and the discriminator.

    `judge(images, bins)` is D's score, through its views; `patch_judge(images)` the patch
    critic's scores of every window, or None without one, and `patch_reach` None when its term
    scores every window, else the critic's reach in pixels: its term then scores only the
    windows that see an edit (`discriminator.patch_fakes: edited`); `drawing_share` the share of the
    classifier term's gradient that reaches a fixed drawing at this step
    (`ClassifierTerm.drawing_share`); `views` the random views the classifier term reads.
    """

    generator: Generator
    classifier: Callable[[torch.Tensor], torch.Tensor]
    judge: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    weights: LossWeights
    term: ClassifierTerm
    n_bins: int
    bin_target_kind: str = "centre"
    patch_judge: Callable[[torch.Tensor], torch.Tensor] | None = None
    patch_reach: int | None = None
    drawing_share: float = 0.0

    def __post_init__(self) -> None:
        self.classifier_loss = get_loss(self.term.loss)
        self.views = RandomViews(self.term.view_shift, self.term.view_blur, self.term.view_noise)

    def _consistency(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.classifier_loss(explained_logit(self.classifier, images), target)

    def losses(
        self,
        images: torch.Tensor,
        posteriors: torch.Tensor,
        source_bin: torch.Tensor,
        rendered: Rendered,
        target_bin: torch.Tensor,
        context: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Every term, by name, for queries `images` (N, C, H, W) with f(x) `posteriors` (N,)
        in bins `source_bin` (N,), rendered (`rendered`) in `target_bin` (N,); `context`
        (N, 1, H, W): where the decision may change (the context term)."""
        fakes = rendered.image
        inpainter = self.generator.output == "inpaint"
        fake_features = None if inpainter else self.generator.encode(fakes, source_bin)
        target_posterior = bin_target(target_bin, self.n_bins, self.bin_target_kind)
        classified = fakes
        fixed = inpainter or self.weights.redraw > 0 or self.term.drawing == "fixed"
        if fixed and rendered.mask is not None:
            # An inpainter's drawing is learned from real images (the inpaint term) and D; a
            # redraw is trained as the official generator's image is; a fixed drawing from D
            # and the keeping terms. Each time the classifier term moves only the mask (where
            # to redraw) and a warp's flow, not what is drawn, so the drawing cannot become a
            # pattern that only f reads. The frame itself, m G + (1 - m) kept, with the
            # drawing's gradient removed (all but `drawing_share` of it, for a fixed drawing):
            # kept (the query, or its warp) is not computed again.
            mask, drawn = rendered.mask, rendered.drawn
            removed = 1.0 if inpainter or self.weights.redraw > 0 else 1 - self.drawing_share
            classified = fakes - removed * mask * (drawn - drawn.detach())
        viewed = self.views(classified) if self.views.active else classified
        losses = {
            "adversarial": get_loss("hinge_generator")(self.judge(fakes, target_bin)),
            "classifier": self._consistency(viewed, target_posterior),
        }
        if self.patch_judge is not None and self.patch_reach is not None:
            windows = edited_windows(images, fakes.detach(), self.patch_reach)
            losses["patch"] = get_loss("hinge_generator_windows")(self.patch_judge(fakes), windows)
        elif self.patch_judge is not None:
            losses["patch"] = get_loss("hinge_generator")(self.patch_judge(fakes))
        if self.weights.cycle > 0 or self.weights.reconstruction > 0:  # the cycle costs a pass
            if inpainter:
                cycled = self.generator.render(fakes, source_bin).image
            else:
                cycled = self.generator.decode(fake_features, fakes, source_bin).image
            losses["reconstruction"] = self._consistency(cycled, posteriors)
            losses["cycle"] = get_loss("cycle_l1")(images, cycled)
        losses |= self._kept(images, source_bin, rendered, fake_features, context)
        if self.weights.redraw > 0:
            drawn = rendered.drawn
            losses["redraw"] = get_loss("hinge_generator")(
                self.judge(drawn, target_bin)
            ) + self._consistency(drawn, target_posterior)
        if inpainter:
            hidden = inpainting_masks(images, rendered.mask.detach())
            drawn = self.generator.inpaint(images, hidden, source_bin)
            losses["inpaint"] = get_loss("inpaint_l1")(images, drawn, hidden)
        if rendered.mask is not None:
            losses["mask"] = get_loss("mask_area")(rendered.mask)
            losses["mask_tv"] = get_loss("total_variation")(rendered.mask)
            losses["mask_binary"] = get_loss("mask_binary")(rendered.mask)
        if rendered.flow is not None:
            losses["flow_tv"] = get_loss("total_variation")(rendered.flow)
        return losses

    def _kept(
        self,
        images: torch.Tensor,
        source_bin: torch.Tensor,
        rendered: Rendered,
        fake_features: list[torch.Tensor],
        context: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """The terms that keep the query: embedding, identity and context."""
        weights, losses = self.weights, {}
        # A difference generator's render already holds the redraw in the query's own bin
        # (`reference`): its identity term needs no encoder pass of its own.
        same = rendered.reference
        if weights.identity > 0 and same is None and self.generator.output == "inpaint":
            same = self.generator.render(images, source_bin).image
        if weights.embedding > 0 or (weights.identity > 0 and same is None):
            features = self.generator.encode(images, source_bin)
            losses["embedding"] = get_loss("embedding_l2")(features[-1], fake_features[-1])
            if weights.identity > 0 and same is None:
                same = self.generator.decode(features, images, source_bin).image
        if weights.identity > 0:
            losses["identity"] = get_loss("identity_l1")(images, same)
        if weights.context > 0:
            if context is None:
                raise ConfigError(
                    "weights.context needs region masks in the batches: set data.context_region"
                )
            losses["context"] = get_loss("context_l1")(images, rendered.image, context)
        return losses

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of `losses` (each name is a field of `LossWeights`)."""
        return sum(getattr(self.weights, name) * value for name, value in losses.items())
