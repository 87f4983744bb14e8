"""The explainer's discriminator D(x, c): a spectrally-normalised ResNet with a projection head.

Real images are scored with their own bin, generated ones with their target bin (docs/DESIGN.md,
"Official defaults"), so D judges both realism and whether an image looks like a member of its bin.
Features are sum-pooled over space; the score is a linear term plus a projection of the features on
the bin:
- `plain`: the inner product with a learned embedding of the bin (Miyato & Koyama, 2018);
- `ordinal` (official): the bin is an ordinal code, one learned vector per threshold between
  bins; a bin's projection sums the vectors of the thresholds below it, so neighbouring bins
  share most of their projection.

`PatchCritic` (`discriminator.patch_size`): a second, unconditional critic that scores every
`patch_size` x `patch_size` window of an image at full resolution (PatchGAN, Isola et al.,
2017), so that a few pixels of a colour no real image has there cost the generator wherever
they are, however little they weigh in the whole image's score.
"""

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from cfgen.errors import ConfigError
from cfgen.models.blocks import DiscriminatorBlock, channel_widths, levels_for


class PlainProjection(nn.Module):
    """<embed(c), h>: (N, D) features, (N,) bins -> (N,)."""

    def __init__(self, features: int, n_bins: int) -> None:
        super().__init__()
        self.embedding = spectral_norm(nn.Embedding(n_bins, features))

    def forward(self, features: torch.Tensor, target_bin: torch.Tensor) -> torch.Tensor:
        return (self.embedding(target_bin) * features).sum(dim=1)


class OrdinalProjection(nn.Module):
    """sum_{k < c} <w_k, h> over the N - 1 thresholds below bin c: (N, D), (N,) -> (N,)."""

    def __init__(self, features: int, n_bins: int) -> None:
        super().__init__()
        self.thresholds = spectral_norm(nn.Linear(features, n_bins - 1, bias=False))

    def forward(self, features: torch.Tensor, target_bin: torch.Tensor) -> torch.Tensor:
        per_threshold = self.thresholds(features)
        # Prepend 0 for bin 0 (no threshold below it); cumsum gives each bin its partial sum.
        zero = per_threshold.new_zeros(per_threshold.shape[0], 1)
        cumulative = torch.cat([zero, per_threshold], dim=1).cumsum(dim=1)
        return cumulative.gather(1, target_bin[:, None]).squeeze(1)


PROJECTIONS = {"plain": PlainProjection, "ordinal": OrdinalProjection}


class PatchCritic(nn.Module):
    """(N, C, H, W) images -> (N, H, W) scores (high = real), each read from the
    `patch_size` x `patch_size` window around its pixel: (patch_size - 1) / 2 spectrally
    normalised 3x3 convolutions of stride 1, leaky ReLUs between them, then a 1x1 to one score."""

    def __init__(self, channels: int, width: int, patch_size: int) -> None:
        super().__init__()
        if patch_size < 3 or patch_size % 2 == 0:
            raise ConfigError(
                f"discriminator.patch_size must be an odd number of pixels >= 3, got {patch_size}"
            )
        layers: list[nn.Module] = []
        for index in range((patch_size - 1) // 2):
            if index:
                layers.append(nn.LeakyReLU(0.2))
            layers.append(
                spectral_norm(nn.Conv2d(channels if index == 0 else width, width, 3, 1, 1))
            )
        layers += [nn.LeakyReLU(0.2), spectral_norm(nn.Conv2d(width, 1, 1))]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(1)


class Discriminator(nn.Module):
    """D(x, c): (N, C, H, W) images, (N,) long bins -> (N,) scores (high = real); with
    `patch_size` > 0 it also holds a `PatchCritic` (`patch_scores`)."""

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        n_bins: int = 10,
        base_width: int = 32,
        max_width: int = 256,
        projection: str = "ordinal",
        patch_size: int = 0,
    ) -> None:
        super().__init__()
        if projection not in PROJECTIONS:
            raise ConfigError(
                f"unknown projection {projection!r}; choose one of {sorted(PROJECTIONS)}"
            )
        levels = levels_for(image_size)
        widths = channel_widths(levels, base_width, max_width)
        blocks = [DiscriminatorBlock(channels, widths[0], downsample=True, first=True)]
        blocks += [DiscriminatorBlock(widths[i], widths[i + 1], True) for i in range(levels - 1)]
        # One block at the 4x4 bottom before pooling, as in SN-GAN's ResNet discriminators.
        blocks.append(DiscriminatorBlock(widths[levels - 1], widths[levels], downsample=False))
        self.blocks = nn.Sequential(*blocks)
        self.linear = spectral_norm(nn.Linear(widths[levels], 1))
        self.projection = PROJECTIONS[projection](widths[levels], n_bins)
        self.patch = PatchCritic(channels, base_width, patch_size) if patch_size else None

    def forward(self, x: torch.Tensor, target_bin: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.linear(features).squeeze(1) + self.projection(features, target_bin)

    def patch_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The patch critic's scores of `x` (N, C, H, W): (N, H, W)."""
        if self.patch is None:
            raise ConfigError(
                "this discriminator has no patch critic: set discriminator.patch_size"
            )
        return self.patch(x)
