import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.evaluate.shift import compatibility_mae, monotonicity
from cfgen.explain.adversarial import (
    AdversarialCounterfactual,
    OptimisationCounterfactual,
    build_attack,
    minimal_flip_radius,
)
from cfgen.explain.score import posterior_logit
from tests.helpers import LinearClassifier, TinyConvNet


def _classifier() -> LinearClassifier:
    model = LinearClassifier((1, 8, 8)).requires_grad_(False)
    model.weight.mul_(4)  # posteriors spread over (0, 1) for images in [-0.5, 0.5]
    return model


def _queries() -> torch.Tensor:
    return torch.rand(6, 1, 8, 8) - 0.5


STEPS = {"pgd": {"steps": 5}, "fgsm": {}}


def _l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().flatten(1).mean(dim=1)


@pytest.mark.parametrize("attack", ["pgd", "fgsm"])
def test_counterfactual_lands_on_the_target_with_less_change_than_the_full_radius(attack):
    model, x = _classifier(), _queries()
    explainer = AdversarialCounterfactual(model, attack, max_radius=0.5, **STEPS[attack])
    for value in (0.1, 0.9):
        target = torch.full((6,), value)
        counterfactual = explainer.counterfactual(x, target)
        torch.testing.assert_close(model(counterfactual), target, atol=0.01, rtol=0)
        # The naive attack at the full radius overshoots and changes more pixels' worth.
        side = (target >= model(x)).float()
        naive = build_attack(model, attack, **STEPS[attack])(x, torch.full((6, 1, 1, 1), 0.5), side)
        assert bool((_l1(counterfactual, x) < _l1(naive, x)).all())
        assert counterfactual.min() >= -1 and counterfactual.max() <= 1


def test_strip_of_adversarial_counterfactuals_hits_every_bin():
    model, x = _classifier(), _queries()
    strip = AdversarialCounterfactual(model, "fgsm", max_radius=0.5).exaggerate(x, n_bins=10)
    assert compatibility_mae(strip.posteriors, strip.target_bins, 10) < 0.01
    assert monotonicity(strip.posteriors, strip.target_bins) == pytest.approx(1.0)


def test_queries_already_at_their_target_are_left_unchanged():
    model, x = _classifier(), _queries()
    counterfactual = AdversarialCounterfactual(model).counterfactual(x, model(x))
    torch.testing.assert_close(counterfactual, x)


def test_optimisation_counterfactual_reaches_the_target_with_less_change_than_naive():
    model, x = _classifier(), _queries()
    target = torch.where(model(x) < 0.5, 0.8, 0.2)
    counterfactual = OptimisationCounterfactual(model, steps=60, lr=0.05).counterfactual(x, target)
    torch.testing.assert_close(model(counterfactual), target, atol=0.03, rtol=0)
    naive = build_attack(model, "fgsm")(x, torch.full((6, 1, 1, 1), 0.5), (target > 0.5).float())
    assert bool((_l1(counterfactual, x) < _l1(naive, x)).all())


def test_minimal_flip_radius_matches_the_linear_closed_form():
    # For a linear logit, the L-inf radius that reaches the boundary is |z(x)| / |w|_1.
    model, x = _classifier(), _queries()
    radius, flipped = minimal_flip_radius(model, x, "fgsm", max_radius=0.5, resolution=0.005)
    exact = posterior_logit(model(x)).abs() / model.weight.abs().sum()
    assert bool(((radius >= exact - 1e-6) & (radius <= exact + 0.005 + 1e-6)).all())
    assert bool(((model(flipped) >= 0.5) != (model(x) >= 0.5)).all())


def test_minimal_flip_radius_is_inf_when_the_budget_does_not_flip():
    model = _classifier()
    x = 0.5 * model.weight.sign().expand(2, 1, 8, 8)  # logit 0.5 |w|_1: far from the boundary
    radius, images = minimal_flip_radius(model, x, "pgd", max_radius=0.01, steps=2)
    torch.testing.assert_close(radius, torch.full((2,), float("inf")))
    torch.testing.assert_close(images, x)


def test_pgd_works_on_a_conv_net_and_bad_settings_are_config_errors():
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    model = TinyConvNet(1)
    with torch.no_grad():
        model.head.weight.mul_(50)
    counterfactual = AdversarialCounterfactual(model, steps=5, search_steps=12).counterfactual(
        x, torch.full((2,), 0.35)
    )
    # f jumps between nearby PGD radii; the final segment bisection still lands on the target.
    torch.testing.assert_close(model(counterfactual), torch.full((2,), 0.35), atol=0.005, rtol=0)
    with pytest.raises(ConfigError, match="choose one of"):
        AdversarialCounterfactual(model, "cw")
    with pytest.raises(ConfigError, match=r"\['stepz'\]"):
        AdversarialCounterfactual(model, "pgd", stepz=3)
    with pytest.raises(ConfigError, match="max_radius > 0"):
        AdversarialCounterfactual(model, max_radius=0.0)
