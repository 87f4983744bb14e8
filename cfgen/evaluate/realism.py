"""Realism of generated images: FID and KID in a feature space (METHOD.md §2).

Both are torchmetrics' implementations fed by a pluggable feature extractor, an `nn.Module`
mapping images (N, C, H, W) in [-1, 1] to features (N, D), with an int `num_features` = D.

- Default: the *domain* encoder, i.e. the trunk of the factor oracle that cfgen trains itself on
  the synthetic world (`FactorOracle.trunk`, `cfgen oracle fit`). It works offline and at any
  image size, and its features encode exactly the generative factors a counterfactual must keep
  or change. Its FID values are comparable between methods and runs that use the same oracle
  file, not with published Inception FIDs.
- Standard: torchmetrics' FID Inception v3 (the TF-ported weights of torch-fidelity), built only
  from a local weights file; cfgen never downloads it (`inception_features`).

Images are passed through in batches and only feature statistics are kept, so memory stays
bounded by `batch_size` images whatever the number of images.

PE's protocol (Singla et al., Table 1) reports FID for "Present" (f > 0.9), "Absent" (f < 0.1) and
"Overall": real images are grouped by their classifier posterior, generated ones by the posterior
they were asked to reach (the centre of their target bin). `realism_by_bin` also gives one value
per bin.
"""

import copy
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from cfgen.bins import bin_centre, posterior_to_bin
from cfgen.errors import CfgenError, WeightsMissingError
from cfgen.explain.strip import Strip

INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS
)


class FeatureExtractor(nn.Module):
    """A frozen encoder (N, C, H, W) -> (N, D) as torchmetrics expects it (`num_features` = D)."""

    def __init__(self, encoder: nn.Module, num_features: int) -> None:
        super().__init__()
        self.encoder = encoder.requires_grad_(False)
        self.num_features = num_features
        self.eval()

    def train(self, mode: bool = True) -> "FeatureExtractor":
        # The encoder's batch-norm statistics must never move while features are extracted.
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Follow the encoder's dtype, should a caller cast the metric (`set_dtype`) and with it
        # this module.
        parameter = next(self.encoder.parameters(), None)
        if parameter is not None:
            images = images.to(parameter.dtype)
        # float64 features: FID's covariance square root loses digits in float32.
        return self.encoder(images).flatten(1).double()


def domain_features(oracle: nn.Module) -> FeatureExtractor:
    """The default extractor: a copy of the trunk of a `cfgen.models.oracle.FactorOracle` (a
    copy, so that whatever the metrics do to their extractor, moving it to a device or casting
    it, leaves the oracle itself alone)."""
    return FeatureExtractor(copy.deepcopy(oracle.trunk), oracle.num_features)


class _InceptionOnSignedImages(nn.Module):
    """torchmetrics' Inception expects uint8 images in [0, 255]; cfgen images are in [-1, 1]."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.inception = inception
        self.num_features = int(inception.features_list[0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        return self.inception(pixels).double()


def inception_features(weights_path: str | Path | None = None, feature: int = 2048) -> nn.Module:
    """The standard FID Inception v3, from a local weights file (never downloaded).

    `weights_path` defaults to `<torch hub dir>/checkpoints/<INCEPTION_WEIGHTS>`. Raises
    `WeightsMissingError` naming that file when it is absent.
    """
    path = Path(weights_path or Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS)
    if not path.is_file():
        raise WeightsMissingError(
            f"Inception weights for FID not found at {path}. Download {INCEPTION_URL} on a "
            f"machine with internet access and place it at {path} (or pass its path), or use "
            "the domain features (the default), which need no download"
        )
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as error:  # pragma: no cover - depends on the torchmetrics build
        raise CfgenError(f"torchmetrics cannot build its FID Inception: {error}") from error
    try:
        inception = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(feature)],
            feature_extractor_weights_path=str(path),
        )
    except ModuleNotFoundError as error:
        raise CfgenError(
            "the standard FID Inception needs the `torch-fidelity` package: "
            "`pip install torch-fidelity`, or use the domain features (the default)"
        ) from error
    return _InceptionOnSignedImages(inception)


def _feed(metric, images: torch.Tensor, real: bool, batch_size: int) -> None:
    """Update `metric` with `images` (N, C, H, W) in chunks of `batch_size`."""
    for start in range(0, images.shape[0], batch_size):
        metric.update(images[start : start + batch_size], real=real)


def _check_pair(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.dim() != 4 or fake.dim() != 4 or real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            f"real and fake images must both be (N, C, H, W) of one size, got "
            f"{tuple(real.shape)} and {tuple(fake.shape)}"
        )


def fid(
    real: torch.Tensor, fake: torch.Tensor, features: nn.Module, batch_size: int = 256
) -> float:
    """Frechet distance between feature Gaussians of `real` and `fake`, (N, C, H, W) each.

    Computed in float64; NaN when either set has fewer than 2 images.
    """
    _check_pair(real, fake)
    if min(real.shape[0], fake.shape[0]) < 2:
        return math.nan
    # No `set_dtype(float64)`: its sums are float64 already and our features arrive in float64;
    # the cast would also turn the extractor's weights to float64 (slow, and Inception breaks).
    metric = FrechetInceptionDistance(feature=features, normalize=True)
    metric = metric.to(real.device)
    _feed(metric, real, True, batch_size)
    _feed(metric, fake, False, batch_size)
    return float(metric.compute())


def kid(
    real: torch.Tensor,
    fake: torch.Tensor,
    features: nn.Module,
    subsets: int = 100,
    subset_size: int = 1000,
    batch_size: int = 256,
) -> tuple[float, float]:
    """Kernel distance (unbiased polynomial-kernel MMD²): (mean, std) over random subsets.

    `subset_size` is capped at the size of the smaller set; NaNs when it has fewer than 2 images.
    """
    _check_pair(real, fake)
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        return math.nan, math.nan
    with warnings.catch_warnings():
        # It warns that features are buffered: (N, D) floats, small next to the images themselves.
        warnings.filterwarnings("ignore", "Metric `Kernel Inception Distance` will save")
        metric = KernelInceptionDistance(feature=features, subsets=subsets, subset_size=size)
    metric = metric.to(real.device)
    _feed(metric, real, True, batch_size)
    _feed(metric, fake, False, batch_size)
    mean, std = metric.compute()
    return float(mean), float(std)


def _kid_mean(real: torch.Tensor, fake: torch.Tensor, features: nn.Module) -> float:
    return kid(real, fake, features)[0]


REALISM_METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor, nn.Module], float]] = {
    "fid": fid,
    "kid": _kid_mean,
}


def _group(
    real_images: torch.Tensor,
    real_posteriors: torch.Tensor,
    fake_strip: Strip,
    n_bins: int,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The (real, fake) image sets of every bin and of Present / Absent / Overall."""
    real_bins = posterior_to_bin(real_posteriors, n_bins)
    fake_targets = bin_centre(fake_strip.target_bins, n_bins)
    image_shape = fake_strip.images.shape[2:]

    def fakes(steps: torch.Tensor) -> torch.Tensor:
        return fake_strip.images[steps.cpu()].reshape(-1, *image_shape)

    groups = {
        f"bin_{b}": (real_images[real_bins == b], fakes(fake_strip.target_bins == b))
        for b in range(n_bins)
    }
    groups["present"] = (real_images[real_posteriors > 0.9], fakes(fake_targets > 0.9))
    groups["absent"] = (real_images[real_posteriors < 0.1], fakes(fake_targets < 0.1))
    groups["overall"] = (real_images, fakes(torch.ones_like(fake_targets, dtype=torch.bool)))
    return groups


def realism_by_bin(
    real_images: torch.Tensor,
    real_posteriors: torch.Tensor,
    fake_strip: Strip,
    n_bins: int,
    features: nn.Module,
    metric: str = "fid",
) -> dict[str, float]:
    """Realism per posterior bin and PE's Present / Absent / Overall protocol.

    real_images: (M, C, H, W) held-out real images; real_posteriors: (M,) their classifier
    posteriors; fake_strip: the generated strips (S steps for N queries). Real images are grouped
    by the bin of their posterior, generated ones by their target bin; Present is f > 0.9 (target
    bins whose centre is above 0.9), Absent f < 0.1. Returns `bin_0` … `bin_{n-1}`, `present`,
    `absent`, `overall` (NaN where a group has fewer than 2 images on either side), plus
    `n_real_*` / `n_fake_*` counts so a reader can judge each value's reliability.
    """
    if metric not in REALISM_METRICS:
        raise ValueError(
            f"unknown realism metric {metric!r}; choose one of {sorted(REALISM_METRICS)}"
        )
    if real_posteriors.shape != real_images.shape[:1]:
        raise ValueError(
            f"real_posteriors must be ({real_images.shape[0]},), got {tuple(real_posteriors.shape)}"
        )
    score = REALISM_METRICS[metric]
    results: dict[str, float] = {}
    for name, (real, fake) in _group(real_images, real_posteriors, fake_strip, n_bins).items():
        results[name] = score(real, fake, features)
        results[f"n_real_{name}"] = real.shape[0]
        results[f"n_fake_{name}"] = fake.shape[0]
    return results
