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
from tests.helpers import LinearClassifier, TinyConvNet


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
