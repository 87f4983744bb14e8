import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.explain.second_order import SecondOrderSaliency, group_soft_threshold
from tests.helpers import LinearClassifier, QuadraticClassifier, TinyConvNet


def _tile_norms(v: torch.Tensor, size: int) -> torch.Tensor:
    n, c, h, w = v.shape
    tiles = v.reshape(n, c, h // size, size, w // size, size)
    return tiles.pow(2).sum(dim=(1, 3, 5), keepdim=True).sqrt()


def test_with_zero_hessian_it_is_the_group_thresholded_gradient():
    # The logit of a linear classifier has H = 0: delta_G = max(0, 1 - l1/|g_G|) g_G / (2 l2).
    model = LinearClassifier((2, 4, 4))
    x = torch.rand(3, 2, 4, 4) * 2 - 1
    gradient = model.weight.detach().expand_as(x)
    norms = _tile_norms(gradient, 2)
    l1 = norms.median().item()  # zeroes about half of the groups
    explainer = SecondOrderSaliency(
        model, l1=l1, l2=2.0, group_size=2, steps=5, power_iterations=0, score="logit"
    )
    relevance = explainer.explain(x, 1.0)
    tiles = gradient.reshape(3, 2, 2, 2, 2, 2)
    expected = (tiles * (1 - l1 / norms).clamp_min(0) / 4.0).reshape(x.shape)
    torch.testing.assert_close(relevance, expected)
    zero_groups = (_tile_norms(relevance, 2) == 0).float().mean().item()
    assert 0.0 < zero_groups < 1.0


def test_quadratic_logit_gives_the_regularised_newton_step():
    # H = A: without sparsity, delta = (2 l2 I - A)^-1 g, g = A x + b.
    generator = torch.Generator().manual_seed(1)
    hessian = torch.randn(4, 4, generator=generator)
    hessian = (hessian + hessian.T) / 2
    linear = torch.randn(4, generator=generator)
    model = QuadraticClassifier(hessian, linear, (1, 2, 2))
    x = torch.rand(2, 1, 2, 2)
    l2 = torch.linalg.eigvalsh(hessian).abs().max().item()  # 2 l2 I - A is well conditioned
    relevance = SecondOrderSaliency(model, l2=l2, steps=400, score="logit").explain(x, 1.0)
    gradient = x.flatten(1) @ hessian + linear
    expected = torch.linalg.solve(2 * l2 * torch.eye(4) - hessian, gradient.T).T
    torch.testing.assert_close(relevance.flatten(1), expected, atol=1e-5, rtol=1e-4)


def test_isotropic_hessian_with_groups_has_a_closed_form():
    # H = a I separates over groups: delta_G = max(0, 1 - l1/|g_G|) g_G / (2 l2 - a).
    a, l1, l2 = 0.5, 0.3, 1.0
    linear = torch.randn(16)
    model = QuadraticClassifier(a * torch.eye(16), linear, (1, 4, 4))
    x = torch.rand(2, 1, 4, 4)
    explainer = SecondOrderSaliency(model, l1=l1, l2=l2, group_size=2, steps=200, score="logit")
    gradient = (a * x.flatten(1) + linear).view_as(x)
    expected = group_soft_threshold(gradient, l1, 2) / (2 * l2 - a)
    torch.testing.assert_close(explainer.explain(x, 1.0), expected, atol=1e-5, rtol=1e-4)


def test_log_posterior_hessian_is_rank_one_along_the_gradient():
    # s = log sigmoid(w.x + b): g = (1 - p) w, H = -p (1 - p) w w' (the paper's rank-one case),
    # so delta = (1 - p) w / (2 l2 + p (1 - p) |w|^2): the Hessian shrinks the gradient.
    model = LinearClassifier((1, 4, 4))
    x = torch.rand(2, 1, 4, 4)
    l2 = 0.5
    relevance = SecondOrderSaliency(model, l2=l2, steps=200).explain(x, 1.0)
    p = model(x).detach()[:, None]
    w = model.weight.detach().flatten()[None]
    expected = (1 - p) * w / (2 * l2 + p * (1 - p) * w.pow(2).sum())
    torch.testing.assert_close(relevance.flatten(1), expected, atol=1e-6, rtol=1e-4)


def test_map_points_toward_the_target_and_works_under_no_grad():
    model = LinearClassifier((1, 4, 4))
    x = torch.rand(2, 1, 4, 4)
    explainer = SecondOrderSaliency(model, score="logit", steps=5)
    with torch.no_grad():
        up, down = explainer.explain(x, 1.0), explainer.explain(x, 0.0)
    torch.testing.assert_close(up, -down)
    relevance = SecondOrderSaliency(TinyConvNet(3), l1=0.01, group_size=2, steps=10).explain(
        torch.rand(2, 3, 8, 8)
    )
    assert relevance.shape == (2, 3, 8, 8) and bool(relevance.isfinite().all())


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="l2 > 0"):
        SecondOrderSaliency(LinearClassifier(), l2=0.0)
    with pytest.raises(ConfigError, match="must divide the image size 8x8"):
        SecondOrderSaliency(LinearClassifier(), group_size=3).explain(torch.rand(1, 1, 8, 8))
