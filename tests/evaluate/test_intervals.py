"""Bootstrap intervals on statistics whose spread is known."""

import pytest
import torch

from cfgen.evaluate.intervals import bootstrap_interval, bootstrap_loop, mean_of, ratio_of


def test_a_constant_has_a_point_interval_and_a_ratio_of_proportional_values_too():
    values = {"value": torch.full((50,), 0.3)}
    assert bootstrap_interval(values, mean_of("value")) == pytest.approx((0.3, 0.3))
    base = torch.rand(50) + 0.5
    pair = {"top": 2 * base, "bottom": base}
    assert bootstrap_interval(pair, ratio_of("top", "bottom")) == pytest.approx((2.0, 2.0))


def test_the_interval_of_a_rate_has_the_binomial_width_and_holds_the_rate():
    successes = torch.zeros(400)
    successes[:200] = 1.0  # a rate of exactly 0.5
    low, high = bootstrap_interval({"value": successes}, mean_of("value"), resamples=4000)
    # Normal approximation: 0.5 +- 1.96 * sqrt(0.25 / 400) = 0.5 +- 0.049.
    assert low < 0.5 < high
    assert high - low == pytest.approx(2 * 0.049, abs=0.01)


def test_intervals_are_seeded_and_the_loop_agrees_with_the_vectorised_bootstrap():
    values = torch.randn(300)
    first = bootstrap_interval({"value": values}, mean_of("value"), seed=3)
    assert first == bootstrap_interval({"value": values}, mean_of("value"), seed=3)
    assert first != bootstrap_interval({"value": values}, mean_of("value"), seed=4)
    looped = bootstrap_loop(lambda picks: values[picks].mean().item(), 300, resamples=2000)
    assert looped == pytest.approx(first, abs=0.03)


def test_values_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="one length"):
        bootstrap_interval({"a": torch.ones(3), "b": torch.ones(4)}, ratio_of("a", "b"))
