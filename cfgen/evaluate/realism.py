"""Realism of generated images: FID and KID in a feature space.

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


class _GivenFeatures(nn.Module):
    """The identity, as the feature extractor of a torchmetrics metric fed with features
    (N, D) already extracted: each set is encoded once and reused by every metric and group."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.double()


@torch.no_grad()
def encode(features: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Features (..., D) float64 of images (..., C, H, W), in batches of `batch_size`."""
    flat = images.reshape(-1, *images.shape[-3:])
    chunks = [
        features(flat[start : start + batch_size]) for start in range(0, len(flat), batch_size)
    ]
    encoded = torch.cat(chunks).double() if chunks else torch.zeros(0, features.num_features)
    return encoded.reshape(*images.shape[:-3], encoded.shape[-1])


def _check_pair(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.dim() != 4 or fake.dim() != 4 or real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            f"real and fake images must both be (N, C, H, W) of one size, got "
            f"{tuple(real.shape)} and {tuple(fake.shape)}"
        )


def _check_features(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real and fake features must both be (N, D) of one D, got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )


def fid_of_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between the Gaussians of features `real` (M, D) and `fake` (N, D).

    torchmetrics' FID on features given directly, in float64; NaN when either set has fewer
    than 2 rows.
    """
    _check_features(real, fake)
    if min(real.shape[0], fake.shape[0]) < 2:
        return math.nan
    metric = FrechetInceptionDistance(feature=_GivenFeatures(real.shape[1])).to(real.device)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kid_of_features(
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000
) -> tuple[float, float]:
    """Kernel distance (unbiased polynomial-kernel MMD²) of features (M, D) and (N, D): (mean,
    std) over random subsets. `subset_size` is capped at the smaller set; NaNs below 2 rows."""
    _check_features(real, fake)
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        return math.nan, math.nan
    with warnings.catch_warnings():
        # It warns that features are buffered: (N, D) floats, small next to the images themselves.
        warnings.filterwarnings("ignore", "Metric `Kernel Inception Distance` will save")
        metric = KernelInceptionDistance(
            feature=_GivenFeatures(real.shape[1]), subsets=subsets, subset_size=size
        )
    metric = metric.to(real.device)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    mean, std = metric.compute()
    return float(mean), float(std)


def fid(
    real: torch.Tensor, fake: torch.Tensor, features: nn.Module, batch_size: int = 256
) -> float:
    """Frechet distance between feature Gaussians of `real` and `fake`, (N, C, H, W) each.

    Computed in float64; NaN when either set has fewer than 2 images.
    """
    _check_pair(real, fake)
    return fid_of_features(encode(features, real, batch_size), encode(features, fake, batch_size))


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
    real_features, fake_features = (encode(features, x, batch_size) for x in (real, fake))
    return kid_of_features(real_features, fake_features, subsets, subset_size)


def sfid(real: torch.Tensor, fake: torch.Tensor, splits: int = 10, seed: int = 0) -> float:
    """sFID (ACE's split protocol) of paired features `real` (N, D), the queries,
    and `fake` (N, D), one counterfactual of each query in the same order.

    The pairs are shuffled and cut in two halves A and B; sFID is the mean of FID(real A, fake B)
    and FID(real B, fake A), averaged over `splits` shuffles: a counterfactual is never compared
    with its own query, so a copy of the query scores like two independent real halves, not 0.
    """
    _check_features(real, fake)
    if real.shape[0] != fake.shape[0]:
        raise ValueError(
            f"sFID pairs each query with its counterfactual: got {len(real)} and {len(fake)}"
        )
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(splits):
        order = torch.randperm(real.shape[0], generator=generator).to(real.device)
        half_a, half_b = order.tensor_split(2)
        values += [fid_of_features(real[half_a], fake[half_b])]
        values += [fid_of_features(real[half_b], fake[half_a])]
    return float(sum(values) / len(values))


def _kid_mean(real: torch.Tensor, fake: torch.Tensor) -> float:
    return kid_of_features(real, fake)[0]


# Realism metrics on features: (real (M, D), fake (N, D)) -> value.
REALISM_METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {
    "fid": fid_of_features,
    "kid": _kid_mean,
}


def _group(
    real: torch.Tensor,
    real_posteriors: torch.Tensor,
    fake: torch.Tensor,
    target_bins: torch.Tensor,
    n_bins: int,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The (real, fake) feature sets of every bin and of Present / Absent / Overall.

    real: (M, D); fake: (S, N, D), step s asked for bin `target_bins[s]`.
    """
    real_bins = posterior_to_bin(real_posteriors, n_bins)
    fake_targets = bin_centre(target_bins, n_bins)

    def fakes(steps: torch.Tensor) -> torch.Tensor:
        return fake[steps.cpu()].reshape(-1, fake.shape[-1])

    groups = {f"bin_{b}": (real[real_bins == b], fakes(target_bins == b)) for b in range(n_bins)}
    groups["present"] = (real[real_posteriors > 0.9], fakes(fake_targets > 0.9))
    groups["absent"] = (real[real_posteriors < 0.1], fakes(fake_targets < 0.1))
    groups["overall"] = (real, fakes(torch.ones_like(fake_targets, dtype=torch.bool)))
    return groups


def realism_of_features(
    real: torch.Tensor,
    real_posteriors: torch.Tensor,
    fake: torch.Tensor,
    target_bins: torch.Tensor,
    n_bins: int,
    metric: str = "fid",
) -> dict[str, float]:
    """`realism_by_bin` on features already extracted: real (M, D) with posteriors (M,), fake
    (S, N, D) of a strip whose step s asked for bin `target_bins[s]`."""
    if metric not in REALISM_METRICS:
        raise ValueError(
            f"unknown realism metric {metric!r}; choose one of {sorted(REALISM_METRICS)}"
        )
    if real_posteriors.shape != real.shape[:1]:
        raise ValueError(
            f"real_posteriors must be ({real.shape[0]},), got {tuple(real_posteriors.shape)}"
        )
    score = REALISM_METRICS[metric]
    results: dict[str, float] = {}
    for name, (real_set, fake_set) in _group(
        real, real_posteriors, fake, target_bins, n_bins
    ).items():
        results[name] = score(real_set, fake_set)
        results[f"n_real_{name}"] = real_set.shape[0]
        results[f"n_fake_{name}"] = fake_set.shape[0]
    return results


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
    `n_real_*` / `n_fake_*` counts so a reader can judge each value's reliability. Each image is
    encoded once, whatever the number of groups.
    """
    _check_pair(real_images, fake_strip.images[0])
    return realism_of_features(
        encode(features, real_images),
        real_posteriors,
        encode(features, fake_strip.images),
        fake_strip.target_bins,
        n_bins,
        metric,
    )
