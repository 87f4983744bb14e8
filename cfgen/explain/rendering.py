"""Rendering a trained generator's strips: one batched pass per bin, frames placed by f.

    strip = generator_strip(generator, classifier, queries, n_bins, placement_steps=3)

A strip of S bins costs S generator passes for the whole batch, where optimisation-based
counterfactuals need hundreds of steps per image. The generator answers the same edit by a
different amount from query to query, so some frames land outside their bin; with
`placement_steps` > 0 those are placed by f (`place_frames`): a few bisections of the
generator's conditioning between two bins, on those frames only (docs/DESIGN.md, "Placing the
frames").
"""

from collections.abc import Callable

import torch
from torch import nn

from cfgen.bins import bin_centre, posterior_to_bin
from cfgen.explain.strip import Strip


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
            render_bins(
                generator, chunk, torch.full((len(chunk),), target, device=chunk.device), own
            )
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
        render_bins(generator, x, torch.full((len(x),), level, device=x.device), own)
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
            image = render_bins(generator, x[searched], middle[searched], _rows(own, searched))
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


def takes_own_bins(generator: nn.Module) -> bool:
    """Whether the generator renders from the queries' own bins too (the `difference` output)."""
    return getattr(generator, "output", None) == "difference"


def render_bins(
    generator: nn.Module, x: torch.Tensor, bins: torch.Tensor, own: torch.Tensor | None
) -> torch.Tensor:
    """The generator's images of `x` in `bins`; `own`, f(x), gives a generator that
    `takes_own_bins` the queries' own bins (None for any other)."""
    if not takes_own_bins(generator):
        return generator(x, bins)
    return generator(x, bins, posterior_to_bin(own, generator.n_bins))
