import pytest
import scipy.stats
import torch

from cfgen.evaluate.shift import (
    compatibility_curve,
    compatibility_mae,
    flip_rate,
    monotonicity,
    spearman_per_query,
)

BINS = torch.arange(10)


def test_strip_that_hits_every_bin_centre_has_zero_error():
    posteriors = ((BINS.float() + 0.5) / 10)[:, None].repeat(1, 4)
    assert compatibility_mae(posteriors, BINS, 10) == pytest.approx(0.0, abs=1e-7)
    assert compatibility_mae(posteriors, BINS, 10, "lower") == pytest.approx(0.05)
    curve = compatibility_curve(posteriors, BINS, 10)
    torch.testing.assert_close(curve["achieved_mean"], curve["target"])
    torch.testing.assert_close(curve["achieved_std"], torch.zeros(10))


def test_constant_offset_gives_that_error():
    posteriors = ((BINS.float() + 0.5) / 10 + 0.03)[:, None].repeat(1, 3)
    assert compatibility_mae(posteriors, BINS, 10) == pytest.approx(0.03, abs=1e-6)


def test_flip_rate_counts_the_asked_direction():
    # query 0 starts low and ends high (success); query 1 starts high and its first image
    # is still high (failure); query 2 starts high and its first image is low (success).
    query = torch.tensor([0.2, 0.8, 0.7])
    posteriors = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.7, 0.5], [0.9, 0.9, 0.9]])
    assert flip_rate(posteriors, query) == pytest.approx(2 / 3)


def test_monotonicity_known_cases():
    increasing = torch.linspace(0, 1, 10)[:, None]
    assert monotonicity(increasing, BINS) == pytest.approx(1.0)
    assert monotonicity(increasing.flip(0), BINS) == pytest.approx(-1.0)
    assert monotonicity(torch.full((10, 1), 0.3), BINS) == pytest.approx(0.0)


def test_spearman_matches_scipy_with_ties():
    posteriors = torch.rand(10, 6)
    posteriors[3:5, 2] = 0.5
    expected = [scipy.stats.spearmanr(BINS, posteriors[:, i]).statistic for i in range(6)]
    torch.testing.assert_close(
        spearman_per_query(posteriors, BINS), torch.tensor(expected, dtype=torch.float32)
    )
