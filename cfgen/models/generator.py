"""The explainer's generator I_f(x, c): a residual encoder-decoder conditioned on the target bin.

As in the official model (METHOD.md §1): a conv, residual down-blocks to a 4x4 embedding, residual
up-blocks back, BN, ReLU, conv, tanh; conditional BN keyed by the target bin in every block, no
spectral norm. Depth follows the image size (3 levels at 32 px, 5 at the paper's 128 px); width
doubles per level from `base_width` up to `max_width`.
"""

import torch
from torch import nn

from cfgen.models.blocks import GeneratorBlock, channel_widths, levels_for


class Generator(nn.Module):
    """I_f(x, c): (N, C, H, W) in [-1, 1], (N,) long bins -> (N, C, H, W) in [-1, 1]."""

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        n_bins: int = 10,
        base_width: int = 32,
        max_width: int = 256,
        embedding_size: int = 4,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.channels = channels
        self.n_bins = n_bins
        levels = levels_for(image_size, embedding_size)
        widths = channel_widths(levels, base_width, max_width)
        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList(
            GeneratorBlock(widths[i], widths[i + 1], n_bins, "down") for i in range(levels)
        )
        self.up = nn.ModuleList(
            GeneratorBlock(widths[i + 1], widths[i], n_bins, "up") for i in reversed(range(levels))
        )
        self.head = nn.Sequential(
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            nn.Conv2d(widths[0], channels, 3, padding=1),
            nn.Tanh(),
        )

    def encode(self, x: torch.Tensor, target_bin: torch.Tensor) -> torch.Tensor:
        """Embedding of `x` under bin `target_bin`: (N, C, H, W) -> (N, W_max, 4, 4)."""
        h = self.stem(x)
        for block in self.down:
            h = block(h, target_bin)
        return h

    def decode(self, embedding: torch.Tensor, target_bin: torch.Tensor) -> torch.Tensor:
        """Image rendered from an embedding for bin `target_bin`: -> (N, C, H, W) in [-1, 1]."""
        h = embedding
        for block in self.up:
            h = block(h, target_bin)
        return self.head(h)

    def forward(self, x: torch.Tensor, target_bin: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x, target_bin), target_bin)
