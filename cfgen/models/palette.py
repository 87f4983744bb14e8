"""Drawing in the query's own colours (docs/DESIGN.md, "Edits drawn in the query's colours"):
a blend whose drawing is, at every pixel, a convex mix of the query's `k` main colours, so that
no colour appears that the query does not hold somewhere (grey images stay grey, a face gets
no green or purple) while a stroke can still be drawn anywhere.

The main colours are found by k-means on the query's pixels, started from the pixel farthest
from the image's mean colour and then each pixel farthest from those chosen (a small part in a
colour of its own, a mouth, gets a centre of its own), and are not trained: the generator
chooses, per pixel, how much of each to draw.
"""

import torch

# Lloyd iterations after the farthest-point start: the centres of 32 px images settle by then.
ITERATIONS = 6


def main_colours(query: torch.Tensor, k: int) -> torch.Tensor:
    """The `k` main colours (N, k, C) of each image of `query` (N, C, H, W), by k-means; no
    gradient flows through them."""
    with torch.no_grad():
        pixels = query.flatten(2).transpose(1, 2)  # (N, P, C)
        rows = torch.arange(len(pixels), device=query.device)
        nearest = (pixels - pixels.mean(dim=1, keepdim=True)).pow(2).sum(-1)
        centres = []
        for _ in range(k):
            chosen = pixels[rows, nearest.argmax(dim=1)]  # (N, C)
            centres.append(chosen)
            nearest = torch.minimum(nearest, (pixels - chosen[:, None]).pow(2).sum(-1))
        centres = torch.stack(centres, dim=1)  # (N, k, C)
        for _ in range(ITERATIONS):
            assigned = torch.cdist(pixels, centres).argmin(dim=2)  # (N, P)
            members = torch.nn.functional.one_hot(assigned, k).to(pixels)  # (N, P, k)
            counts = members.sum(dim=1)[..., None]  # (N, k, 1)
            sums = members.transpose(1, 2) @ pixels  # (N, k, C)
            centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        return centres


def draw(logits: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """The drawing (N, C, H, W): at each pixel the mix softmax(`logits` (N, k, H, W)) of the
    `colours` (N, k, C)."""
    return torch.einsum("nkhw,nkc->nchw", torch.softmax(logits, dim=1), colours)
