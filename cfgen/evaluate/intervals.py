"""95% bootstrap intervals over queries for the evaluation's averaged figures.

A figure is a statistic of per-query values: a mean (flip rate: the mean of 0/1 successes) or a
ratio of means (the true-counterfactual ratio, the manifold distance). `bootstrap_interval`
resamples the queries with replacement, recomputes the statistic on each resample and returns
the percentile interval; the resampling is seeded, so an evaluation gives the same intervals
every time.
"""

from collections.abc import Callable, Mapping

import torch

LEVEL = 0.95
RESAMPLES = 1000

Statistic = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


def mean_of(name: str) -> Statistic:
    """The statistic `mean(values[name])`, vectorised over resamples (B, N) -> (B,)."""
    return lambda values: values[name].double().mean(dim=-1)


def ratio_of(numerator: str, denominator: str) -> Statistic:
    """The statistic `mean(values[numerator]) / mean(values[denominator])`."""

    def statistic(values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        below = values[denominator].double().mean(dim=-1)
        return values[numerator].double().mean(dim=-1) / below

    return statistic


def bootstrap_interval(
    values: Mapping[str, torch.Tensor],
    statistic: Statistic,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over the queries.

    values: per-query tensors (N,) sharing one N (the statistic's inputs, resampled together).
    Returns (low, high); NaN where a resample's statistic is undefined throughout.
    """
    sizes = {len(tensor) for tensor in values.values()}
    if len(sizes) != 1:
        raise ValueError(f"per-query values must share one length, got {sorted(sizes)}")
    n = sizes.pop()
    if n == 0:
        return float("nan"), float("nan")
    draws = torch.Generator().manual_seed(seed)
    picks = torch.randint(n, (resamples, n), generator=draws)
    resampled = {name: tensor.detach().cpu()[picks] for name, tensor in values.items()}
    return _percentiles(statistic(resampled), level)


def _percentiles(estimates: torch.Tensor, level: float) -> tuple[float, float]:
    """The central `level` interval of the finite estimates (NaN when none is finite)."""
    estimates = estimates[torch.isfinite(estimates)].double()
    if len(estimates) == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2
    low, high = torch.quantile(estimates, torch.tensor([tail, 1.0 - tail], dtype=estimates.dtype))
    return low.item(), high.item()


LOOP_RESAMPLES = 200


def bootstrap_loop(
    statistic: Callable[[torch.Tensor], float],
    n: int,
    resamples: int = LOOP_RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic that is not vectorised (FID): called once
    per resample with the resampled query indices (n,)."""
    if n == 0:
        return float("nan"), float("nan")
    draws = torch.Generator().manual_seed(seed)
    estimates = torch.tensor(
        [statistic(torch.randint(n, (n,), generator=draws)) for _ in range(resamples)],
        dtype=torch.float64,
    )
    return _percentiles(estimates, level)
