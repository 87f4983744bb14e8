"""Probability shift along a strip: compatibility, flip rate, monotonicity.

All functions take the posteriors of a strip, (S, N): S target bins (in increasing order) for
N queries, so they score any counterfactual method the same way.
"""

import torch

from cfgen.bins import bin_target


def compatibility_curve(
    posteriors: torch.Tensor, target_bins: torch.Tensor, n_bins: int, kind: str = "centre"
) -> dict[str, torch.Tensor]:
    """Target vs achieved posterior per bin.

    Returns `target` (S,), `achieved_mean` (S,) and `achieved_std` (S,) over the N queries.
    """
    return {
        "target": bin_target(target_bins, n_bins, kind),
        "achieved_mean": posteriors.mean(dim=1),
        "achieved_std": posteriors.std(dim=1, unbiased=False),
    }


def compatibility_mae(
    posteriors: torch.Tensor, target_bins: torch.Tensor, n_bins: int, kind: str = "centre"
) -> float:
    """Mean |achieved - target posterior| over all bins and queries."""
    target = bin_target(target_bins, n_bins, kind).to(posteriors)
    return (posteriors - target[:, None]).abs().mean().item()


def flip_rate(
    posteriors: torch.Tensor, query_posteriors: torch.Tensor, threshold: float = 0.5
) -> float:
    """Share of queries whose far end of the strip crosses `threshold` in the asked direction.

    A query below the threshold asks to go up (its last image must be above it); a query at or
    above asks to go down (its first image must be below it).
    """
    goes_up = query_posteriors < threshold
    success = torch.where(goes_up, posteriors[-1] > threshold, posteriors[0] < threshold)
    return success.float().mean().item()


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Average ranks along dim 0 (ties share their mean rank), (S, N) -> (S, N)."""
    order = values.argsort(dim=0)
    ranks = torch.empty_like(values)
    positions = torch.arange(values.shape[0], dtype=values.dtype, device=values.device)
    ranks.scatter_(0, order, positions[:, None].expand_as(values))
    ties = (values[:, None, :] == values[None, :, :]).to(values.dtype)
    return (ties * ranks[None, :, :]).sum(dim=1) / ties.sum(dim=1)


def spearman_per_query(posteriors: torch.Tensor, target_bins: torch.Tensor) -> torch.Tensor:
    """Spearman correlation between target bin and posterior for each query, (N,).

    A query whose posteriors are all equal has correlation 0 (nothing progresses).
    """
    posterior_ranks = _ranks(posteriors.double())
    # The bins may live on the CPU while a GPU strip's posteriors do not (training's validation).
    bin_ranks = _ranks(target_bins.to(posteriors.device).double()[:, None].expand_as(posteriors))
    posterior_ranks = posterior_ranks - posterior_ranks.mean(dim=0)
    bin_ranks = bin_ranks - bin_ranks.mean(dim=0)
    covariance = (posterior_ranks * bin_ranks).sum(dim=0)
    scale = posterior_ranks.norm(dim=0) * bin_ranks.norm(dim=0)
    correlation = torch.where(scale > 0, covariance / scale.clamp_min(1e-12), 0.0)
    return correlation.float()


def monotonicity(posteriors: torch.Tensor, target_bins: torch.Tensor) -> float:
    """Mean Spearman rank correlation of f along each strip (1 = strictly increasing)."""
    return spearman_per_query(posteriors, target_bins).mean().item()


def shift_summary(
    posteriors: torch.Tensor,
    target_bins: torch.Tensor,
    query_posteriors: torch.Tensor,
    n_bins: int,
    kind: str = "centre",
) -> dict[str, float]:
    """The three headline shift figures of a strip, as logged under `val/`."""
    return {
        "compat_mae": compatibility_mae(posteriors, target_bins, n_bins, kind),
        "flip_rate": flip_rate(posteriors, query_posteriors),
        "monotonicity": monotonicity(posteriors, target_bins),
    }
