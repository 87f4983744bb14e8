"""The Progressive Exaggeration explainer at inference time (METHOD.md §1).

    explainer = ProgressiveExaggeration.from_checkpoint("runs/explainer/smile/explainer.pt")
    strip = explainer.exaggerate(x)            # Strip: (S, N, C, H, W) images + posteriors
    x_c = explainer.counterfactual(x, target)  # images in the bin of each target posterior
    relevance = explainer.explain(x)           # |x - x_c| towards the opposite decision

One generator pass per bin for the whole batch: a strip of S steps costs S forward passes, where
optimisation-based counterfactuals need hundreds of steps per image. A frame the generator draws
outside its bin (f answers the same edit by a different amount from query to query) is then
placed by f: a few bisections of the conditioning between two bins, on those frames only
(`place_frames`, `placement_steps`; 0 turns it off). The explainer is tied to the
classifier it was trained for: `from_checkpoint` loads the recorded one by default and refuses
another (by sha256) unless `allow_classifier_mismatch=True`.
"""

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cfgen.bins import bin_centre, posterior_to_bin
from cfgen.errors import CheckpointError, ClassifierMismatchError, ConfigError, DataError
from cfgen.explain.base import Classifier, CounterfactualExplainer, Explainer, resolve_target
from cfgen.explain.strip import Strip
from cfgen.io import PathLike, load_bundle, safe_torch_load
from cfgen.models.blackbox import classifier_fingerprint, load_blackbox
from cfgen.models.generator import Generator

EXPLAINER_KIND = "explainer"
# Bisections that place a frame the generator draws outside its bin (`place_frames`); 0 keeps
# every frame as drawn. benchmarks/README.md "Placing the frames" measures 0, 2 and 3.
PLACEMENT_STEPS = 3
EMA_PREFIXES = ("ema.module.", "ema_generator.")


@torch.no_grad()
def generator_strip(
    generator: nn.Module,
    classifier: Callable[[torch.Tensor], torch.Tensor],
    queries: torch.Tensor,
    bins: torch.Tensor | int,
    batch_size: int = 256,
    placement_steps: int = 0,
) -> Strip:
    """Strip of `queries` (N, C, H, W) at `bins` (S,) long (or all of range(bins) for an int).

    One batched generator pass per bin and chunk of `batch_size` queries; the generator is
    used as it is (call `.eval()` first for inference). With `placement_steps` > 0 each frame
    is placed by f (`place_frames`): about (1 + placement_steps) passes per bin.
    """
    bins = torch.arange(bins) if isinstance(bins, int) else torch.as_tensor(bins).long()
    # Convolutions run faster on channels-last inputs (CPU and GPU); results are the same.
    queries = queries.contiguous(memory_format=torch.channels_last)
    query_posteriors = torch.cat([classifier(chunk) for chunk in queries.split(batch_size)])
    pairs = list(zip(queries.split(batch_size), query_posteriors.split(batch_size), strict=True))
    if placement_steps > 0:
        bins = bins.to(queries.device)
        placed = [
            place_frames(
                generator,
                classifier,
                chunk,
                own,
                bins[:, None].expand(-1, len(chunk)),
                placement_steps,
            )  # fmt: skip
            for chunk, own in pairs
        ]
        images = torch.cat([frames for frames, _ in placed], dim=1)
        posteriors = torch.cat([reached for _, reached in placed], dim=1)
        return Strip(images, bins, posteriors, query_posteriors)
    images, posteriors = [], []
    for target in bins.tolist():
        chunks = [
            _generate(generator, chunk, torch.full((len(chunk),), target, device=chunk.device), own)
            for chunk, own in pairs
        ]
        images.append(torch.cat(chunks))
        posteriors.append(torch.cat([classifier(chunk) for chunk in chunks]))
    return Strip(torch.stack(images), bins, torch.stack(posteriors), query_posteriors)


@torch.no_grad()
def place_frames(
    generator: nn.Module,
    classifier: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    own: torch.Tensor,
    bins: torch.Tensor,
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames of `x` (N, C, H, W) in target bins `bins` (S, N) long, each placed by f:
    images (S, N, C, H, W) and their posteriors (S, N).

    Each query is rendered at every whole bin (one pass per bin). A frame whose f already
    lies in its target bin is kept as the generator drew it. Any other is searched for on
    the generator's conditioning read as a dial (a fractional bin interpolates the
    conditional-norm parameters of its two neighbours): the bin centre is bracketed on the
    grid of whole bins (on its running maximum, so a dip does not end the search early) and
    `steps` bisections of the bracket follow, each one generator and one classifier pass for
    all queries; of everything rendered, the frame whose f is nearest the centre is kept. f is
    read as a black box (outputs only); a query whose f never reaches a bin keeps the frame
    nearest it (the end of the strip).
    """
    n_bins = generator.n_bins
    rendered = [
        _generate(generator, x, torch.full((len(x),), level, device=x.device), own)
        for level in range(n_bins)
    ]
    images = torch.stack(rendered)  # (L, N, C, H, W)
    posteriors = torch.stack([classifier(image) for image in rendered])  # (L, N)
    ceiling = posteriors.cummax(dim=0).values
    columns = torch.arange(len(x), device=x.device)
    frames, reached = [], []
    for target_bins in bins:
        centre = bin_centre(target_bins, n_bins)
        drawn = posteriors[target_bins, columns]
        placed = posterior_to_bin(drawn, n_bins) == target_bins
        nearest = torch.where(placed, target_bins, (posteriors - centre).abs().argmin(dim=0))
        best_image, best_posterior = images[nearest, columns], posteriors[nearest, columns]
        low = ((ceiling <= centre).sum(dim=0) - 1).clamp(0, n_bins - 2).float()
        high = low + 1
        searched = ~placed
        for _ in range(steps if bool(searched.any()) else 0):
            middle = (low + high) / 2
            image = _generate(generator, x[searched], middle[searched], _rows(own, searched))
            posterior = classifier(image)
            rows = searched.nonzero().squeeze(1)
            closer = (posterior - centre[rows]).abs() < (best_posterior[rows] - centre[rows]).abs()
            best_image[rows[closer]] = image[closer]
            best_posterior[rows[closer]] = posterior[closer]
            below = torch.zeros_like(searched)
            below[rows] = posterior <= centre[rows]
            low = torch.where(searched & below, middle, low)
            high = torch.where(searched & ~below, middle, high)
        frames.append(best_image)
        reached.append(best_posterior)
    return torch.stack(frames), torch.stack(reached)


def _rows(values: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor | None:
    return None if values is None else values[keep]


def _takes_own_bins(generator: nn.Module) -> bool:
    """Whether the generator renders from the queries' own bins too (the `difference` output)."""
    return getattr(generator, "output", None) == "difference"


def _generate(
    generator: nn.Module, x: torch.Tensor, bins: torch.Tensor, own: torch.Tensor | None
) -> torch.Tensor:
    """The generator's images of `x` in `bins`; `own`, f(x), gives a generator that
    `_takes_own_bins` the queries' own bins (None for any other)."""
    if not _takes_own_bins(generator):
        return generator(x, bins)
    return generator(x, bins, posterior_to_bin(own, generator.n_bins))


def _bundle_from_lightning(checkpoint: dict, path: Path) -> dict:
    """The explainer bundle held in a training checkpoint (`last.ckpt`): its EMA generator."""
    hparams = checkpoint.get("hyper_parameters", {})
    weights = checkpoint.get("state_dict", {})
    # `ema.module.` since the EMA is an `AveragedModel`; `ema_generator.` in earlier checkpoints.
    prefix = next((p for p in EMA_PREFIXES if any(k.startswith(p) for k in weights)), None)
    if prefix is None or "cfgen_classifier" not in checkpoint:
        raise CheckpointError(f"{path} is a Lightning checkpoint but not of a cfgen explainer")
    state = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    generator = {
        "image_size": hparams["image_size"],
        "channels": hparams["channels"],
        "n_bins": hparams["n_bins"],
        "base_width": hparams["generator_width"],
        "max_width": hparams["generator_max_width"],
        # Options added after the first release: their defaults are the official generator.
        "skips": hparams.get("generator_skips", False),
        "output": hparams.get("generator_output", "image"),
        "edit_downsample": hparams.get("edit_downsample", 1),
        "mask_downsample": hparams.get("mask_downsample", 1),
    }
    config = {key: hparams[key] for key in ("n_bins", "image_size", "channels", "bin_target_kind")}
    config |= {"generator": generator, "classifier": checkpoint.get("cfgen_classifier", {})}
    return {"config": config, "state_dict": state}


def load_explainer_bundle(path: PathLike) -> dict:
    """An explainer bundle (`explainer.pt`) or the EMA generator of a training `.ckpt`."""
    path = Path(path)
    if path.suffix == ".ckpt":
        return _bundle_from_lightning(safe_torch_load(path), path)
    return load_bundle(path, EXPLAINER_KIND)


def _recorded_classifier(config: dict, path: Path, allow_mismatch: bool) -> Classifier:
    """Load the classifier the explainer was trained for, refusing a changed file."""
    recorded = config.get("classifier", {})
    source = recorded.get("path")
    if not source or not Path(source).is_file():
        raise CheckpointError(
            f"the classifier explained by {path} ({source}) is not found; pass the classifier "
            "explicitly (classifier=..., CLI: --classifier PATH)"
        )
    _check_same_classifier(recorded, source, path, allow_mismatch)
    return load_blackbox(source)


def _check_same_classifier(recorded: dict, source: str, path: Path, allow_mismatch: bool) -> None:
    # classifier_fingerprint, not file_sha256: `source` may be `package.module:function`.
    if allow_mismatch or classifier_fingerprint(source) == recorded.get("sha256"):
        return
    raise ClassifierMismatchError(
        f"{source} is not the classifier {path} was trained to explain (sha256 differs from the "
        f"recorded {str(recorded.get('sha256'))[:12]}…, trained for {recorded.get('path')})"
    )


class ProgressiveExaggeration(CounterfactualExplainer):
    """Counterfactuals from a trained generator I_f(x, c), c a posterior bin of `classifier`.

    Args:
        generator: maps images (N, C, H, W) and bins (N,) to images (N, C, H, W).
        classifier: the black box f: (N, C, H, W) -> (N,).
        batch_size: queries per generator pass (bounds memory for large inputs).
        placement_steps: a frame the generator draws outside its target bin is placed by f
            with this many bisections of its conditioning (`place_frames`); 0 keeps every
            frame as drawn (one generator pass per bin).
    """

    def __init__(
        self,
        generator: Generator,
        classifier: Classifier,
        batch_size: int = 256,
        placement_steps: int = PLACEMENT_STEPS,
    ) -> None:
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
    ) -> "ProgressiveExaggeration":
        """Load `explainer.pt` (or a training `.ckpt`); the classifier defaults to the recorded one.

        A classifier given as a file path is checked against the recorded sha256; a module is
        taken as given.
        """
        path = Path(path)
        bundle = load_explainer_bundle(path)
        config = bundle["config"]
        if classifier is None:
            classifier = _recorded_classifier(config, path, allow_classifier_mismatch)
        elif isinstance(classifier, str | Path):
            _check_same_classifier(
                config.get("classifier", {}), str(classifier), path, allow_classifier_mismatch
            )
            classifier = load_blackbox(str(classifier))
        generator = Generator(**config["generator"])
        try:
            generator.load_state_dict(bundle["state_dict"])
        except RuntimeError as error:
            raise CheckpointError(f"{path} does not match its own config: {error}") from error
        return cls(generator, classifier, batch_size, placement_steps)

    def as_drawn(self) -> "ProgressiveExaggeration":
        """The same explainer with every frame as the generator draws it (no placement)."""
        return ProgressiveExaggeration(self.generator, self.classifier, self.batch_size, 0)

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
        target = torch.as_tensor(target, device=x.device).float().expand(x.shape[0])
        chunks = zip(x.split(self.batch_size), target.split(self.batch_size), strict=True)
        return torch.cat([self._counterfactual(images, wanted) for images, wanted in chunks])

    def _counterfactual(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.placement_steps > 0:
            frames, _ = place_frames(
                self.generator, self.classifier, x, self.classifier(x),
                posterior_to_bin(target, self.n_bins)[None], self.placement_steps,
            )  # fmt: skip
            return frames[0]
        own = self.classifier(x) if _takes_own_bins(self.generator) else None
        return _generate(self.generator, x, posterior_to_bin(target, self.n_bins), own)

    @torch.no_grad()
    def blend_mask(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Where the generator redraws each query to reach the bin of its target posterior:
        the blend mask (N, 1, H, W) in [0, 1] of a `generator_output: blend` explainer."""
        self.check_images(x)
        if self.generator.output != "blend":
            raise ConfigError(
                f"this explainer's generator has output {self.generator.output!r}; only a "
                "'blend' generator has a mask (train with --model.generator_output blend)"
            )
        target_bin = posterior_to_bin(torch.as_tensor(target, device=x.device), self.n_bins)
        target_bin = target_bin.expand(x.shape[0])
        chunks = zip(x.split(self.batch_size), target_bin.split(self.batch_size), strict=True)
        return torch.cat([self.generator.render(images, bins).mask for images, bins in chunks])

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
