"""Building blocks shared by the explainer's generator and discriminator.

- `ConditionalBatchNorm2d`: a normalisation whose scale and shift are looked up from the target
  bin, so one network can render every bin (docs/DESIGN.md, "Official defaults"); batch norm
  (official) or, with `norm="group"`, group norm (`NORMS`).
- `GeneratorBlock`: a pre-activation residual block with conditional BN that can halve
  (`resample="down"`), double (`"up"`) or keep the resolution.
- `DiscriminatorBlock`: a spectrally-normalised residual block (no normalisation layers, as in
  SN-GAN / the official discriminator), optionally halving the resolution.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from cfgen.errors import ConfigError

NORMS = ("batch", "group")
GROUPS = 8  # group norm: channels per group = channels / gcd(channels, 8)


def normalisation(kind: str, channels: int, affine: bool) -> nn.Module:
    """The generator's normalisation layer of `kind` (`NORMS`) for `channels`.

    - `batch` (official): batch statistics in training, running averages at inference. Every
      image's output then depends on the other images of its batch during training, and the
      training step's passes (the edit, the cycle on generated images, the identity) each have
      statistics of their own, while inference has one running average of all of them.
    - `group`: each image normalised over groups of channels on its own (Wu & He, 2018): the
      same computation in training and at inference, whatever the batch.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=affine)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, GROUPS), channels, affine=affine)
    raise ConfigError(f"unknown generator norm {kind!r}; choose one of {list(NORMS)}")


class ConditionalBatchNorm2d(nn.Module):
    """A norm with a learned (gamma, beta) per class: (N, C, H, W), (N,) long -> (N, C, H, W);
    a float label between two classes interpolates their (gamma, beta) (`_lookup`).

    Batch norm unless `norm="group"`. Gamma starts at 1 and beta at 0 for every class, so
    training starts from the plain norm.
    """

    def __init__(self, channels: int, n_classes: int, norm: str = "batch") -> None:
        super().__init__()
        self.norm = normalisation(norm, channels, affine=False)
        self.gamma = nn.Embedding(n_classes, channels)
        self.beta = nn.Embedding(n_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        gamma = _lookup(self.gamma, label)[:, :, None, None]
        beta = _lookup(self.beta, label)[:, :, None, None]
        return self.norm(x) * gamma + beta


def _lookup(table: nn.Embedding, label: torch.Tensor) -> torch.Tensor:
    """Rows of `table` for integer labels; for fractional ones (a float tensor), the linear
    interpolation between the two neighbouring rows, so 2.25 is a quarter of the way from
    class 2 to class 3 (labels clamped to [0, n_classes - 1])."""
    if not label.is_floating_point():
        return table(label)
    label = label.clamp(0, table.num_embeddings - 1)
    low = label.floor().long().clamp(max=table.num_embeddings - 2)
    share = (label - low)[:, None].to(table.weight.dtype)
    return table(low) * (1 - share) + table(low + 1) * share


def _resample(x: torch.Tensor, resample: str) -> torch.Tensor:
    if resample == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    if resample == "down":
        return F.avg_pool2d(x, 2)
    return x


RESAMPLE_MODES = ("up", "down", "none")


class GeneratorBlock(nn.Module):
    """Residual block with conditional BN: (N, C_in, H, W), (N,) -> (N, C_out, H', W').

    Both convs run at the lower of the two resolutions: an up block upsamples before its first
    conv, a down block pools before it (like a strided conv). At 32 px this halves the cost of
    the generator against convolving at the input resolution, which matters on a CPU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_classes: int,
        resample: str,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if resample not in RESAMPLE_MODES:
            raise ValueError(f"resample must be one of {RESAMPLE_MODES}, got {resample!r}")
        self.resample = resample
        self.norm1 = ConditionalBatchNorm2d(in_channels, n_classes, norm)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ConditionalBatchNorm2d(out_channels, n_classes, norm)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels or resample != "none"
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_resample(F.relu(self.norm1(x, label)), self.resample))
        h = self.conv2(F.relu(self.norm2(h, label)))
        return h + self.shortcut(_resample(x, self.resample))


class DiscriminatorBlock(nn.Module):
    """Spectrally-normalised residual block: (N, C_in, H, W) -> (N, C_out, H', W').

    `first=True` is the block that sees the image: no activation before its first conv (a ReLU
    would clip the negative half of the [-1, 1] pixels).
    """

    def __init__(
        self, in_channels: int, out_channels: int, downsample: bool, first: bool = False
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.first = first
        self.conv1 = spectral_norm(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.shortcut = (
            spectral_norm(nn.Conv2d(in_channels, out_channels, 1))
            if in_channels != out_channels or downsample
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        # A 1x1 conv commutes with average pooling: pooling first gives the same map, 4x cheaper.
        skip = self.shortcut(F.avg_pool2d(x, 2) if self.downsample else x)
        return h + skip


def channel_widths(n_levels: int, base_width: int, max_width: int) -> list[int]:
    """Width at each resolution level: doubles from `base_width` per level, capped."""
    return [min(base_width * 2**level, max_width) for level in range(n_levels + 1)]


def levels_for(image_size: int, bottom_size: int = 4) -> int:
    """Number of halvings from `image_size` down to `bottom_size` (a power-of-2 ratio)."""
    levels = 0
    size = image_size
    while size > bottom_size and size % 2 == 0:
        size //= 2
        levels += 1
    if size != bottom_size:
        raise ConfigError(
            f"image_size {image_size} cannot be halved down to {bottom_size}x{bottom_size}; "
            f"use a size like 32, 64 or 128"
        )
    return levels
