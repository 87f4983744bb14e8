"""Faithfulness of relevance maps: deletion / insertion AUC and COUT.

All three walk from a `start` image to an `end` image by swapping pixels in the order a relevance
map ranks them, in `steps` equal chunks, and record the classifier along the way:

| metric | start -> end | curve of | better |
| --- | --- | --- | --- |
| deletion | query -> baseline | posterior of the query's decided class | lower |
| insertion | baseline -> query | posterior of the query's decided class | higher |
| COUT | query -> counterfactual | p(counterfactual class) - p(query class) | higher |

The decided class of a query is the side of 0.5 its posterior f(x) lies on (score f or 1 - f), so
queries on both sides of the boundary are scored alike. Pixels are ranked by the channel sum of
|relevance|: saliency methods disagree on signs, and a counterfactual map |x - x_c| has none.
Areas are trapezoids over the fraction of pixels swapped, in [0, 1].

COUT follows Khorram & Fuxin (CVPR 2022, "counterfactual transition"): with the binary f, the
curve p(cf class) - p(query class) = ±(2 f - 1) lies in [-1, 1]; COUT is its area, in [-1, 1]:
near 1 when the first swapped pixels already carry the whole decision, negative when the
counterfactual class (the one opposite to the query's decision) is never reached. Any map can be
scored on it, so saliency methods and counterfactual explainers share one faithfulness scale.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

Classifier = Callable[[torch.Tensor], torch.Tensor]


def grey_baseline(x: torch.Tensor) -> torch.Tensor:
    """Mid-grey (0 in [-1, 1]) everywhere."""
    return torch.zeros_like(x)


def blur_baseline(x: torch.Tensor, sigma: float = 3.0) -> torch.Tensor:
    """A Gaussian blur of `x`: removes shape information but keeps colours in range."""
    radius = int(3 * sigma)
    grid = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(grid**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    blurred = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode="replicate"), horizontal, groups=channels
    )
    return F.conv2d(
        F.pad(blurred, (0, 0, radius, radius), mode="replicate"), vertical, groups=channels
    )


BASELINES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "blur": blur_baseline,
    "grey": grey_baseline,
}


def pixel_ranks(relevance: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel by the channel sum of |relevance|, 0 = most relevant: (N, H, W).

    relevance: (N, C, H, W) or (N, H, W). Ties keep raster order (stable sort).
    """
    scores = relevance.abs().sum(dim=1) if relevance.dim() == 4 else relevance.abs()
    flat = scores.flatten(1)
    order = flat.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks.view_as(scores)


@torch.no_grad()
def perturbation_curve(
    classifier: Classifier,
    start: torch.Tensor,
    end: torch.Tensor,
    relevance: torch.Tensor,
    steps: int = 20,
    batch_size: int = 256,
) -> torch.Tensor:
    """Posteriors f while the pixels of `start` are replaced by those of `end`, most relevant
    first: (N, steps + 1), column k after round(k / steps * H * W) pixels (column 0 = `start`).

    start, end: (N, C, H, W); relevance: (N, C, H, W) or (N, H, W). The classifier sees at most
    `batch_size` images at once.
    """
    if start.shape != end.shape or relevance.shape[-2:] != start.shape[-2:]:
        raise ValueError(
            f"start {tuple(start.shape)}, end {tuple(end.shape)} and relevance "
            f"{tuple(relevance.shape)} must share N, H and W"
        )
    ranks = pixel_ranks(relevance).unsqueeze(1)
    num_pixels = start.shape[-2] * start.shape[-1]
    curve = []
    for step in range(steps + 1):
        swapped = ranks < round(step / steps * num_pixels)
        images = torch.where(swapped, end, start)
        chunks = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        curve.append(torch.cat([classifier(chunk) for chunk in chunks]))
    return torch.stack(curve, dim=1)


def area_under_curve(curve: torch.Tensor) -> torch.Tensor:
    """Trapezoid area of curves (N, K + 1) sampled evenly on [0, 1] -> (N,)."""
    return ((curve[:, 1:] + curve[:, :-1]) / 2).mean(dim=1)


def _decided_score(curve: torch.Tensor, query_posterior: torch.Tensor) -> torch.Tensor:
    """Curves of f turned into curves of the posterior of each query's decided class."""
    positive = (query_posterior >= 0.5)[:, None]
    return torch.where(positive, curve, 1 - curve)


def _baseline(x: torch.Tensor, baseline: str | torch.Tensor) -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        return baseline.expand_as(x)
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose one of {sorted(BASELINES)}")
    return BASELINES[baseline](x)


def deletion_auc(
    classifier: Classifier,
    x: torch.Tensor,
    relevance: torch.Tensor,
    steps: int = 20,
    baseline: str | torch.Tensor = "blur",
) -> torch.Tensor:
    """Deletion AUC per query, (N,), lower = more faithful: the decided class's posterior while
    the most relevant pixels of `x` (N, C, H, W) are replaced by the `baseline` first."""
    curve = perturbation_curve(classifier, x, _baseline(x, baseline), relevance, steps)
    return area_under_curve(_decided_score(curve, curve[:, 0]))


def insertion_auc(
    classifier: Classifier,
    x: torch.Tensor,
    relevance: torch.Tensor,
    steps: int = 20,
    baseline: str | torch.Tensor = "blur",
) -> torch.Tensor:
    """Insertion AUC per query, (N,), higher = more faithful: the decided class's posterior
    while the most relevant pixels of `x` are put back into the `baseline` first."""
    curve = perturbation_curve(classifier, _baseline(x, baseline), x, relevance, steps)
    return area_under_curve(_decided_score(curve, curve[:, -1]))


def cout(
    classifier: Classifier,
    x: torch.Tensor,
    counterfactual: torch.Tensor,
    relevance: torch.Tensor | None = None,
    steps: int = 20,
) -> torch.Tensor:
    """COUT per query, (N,), in [-1, 1], higher = more faithful.

    Pixels of `counterfactual` (N, C, H, W) enter the query `x` in the order of `relevance`
    (default |x - counterfactual|: the change magnitude); the curve is p(class of the
    counterfactual) - p(class of the query), i.e. ±(2 f - 1), and COUT its area.
    """
    relevance = (x - counterfactual).abs() if relevance is None else relevance
    curve = perturbation_curve(classifier, x, counterfactual, relevance, steps)
    # The counterfactual class is the one opposite to the query's decision, reached or not.
    towards_positive = (curve[:, 0] < 0.5)[:, None]
    transition = torch.where(towards_positive, 2 * curve - 1, 1 - 2 * curve)
    return area_under_curve(transition)
