"""The Progressive Exaggeration explainer at inference time.

    explainer = ProgressiveExaggeration.from_checkpoint("runs/explainer/smile/explainer.pt")
    strip = explainer.exaggerate(x)            # Strip: (S, N, C, H, W) images + posteriors
    x_c = explainer.counterfactual(x, target)  # images in the bin of each target posterior
    relevance = explainer.explain(x)           # |x - x_c| towards the opposite decision

`target` is a posterior of the explained class in [0, 1] (a float or one per query), not a
class index as in captum: 0.9 asks for images the classifier reads as 90 % present; None, the
opposite end of each query's decision. One generator pass per bin for the whole batch; a frame
drawn outside its bin is placed by f (`cfgen.explain.rendering.place_frames`,
`placement_steps`; 0 turns it off). The explainer is tied to the classifier it was trained
for: `from_checkpoint` loads the recorded one, read as recorded, and refuses another unless
`allow_classifier_mismatch=True` (`cfgen.explain.bundle`).
"""

from pathlib import Path

import torch
from torch import nn

from cfgen.bins import posterior_to_bin
from cfgen.errors import CheckpointError, ConfigError, DataError
from cfgen.explain.base import (
    Classifier,
    CounterfactualExplainer,
    Explainer,
    check_target,
    resolve_target,
)
from cfgen.explain.bundle import explained_classifier, load_explainer_bundle
from cfgen.explain.rendering import generator_strip, place_frames, render_bins, takes_own_bins
from cfgen.explain.strip import Strip
from cfgen.io import PathLike
from cfgen.models.blackbox import Activation
from cfgen.models.generator import Generator

# Bisections that place a frame the generator draws outside its bin (`place_frames`); 0 keeps
# every frame as drawn. docs/DESIGN.md, "Placing the frames".
PLACEMENT_STEPS = 3


class ProgressiveExaggeration(CounterfactualExplainer):
    """Counterfactuals from a trained generator I_f(x, c), c a posterior bin of `classifier`.

    Args:
        classifier: the black box f: (N, C, H, W) -> (N,), the posterior of the explained
            class (`cfgen.models.blackbox.BlackBox`); first, as for every explainer.
        generator: maps images (N, C, H, W) and bins (N,) to images (N, C, H, W).
        batch_size: queries per generator pass (bounds memory for large inputs).
        placement_steps: a frame the generator draws outside its target bin is placed by f
            with this many bisections of its conditioning (`place_frames`); 0 keeps every
            frame as drawn (one generator pass per bin).
    """

    def __init__(
        self,
        classifier: Classifier,
        generator: Generator,
        batch_size: int = 256,
        placement_steps: int = PLACEMENT_STEPS,
    ) -> None:
        if _is_generator(classifier) and not _is_generator(generator):
            raise ConfigError(
                "ProgressiveExaggeration takes (classifier, generator), the classifier first as "
                "for every explainer; swap the two arguments"
            )
        super().__init__(classifier)
        if isinstance(placement_steps, bool) or not isinstance(placement_steps, int):
            raise ConfigError(f"placement_steps must be an integer >= 0, got {placement_steps!r}")
        if placement_steps < 0:
            raise ConfigError(
                f"placement_steps must be >= 0 (0: every frame as the generator draws it), "
                f"got {placement_steps}"
            )
        self.generator = generator.eval().requires_grad_(False)
        self.n_bins = generator.n_bins
        self.batch_size = batch_size
        self.placement_steps = placement_steps

    @classmethod
    def from_checkpoint(
        cls,
        path: PathLike,
        classifier: Classifier | str | None = None,
        allow_classifier_mismatch: bool = False,
        batch_size: int = 256,
        placement_steps: int = PLACEMENT_STEPS,
        classifier_output: int | str | None = None,
        classifier_activation: Activation | None = None,
    ) -> "ProgressiveExaggeration":
        """Load `explainer.pt` (or a training `.ckpt`) with the classifier it was trained for.

        Args:
            path: the explainer file.
            classifier: default the recorded file; another file, or a model in memory (which
                an explainer trained on a model in memory needs).
            allow_classifier_mismatch: explain with a classifier other than the recorded one
                (a file of another sha256, another reading, other weights).
            batch_size, placement_steps: as for the constructor.
            classifier_output, classifier_activation: how the classifier's posterior is read
                (`cfgen.models.blackbox.load_blackbox`); default as recorded at training.
        """
        path = Path(path)
        bundle = load_explainer_bundle(path)
        config = bundle["config"]
        black_box = explained_classifier(
            config.get("classifier", {}),
            path,
            classifier,
            classifier_output,
            classifier_activation,
            allow_classifier_mismatch,
        )
        generator = Generator(**config["generator"])
        try:
            generator.load_state_dict(bundle["state_dict"])
        except RuntimeError as error:
            raise CheckpointError(f"{path} does not match its own config: {error}") from error
        return cls(black_box, generator, batch_size, placement_steps)

    def as_drawn(self) -> "ProgressiveExaggeration":
        """The same explainer with every frame as the generator draws it (no placement)."""
        return ProgressiveExaggeration(self.classifier, self.generator, self.batch_size, 0)

    def to(self, device: torch.device | str) -> "ProgressiveExaggeration":
        """Move the generator (and the classifier, when it is a module) to `device`."""
        self.generator.to(device)
        if isinstance(self.classifier, nn.Module):
            self.classifier.to(device)
        return self

    def check_images(self, x: torch.Tensor) -> None:
        """Refuse images of another shape than the generator's, or outside [-1, 1]."""
        size, channels = self.generator.image_size, self.generator.channels
        if x.ndim != 4 or x.shape[1] != channels or tuple(x.shape[2:]) != (size, size):
            raise DataError(
                f"this explainer takes images (N, {channels}, {size}, {size}); got shape "
                f"{tuple(x.shape)}. Resize the images to {size}x{size} with {channels} channels"
            )
        if x.shape[0] == 0:
            raise DataError(
                f"no images to explain: the batch is empty (shape {tuple(x.shape)}); give at "
                "least one image"
            )
        if not bool(torch.isfinite(x).all()):
            raise DataError(f"the images contain NaN or inf (shape {tuple(x.shape)}); clean them")
        low, high = x.min().item(), x.max().item()
        if low < -1.01 or high > 1.01:
            raise DataError(
                f"images must be scaled to [-1, 1]; got values in [{low:.3g}, {high:.3g}]"
            )

    @torch.no_grad()
    def counterfactual(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each query rendered in the bin of its target posterior (placed by f with
        `placement_steps`, `place_frames`): (N, C, H, W), (N,) -> like x."""
        self.check_images(x)
        target = check_target(target, x)
        chunks = zip(x.split(self.batch_size), target.split(self.batch_size), strict=True)
        return torch.cat([self._counterfactual(images, wanted) for images, wanted in chunks])

    def _counterfactual(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.placement_steps > 0:
            frames, _ = place_frames(
                self.generator, self.classifier, x, self.classifier(x),
                posterior_to_bin(target, self.n_bins)[None], self.placement_steps,
            )  # fmt: skip
            return frames[0]
        own = self.classifier(x) if takes_own_bins(self.generator) else None
        return render_bins(self.generator, x, posterior_to_bin(target, self.n_bins), own)

    @torch.no_grad()
    def blend_mask(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Where the generator redraws each query to reach the bin of its target posterior:
        the blend mask (N, 1, H, W) in [0, 1] of a `generator.output: blend` explainer."""
        self.check_images(x)
        if self.generator.output != "blend":
            raise ConfigError(
                f"this explainer's generator has output {self.generator.output!r}; only a "
                "'blend' generator has a mask (train with --model.generator.output blend)"
            )
        target_bin = posterior_to_bin(check_target(target, x), self.n_bins)
        chunks = zip(x.split(self.batch_size), target_bin.split(self.batch_size), strict=True)
        return torch.cat([self.generator.render(images, bins).mask for images, bins in chunks])

    def explain(self, x: torch.Tensor, target: float | torch.Tensor | None = None) -> torch.Tensor:
        self.check_images(x)  # before the classifier reads the queries for a None target
        return super().explain(x, target)

    def exaggerate(
        self, x: torch.Tensor, n_bins: int | None = None, bins: torch.Tensor | None = None
    ) -> Strip:
        """Strip of `x` (N, C, H, W) at every bin (or the given `bins`): (S, N, C, H, W)."""
        self.check_images(x)
        if n_bins is not None and n_bins != self.n_bins:
            raise ValueError(f"this explainer has {self.n_bins} bins, not {n_bins}")
        if bins is None:
            bins = torch.arange(self.n_bins)
        bins = torch.as_tensor(bins).long()
        if bins.numel() and not bool(((bins >= 0) & (bins < self.n_bins)).all()):
            raise ValueError(f"bins must lie in [0, {self.n_bins}); got {bins.tolist()}")
        return generator_strip(
            self.generator, self.classifier, x, bins, self.batch_size, self.placement_steps
        )


def _is_generator(model: object) -> bool:
    """Whether `model` renders bins (a generator), as a classifier does not."""
    return isinstance(model, Generator) or hasattr(model, "n_bins") and callable(model)


class BlendMask(Explainer):
    """The blend mask of a PE explainer as a relevance map: the pixels its generator redraws to
    move each query to the target posterior (default: the opposite decision), repeated over
    the channels, (N, C, H, W) in [0, 1]. Scored like any saliency map (registry `pe_mask`).

    Args:
        classifier: the black box the explainer was trained for.
        checkpoint: the explainer (`explainer.pt` or a training `.ckpt`) of a `blend` generator.
    """

    def __init__(self, classifier: Classifier, checkpoint: str = "explainer.pt") -> None:
        super().__init__(classifier)
        self.explainer = ProgressiveExaggeration.from_checkpoint(checkpoint, classifier)

    def explain(self, x: torch.Tensor, target: float | torch.Tensor | None = None) -> torch.Tensor:
        target = resolve_target(self.classifier, x, target)
        return self.explainer.blend_mask(x, target).expand_as(x)
