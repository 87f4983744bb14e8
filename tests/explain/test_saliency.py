import pytest
import torch

from cfgen.errors import ClassifierError, ConfigError, DataError
from cfgen.explain.saliency import SALIENCY_METHODS, CaptumSaliency
from cfgen.explain.score import posterior_logit
from tests.helpers import LinearClassifier, OneLayerReLU, TinyConvNet

# Small sample counts: these tests check the wiring, not the estimators' variance.
FAST = {"smoothgrad": {"samples": 4}, "lime": {"samples": 40}, "kernelshap": {"samples": 40}}


def _images(n: int = 3, channels: int = 1, size: int = 8) -> torch.Tensor:
    return torch.rand(n, channels, size, size) * 2 - 1


@pytest.mark.parametrize("method", sorted(SALIENCY_METHODS))
def test_every_method_returns_a_finite_map_shaped_like_x(method):
    x = _images(2, channels=3)
    explainer = CaptumSaliency(TinyConvNet(3), method, **FAST.get(method, {}))
    with torch.no_grad():  # metrics call explainers under no_grad; gradients must still flow
        relevance = explainer.explain(x)
    assert relevance.shape == x.shape
    assert bool(relevance.isfinite().all())
    assert relevance.abs().sum() > 0


@pytest.mark.parametrize("method", ["gradient", "occlusion", "lime"])
def test_an_empty_batch_is_refused_before_captum_sees_it(method):
    explainer = CaptumSaliency(TinyConvNet(3), method, **FAST.get(method, {}))
    with pytest.raises(DataError, match=r"no images to explain: the batch is empty \(shape \(0,"):
        explainer.explain(torch.zeros(0, 3, 8, 8))


def test_gradient_of_a_linear_model_is_its_weight_signed_by_direction():
    model = LinearClassifier((1, 8, 8))
    x = _images()
    weight = model.weight.detach().expand_as(x)
    explainer = CaptumSaliency(model, "gradient")
    torch.testing.assert_close(explainer.explain(x, 1.0), weight)
    torch.testing.assert_close(explainer.explain(x, 0.0), -weight)


def test_posterior_score_scales_the_gradient_by_the_sigmoid_slope():
    model = LinearClassifier((1, 8, 8))
    x = _images()
    p = model(x).detach().view(-1, 1, 1, 1)
    relevance = CaptumSaliency(model, "gradient", score="posterior").explain(x, 1.0)
    torch.testing.assert_close(relevance, p * (1 - p) * model.weight.detach().expand_as(x))


def test_integrated_gradients_complete_the_logit_difference_of_a_relu_net():
    # Completeness holds for the path integral; 256 steps bring the ReLU kinks' error to ~2e-4.
    model = TinyConvNet(1)
    with torch.no_grad():  # a larger head makes the logit difference worth checking
        model.head.weight.mul_(20)
    x = _images(2)
    relevance = CaptumSaliency(model, "integrated_gradients", steps=256).explain(x, 0.0)
    with torch.no_grad():
        gap = posterior_logit(model(x)) - posterior_logit(model(torch.zeros_like(x)))
    torch.testing.assert_close(relevance.flatten(1).sum(dim=1), -gap, atol=1e-3, rtol=1e-3)


def test_integrated_gradients_complete_the_posterior_difference_of_a_smooth_model():
    model = LinearClassifier((1, 8, 8))
    with torch.no_grad():
        model.weight.mul_(8)  # reach the sigmoid's curved part
    x = _images()
    relevance = CaptumSaliency(model, "integrated_gradients", score="posterior").explain(x, 1.0)
    with torch.no_grad():
        gap = model(x) - model(torch.zeros_like(x))
    torch.testing.assert_close(relevance.flatten(1).sum(dim=1), gap, atol=1e-4, rtol=1e-4)


def test_occlusion_of_single_pixels_on_a_linear_model_is_weight_times_input():
    model = LinearClassifier((1, 8, 8))
    x = _images()
    relevance = CaptumSaliency(model, "occlusion", window=1, stride=1).explain(x, 1.0)
    torch.testing.assert_close(relevance, model.weight.detach() * x)


@pytest.mark.parametrize(("method", "options"), [("kernelshap", {}), ("lime", {"alpha": 0.0})])
def test_surrogates_recover_a_linear_model_exactly(method, options):
    # The logit is linear in the on/off superpixel pattern, so the fitted surrogate is exact:
    # each pixel gets its superpixel's contribution sum(w * x) over the 4x4 tile.
    model = LinearClassifier((1, 8, 8))
    x = _images(2)
    relevance = CaptumSaliency(model, method, patch=4, samples=60, **options).explain(x, 1.0)
    contribution = (model.weight.detach() * x).reshape(2, 1, 2, 4, 2, 4).sum(dim=(3, 5))
    expected = contribution[:, :, :, None, :, None].expand(2, 1, 2, 4, 2, 4).reshape(x.shape)
    torch.testing.assert_close(relevance, expected, atol=1e-4, rtol=1e-4)


def test_gradcam_broadcasts_one_map_over_channels():
    relevance = CaptumSaliency(TinyConvNet(3), "gradcam").explain(_images(2, channels=3))
    torch.testing.assert_close(relevance[:, 0], relevance[:, 2])


def one_layer_relu_net(pixels: int = 16) -> OneLayerReLU:
    """Two hidden units, one with a positive and one with a negative head weight."""
    hidden = torch.randn(2, pixels) / pixels**0.5
    return OneLayerReLU(hidden, torch.tensor([2.0, -3.0]))


def test_smoothgrad_of_a_relu_net_is_the_gradient_averaged_over_its_gaussian_noise():
    # E over x + e, e ~ N(0, s^2 I), of head_h hidden_h [hidden_h . (x + e) > 0]
    #   = head_h hidden_h Phi(hidden_h . x / (s |hidden_h|)), for each unit h.
    model, stdev = one_layer_relu_net(), 0.4
    x = _images(2, size=4)
    hidden, head = model.hidden.weight.detach(), model.head.weight.detach().view(-1)
    normal = torch.distributions.Normal(0.0, 1.0)
    active = normal.cdf(x.flatten(1) @ hidden.T / (stdev * hidden.norm(dim=1)))  # (N, 2)
    expected = ((active * head) @ hidden).view_as(x)
    relevance = CaptumSaliency(model, "smoothgrad", stdev=stdev, samples=4000).explain(x, 1.0)
    torch.testing.assert_close(relevance, expected, atol=0.03, rtol=0)
    # ...and not the plain gradient at x, which differs from that average here.
    assert (model.logit_gradient(x) - expected).abs().max() > 0.1
    # Without noise it is the gradient exactly.
    exact = CaptumSaliency(model, "smoothgrad", stdev=0.0, samples=2).explain(x, 1.0)
    torch.testing.assert_close(exact, model.logit_gradient(x))


def test_guided_backprop_of_a_relu_net_keeps_the_units_that_push_toward_the_target():
    # Guided Backprop passes a ReLU's gradient only where it is positive: toward 1 only the unit
    # with head weight +2 contributes, toward 0 only the one with -3 (whose score is -logit).
    model = one_layer_relu_net()
    x = _images(4, size=4)
    hidden = model.hidden.weight.detach()
    on = (x.flatten(1) @ hidden.T > 0).float()  # (N, 2)
    explainer = CaptumSaliency(model, "guided_backprop")
    up = (2.0 * on[:, :1] * hidden[0]).view_as(x)
    down = (3.0 * on[:, 1:] * hidden[1]).view_as(x)
    torch.testing.assert_close(explainer.explain(x, 1.0), up)
    torch.testing.assert_close(explainer.explain(x, 0.0), down)


class PixelConvNet(torch.nn.Module):
    """1x1 conv (1 -> 2 channels, weights w), ReLU, global average pool, linear head a, sigmoid.

    Grad-CAM of the conv: alpha_k = a_k * (share of positions where w_k x > 0) / (H W) (the
    mean gradient of the pooled logit), map = sum_k alpha_k w_k x, at the input's resolution.
    """

    def __init__(self, weights: torch.Tensor, head: torch.Tensor) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1, bias=False)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(weights.view(2, 1, 1, 1))
            self.head.weight.copy_(head.view(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.relu(self.conv(x)).mean(dim=(2, 3))
        return torch.sigmoid(self.head(pooled)).squeeze(1)


def test_gradcam_of_a_one_conv_relu_net_has_its_closed_form():
    weights, head = torch.tensor([1.5, -0.5]), torch.tensor([2.0, 3.0])
    model = PixelConvNet(weights, head)
    x = _images(3, size=4)
    positive = (weights.view(1, 2, 1, 1) * x > 0).float().mean(dim=(2, 3))  # (N, 2)
    alpha = head * positive / 16  # (N, 2)
    expected = (alpha @ weights).view(-1, 1, 1, 1) * x
    torch.testing.assert_close(CaptumSaliency(model, "gradcam").explain(x, 1.0), expected)
    # Toward 0 the score is -logit: the same map with the opposite sign.
    torch.testing.assert_close(CaptumSaliency(model, "gradcam").explain(x, 0.0), -expected)


def test_methods_that_need_layers_say_so():
    with pytest.raises(ClassifierError, match="Conv2d"):
        CaptumSaliency(LinearClassifier(), "gradcam")
    with pytest.raises(ClassifierError, match="nn.ReLU"):
        CaptumSaliency(LinearClassifier(), "guided_backprop")
    with pytest.raises(ConfigError, match="not a submodule"):
        CaptumSaliency(TinyConvNet(), "gradcam", layer="nope")


def test_unknown_method_option_or_score_is_a_config_error():
    with pytest.raises(ConfigError, match="choose one of"):
        CaptumSaliency(TinyConvNet(), "deeplift")
    with pytest.raises(ConfigError, match=r"\['window_size'\].*'window'"):
        CaptumSaliency(TinyConvNet(), "occlusion", window_size=3)
    with pytest.raises(ConfigError, match="unknown score"):
        CaptumSaliency(TinyConvNet(), "gradient", score="softmax")
