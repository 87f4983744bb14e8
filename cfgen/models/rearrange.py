"""The generator output that only moves the query's own pixels (docs/DESIGN.md, "Edits that move
the query's pixels"): each output pixel is the query sampled (bilinearly) at its own position
displaced by a flow of at most `reach` pixels, x'(p) = x(p + reach tanh(h(p))). Parts move and
bend; no colour appears that the query does not have next to the moved pixel, so grey images
stay grey. A zero head is no flow: the identity.
"""

import torch
import torch.nn.functional as F


def flow(head: torch.Tensor, reach: int) -> torch.Tensor:
    """The flow (N, 2, H, W) in pixels (x then y) that `head[:, :2]` asks for: reach * tanh."""
    return reach * torch.tanh(head[:, :2])


def warp(query: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """`query` (N, C, H, W) resampled bilinearly along `flow` (N, 2, H, W) in pixels (x then
    y): x'(p) = x(p + flow(p)), borders repeated."""
    _, _, height, width = query.shape
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=query.device)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=query.device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([grid_x + flow[:, 0] * 2 / width, grid_y + flow[:, 1] * 2 / height], dim=-1)
    return F.grid_sample(
        query, grid.to(query.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )
