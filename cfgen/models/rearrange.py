"""Generator outputs that only move the query's own pixels (docs/DESIGN.md, "Edits that move
the query's pixels").

- `warp`: each output pixel is the query sampled (bilinearly) at its own position displaced by
  a flow of at most `reach` pixels: x'(p) = x(p + reach tanh(h(p))). Parts move and bend; no
  colour appears that the query does not have next to it.
- `copy`: each output pixel is a convex combination of the query's pixels in the
  (2 reach + 1)^2 window around it, weighted by a softmax of the head's channels (a local
  attention over the query). A warp is the special case of one weight per pixel; copy can
  also thicken, extend or erase a stroke with its neighbours' colours.

Both start at the identity (a zero head is no flow; copy's centre logit starts
`COPY_CENTRE_BIAS` above the others), and both keep grey images grey.
"""

import math

import torch
import torch.nn.functional as F

# Copy's centre tap starts this far above log(window size): about 0.73 of the weight on the
# query's own pixel before training.
COPY_CENTRE_BIAS = 1.0


def copy_channels(reach: int) -> int:
    """Head channels of the copy output: one logit per tap of the (2 reach + 1)^2 window."""
    return (2 * reach + 1) ** 2


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


def copy(head: torch.Tensor, query: torch.Tensor, reach: int) -> torch.Tensor:
    """Each pixel of `query` (N, C, H, W) replaced by the softmax(head)-weighted mean of its
    (2 reach + 1)^2 window, borders repeated."""
    n, channels, height, width = query.shape
    taps = copy_channels(reach)
    logits = head[:, :taps].clone()
    logits[:, taps // 2] += math.log(taps) + COPY_CENTRE_BIAS
    weights = torch.softmax(logits, dim=1)
    padded = F.pad(query, (reach,) * 4, mode="replicate")
    windows = F.unfold(padded, 2 * reach + 1).view(n, channels, taps, height, width)
    return (windows * weights.unsqueeze(1)).sum(dim=2)
