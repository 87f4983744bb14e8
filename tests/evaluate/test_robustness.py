import pytest
import scipy.stats
import torch

from cfgen.errors import ClassifierError
from cfgen.evaluate.robustness import (
    SIMILARITIES,
    cascading_randomisation,
    infidelity,
    max_sensitivity,
    randomisable_layers,
)
from cfgen.explain.registry import build_explainer
from tests.helpers import LinearClassifier, OneLayerReLU, TinyConvNet


def _images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8) * 2 - 1


def test_a_constant_explainer_has_zero_max_sensitivity():
    sensitivity = max_sensitivity(lambda x, target: torch.ones_like(x), _images())
    torch.testing.assert_close(sensitivity, torch.zeros(4))


def test_gradient_of_a_linear_model_has_zero_and_of_a_relu_net_positive_sensitivity():
    linear, net = LinearClassifier((1, 8, 8)), TinyConvNet(1)
    x, target = _images(), torch.ones(4)
    flat = max_sensitivity(build_explainer("gradient", linear).explain, x, target)
    torch.testing.assert_close(flat, torch.zeros(4), atol=1e-6, rtol=0)
    bumpy = max_sensitivity(build_explainer("gradient", net).explain, x, target, radius=0.2)
    assert bool((bumpy > 1e-3).all())
    # A single query's target is expanded for captum's perturbed batch too.
    single = max_sensitivity(build_explainer("gradient", net).explain, x[:1], torch.ones(1))
    assert single.shape == (1,)


def test_gradient_times_perturbation_is_exact_on_a_linear_logit():
    # s(x) - s(x - I) = w . I for the logit of a linear classifier: infidelity 0.
    model = LinearClassifier((1, 8, 8))
    x = _images()
    exact = infidelity(model, build_explainer("gradient", model).explain, x)
    torch.testing.assert_close(exact, torch.zeros(4), atol=1e-10, rtol=0)
    # A map that is off by a known vector d has infidelity E[(I . d)^2] = noise^2 |d|^2.
    offset = torch.full((1, 8, 8), 0.1)
    wrong = infidelity(
        model,
        lambda x, t: (model.weight.detach() + offset).expand_as(x),
        x,
        1.0,
        noise=0.1,
        samples=2000,
    )
    expected = torch.full((4,), 0.1**2 * offset.pow(2).sum().item())
    torch.testing.assert_close(wrong, expected, rtol=0.1, atol=0)


def test_layers_are_listed_input_to_output():
    names = [name for name, _ in randomisable_layers(TinyConvNet(1))]
    assert names == ["features.0", "features.2", "head"]


def test_randomising_the_model_decorrelates_the_gradient_map():
    model = TinyConvNet(1)
    x = _images(6)
    rows = cascading_randomisation(model, "gradient", x)
    assert [row["layer"] for row in rows] == ["head", "features.2", "features.0"]
    assert set(rows[0]) == {"layer", *SIMILARITIES}
    assert abs(rows[-1]["spearman"]) < 0.5
    # The original model is untouched: its map correlates perfectly with itself.
    again = cascading_randomisation(model, "gradient", x)
    assert again == rows


def test_a_map_that_ignores_the_model_passes_unchanged_through_randomisation():
    x = _images()
    rows = cascading_randomisation(TinyConvNet(1), lambda model: lambda x, t: x.clone(), x)
    for row in rows:
        assert row["spearman"] == pytest.approx(1.0)
        assert row["ssim"] == pytest.approx(1.0, abs=1e-4)


def test_rank_similarity_matches_scipy():
    first, second = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    expected = [
        scipy.stats.spearmanr(a.flatten(), b.flatten()).statistic
        for a, b in zip(first, second, strict=True)
    ]
    torch.testing.assert_close(
        SIMILARITIES["spearman_signed"](first, second), torch.tensor(expected).float()
    )


def test_a_model_without_weight_layers_is_a_classifier_error():
    with pytest.raises(ClassifierError, match="no layer with a weight"):
        cascading_randomisation(torch.nn.Sequential(torch.nn.Flatten()), "gradient", _images())


def test_max_sensitivity_of_a_relu_gradient_is_zero_off_its_kinks_and_the_jump_on_one():
    # Unit 0 reads pixel 0 only; unit 1 reads pixels 1-3 with weight 1. With pixel 0 at exactly
    # 0 the query sits on unit 0's kink: a perturbation with d_0 > 0 switches it on and adds
    # head_0 * hidden_0 to the gradient (head_1 * hidden_1, since PyTorch's ReLU has slope 0 at
    # 0): max-sensitivity = |2 e_0| / |-3 (0, 1, 1, 1)| = 2 / (3 sqrt 3). Unit 1 (input 1.5,
    # far beyond the radius) never switches.
    hidden = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    model = OneLayerReLU(hidden, torch.tensor([2.0, -3.0]))
    explain = build_explainer("gradient", model).explain
    on_kink = torch.tensor([0.0, 0.5, 0.5, 0.5]).view(1, 1, 2, 2)
    away = torch.tensor([0.4, 0.5, 0.5, 0.5]).view(1, 1, 2, 2)
    x = torch.cat([on_kink, away])
    sensitivity = max_sensitivity(explain, x, torch.ones(2), radius=0.1, samples=30)
    torch.testing.assert_close(sensitivity, torch.tensor([2 / (3 * 3**0.5), 0.0]))


def test_max_sensitivity_of_the_input_as_map_is_the_radius_over_the_input():
    # e(x) = x: |e(x + d) - e(x)| / |e(x)| = |d| / |x|, d uniform in [-r, r]; on one pixel the
    # maximum over many draws approaches r / |x|.
    x = torch.tensor([0.5, -0.25]).view(2, 1, 1, 1)
    sensitivity = max_sensitivity(lambda x, target: x.clone(), x, radius=0.1, samples=500)
    torch.testing.assert_close(sensitivity, torch.tensor([0.2, 0.4]), rtol=0.02, atol=0)
    assert bool((sensitivity <= torch.tensor([0.2, 0.4]) + 1e-6).all())


def test_cascading_randomisation_of_a_relu_net_follows_its_closed_form():
    # The gradient map of OneLayerReLU is known from its weights; randomising the head, then the
    # head and the hidden layer (seeded as the check seeds them) gives two known maps, whose rank
    # correlations with the original one scipy computes.
    hidden = torch.randn(8, 64) / 8
    model = OneLayerReLU(hidden, torch.tensor([1.0, -2.0, 0.5, 1.5, -1.0, 0.25, -0.5, 2.0]))
    x = _images(5)
    original = model.logit_gradient(x)
    expected_model = OneLayerReLU(hidden, model.head.weight.detach())
    torch.manual_seed(7)
    expected_model.head.reset_parameters()
    after_head = expected_model.logit_gradient(x)
    expected_model.hidden.reset_parameters()
    after_both = expected_model.logit_gradient(x)
    rows = cascading_randomisation(model, "gradient", x, seed=7)
    assert [row["layer"] for row in rows] == ["head", "hidden"]
    for row, randomised in zip(rows, (after_head, after_both), strict=True):
        # A query whose hidden units are all off has a zero map; its correlation counts as 0
        # (the documented convention), the others are scipy's.
        expected = [
            0.0
            if a.abs().max() == 0 or b.abs().max() == 0
            else scipy.stats.spearmanr(a.abs().flatten(), b.abs().flatten()).statistic
            for a, b in zip(original, randomised, strict=True)
        ]
        assert sum(value != 0.0 for value in expected) >= 4
        assert row["spearman"] == pytest.approx(sum(expected) / len(expected), abs=1e-6)
    # The model itself is untouched.
    torch.testing.assert_close(model.logit_gradient(x), original)
