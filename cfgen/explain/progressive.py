"""The Progressive Exaggeration explainer at inference time (METHOD.md §1).

    explainer = ProgressiveExaggeration.from_checkpoint("runs/explainer/smile/explainer.pt")
    strip = explainer.exaggerate(x)            # Strip: (S, N, C, H, W) images + posteriors
    x_c = explainer.counterfactual(x, target)  # images in the bin of each target posterior
    relevance = explainer.explain(x)           # |x - x_c| towards the opposite decision

One generator pass per bin for the whole batch: a strip of S steps costs S forward passes, where
optimisation-based counterfactuals need hundreds of steps per image. The explainer is tied to the
classifier it was trained for: `from_checkpoint` loads the recorded one by default and refuses
another (by sha256) unless `allow_classifier_mismatch=True`.
"""

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cfgen.bins import posterior_to_bin
from cfgen.errors import CheckpointError, ConfigError, DataError
from cfgen.explain.base import Classifier, CounterfactualExplainer, Explainer, resolve_target
from cfgen.explain.strip import Strip
from cfgen.io import PathLike, load_bundle, safe_torch_load
from cfgen.models.blackbox import classifier_fingerprint, load_blackbox
from cfgen.models.generator import Generator

EXPLAINER_KIND = "explainer"
EMA_PREFIXES = ("ema.module.", "ema_generator.")


@torch.no_grad()
def generator_strip(
    generator: nn.Module,
    classifier: Callable[[torch.Tensor], torch.Tensor],
    queries: torch.Tensor,
    bins: torch.Tensor | int,
    batch_size: int = 256,
) -> Strip:
    """Strip of `queries` (N, C, H, W) at `bins` (S,) long (or all of range(bins) for an int).

    One batched generator pass per bin and chunk of `batch_size` queries; the generator is
    used as it is (call `.eval()` first for inference).
    """
    bins = torch.arange(bins) if isinstance(bins, int) else torch.as_tensor(bins).long()
    # Convolutions run faster on channels-last inputs (CPU and GPU); results are the same.
    queries = queries.contiguous(memory_format=torch.channels_last)
    query_posteriors = torch.cat([classifier(chunk) for chunk in queries.split(batch_size)])
    pairs = list(zip(queries.split(batch_size), query_posteriors.split(batch_size), strict=True))
    images, posteriors = [], []
    for target in bins.tolist():
        chunks = [
            _generate(generator, chunk, torch.full((len(chunk),), target, device=chunk.device), own)
            for chunk, own in pairs
        ]
        images.append(torch.cat(chunks))
        posteriors.append(torch.cat([classifier(chunk) for chunk in chunks]))
    return Strip(torch.stack(images), bins, torch.stack(posteriors), query_posteriors)


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
    raise CheckpointError(
        f"{source} is not the classifier {path} was trained to explain (sha256 differs from the "
        f"recorded {str(recorded.get('sha256'))[:12]}…, trained for {recorded.get('path')}); "
        "use that classifier, or pass allow_classifier_mismatch=True to explain another anyway"
    )


class ProgressiveExaggeration(CounterfactualExplainer):
    """Counterfactuals from a trained generator I_f(x, c), c a posterior bin of `classifier`.

    Args:
        generator: maps images (N, C, H, W) and bins (N,) to images (N, C, H, W).
        classifier: the black box f: (N, C, H, W) -> (N,).
        batch_size: queries per generator pass (bounds memory for large inputs).
    """

    def __init__(self, generator: Generator, classifier: Classifier, batch_size: int = 256) -> None:
        super().__init__(classifier)
        self.generator = generator.eval().requires_grad_(False)
        self.n_bins = generator.n_bins
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(
        cls,
        path: PathLike,
        classifier: Classifier | str | None = None,
        allow_classifier_mismatch: bool = False,
        batch_size: int = 256,
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
        return cls(generator, classifier, batch_size)

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
        """Each query rendered in the bin of its target posterior: (N, C, H, W), (N,) -> like x."""
        self.check_images(x)
        target_bin = posterior_to_bin(torch.as_tensor(target, device=x.device), self.n_bins)
        target_bin = target_bin.expand(x.shape[0])
        chunks = zip(x.split(self.batch_size), target_bin.split(self.batch_size), strict=True)
        own = _takes_own_bins(self.generator)  # f(x) only for a generator that reads it
        return torch.cat(
            [
                _generate(self.generator, images, bins, self.classifier(images) if own else None)
                for images, bins in chunks
            ]
        )

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
        return generator_strip(self.generator, self.classifier, x, bins, self.batch_size)


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
