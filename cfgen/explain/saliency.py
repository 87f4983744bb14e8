"""Saliency-map baselines, all from captum, behind the one `Explainer` contract.

`CaptumSaliency(classifier, method, score="logit", **options)` builds the captum attribution of
`SALIENCY_METHODS[method]` on `DirectionScore(classifier, score)` and picks, per query, the
column of the direction asked for (see `cfgen.explain.score`): every map is signed so that
positive = evidence toward the target posterior (toward 1 when target >= f(x), else toward 0).

Each registry entry is a factory `(model, **options) -> attribute(x, index) -> (N, C, H, W)`;
its keyword arguments, with their defaults, are the method's options. Defaults are chosen for
images in [-1, 1] of 16-128 px on a CPU: SmoothGrad noise 0.3 (15 % of the range, as in the
SmoothGrad paper), baselines 0 (mid-grey), 4x4-px superpixels for LIME / KernelSHAP, 4x4-px
occlusion windows without overlap (one forward pass per window: overlap multiplies the cost).
"""

import warnings
from collections.abc import Callable

import torch
from captum.attr import (
    GuidedBackprop,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from cfgen.errors import ClassifierError, ConfigError
from cfgen.explain.base import Classifier, Explainer
from cfgen.explain.options import check_options, factory_options
from cfgen.explain.score import DirectionScore, direction_index
from cfgen.explain.surrogate import Attribute, kernel_shap_attribute, lime_attribute


def _gradient(model: nn.Module) -> Attribute:
    """d score / d x, signed (captum's `abs=False`)."""
    saliency = Saliency(model)
    return lambda x, index: saliency.attribute(x, target=index, abs=False)


def _smoothgrad(model: nn.Module, stdev: float = 0.3, samples: int = 16) -> Attribute:
    """Gradient averaged over `samples` copies of x with Gaussian noise of std `stdev`."""
    tunnel = NoiseTunnel(Saliency(model))

    def attribute(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return tunnel.attribute(
            x, nt_type="smoothgrad", nt_samples=samples, stdevs=stdev, target=index, abs=False
        )

    return attribute


def _integrated_gradients(model: nn.Module, steps: int = 32, baseline: float = 0.0) -> Attribute:
    """(x - baseline) times the mean gradient on the straight path; sums to the score gap."""
    gradients = IntegratedGradients(model)
    return lambda x, index: gradients.attribute(x, baselines=baseline, target=index, n_steps=steps)


def _guided_backprop(model: nn.Module) -> Attribute:
    """Gradient with negative signals stopped at every nn.ReLU on the way back."""
    if not any(isinstance(module, nn.ReLU) for module in model.modules()):
        raise ClassifierError(
            "Guided Backprop overrides the gradient of nn.ReLU modules, and the classifier has "
            "none (it must be an nn.Module using nn.ReLU layers, not F.relu); pick another method"
        )
    guided = GuidedBackprop(model)

    def attribute(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            # captum announces its (temporary) ReLU hooks on every call.
            warnings.filterwarnings("ignore", "Setting backward hooks on ReLU")
            return guided.attribute(x, target=index)

    return attribute


def _find_layer(model: nn.Module, layer: str | None) -> nn.Module:
    """The named submodule of the classifier, or its last Conv2d."""
    if layer is not None:
        try:
            return model.classifier.get_submodule(layer)
        except AttributeError:
            raise ConfigError(
                f"Grad-CAM layer {layer!r} is not a submodule of the classifier"
            ) from None
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise ClassifierError(
            "Grad-CAM needs a convolution layer and the classifier has no nn.Conv2d; "
            "pass layer='<name of a submodule>' or pick another method"
        )
    return convolutions[-1]


def _gradcam(model: nn.Module, layer: str | None = None) -> Attribute:
    """Grad-CAM of `layer` (default: the last Conv2d), bilinearly upsampled to (H, W).

    Kept signed (no final ReLU) like every other map; the same map for every channel.
    """
    cam = LayerGradCam(model, _find_layer(model, layer))

    def attribute(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        coarse = cam.attribute(x, target=index)  # (N, 1, h, w)
        fine = LayerAttribution.interpolate(coarse, tuple(x.shape[-2:]), "bilinear")
        return fine.expand_as(x).contiguous()

    return attribute


def _occlusion(
    model: nn.Module, window: int = 4, stride: int = 4, baseline: float = 0.0
) -> Attribute:
    """Score drop when a `window` x `window` patch (all channels) is set to `baseline`."""
    occlusion = Occlusion(model)

    def attribute(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        return occlusion.attribute(
            x,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            baselines=baseline,
            target=index,
            perturbations_per_eval=16,
        )

    return attribute


SALIENCY_METHODS: dict[str, Callable[..., Attribute]] = {
    "gradient": _gradient,
    "smoothgrad": _smoothgrad,
    "integrated_gradients": _integrated_gradients,
    "guided_backprop": _guided_backprop,
    "gradcam": _gradcam,
    "occlusion": _occlusion,
    "lime": lime_attribute,
    "kernelshap": kernel_shap_attribute,
}


class CaptumSaliency(Explainer):
    """A captum saliency method on the classifier's score toward the target.

    `explain(x, target)`: x (N, C, H, W) -> (N, C, H, W), positive = evidence toward target.
    """

    def __init__(
        self, classifier: Classifier, method: str, score: str = "logit", **options
    ) -> None:
        super().__init__(classifier)
        if method not in SALIENCY_METHODS:
            raise ConfigError(
                f"unknown saliency method {method!r}; choose one of {sorted(SALIENCY_METHODS)}"
            )
        check_options(method, factory_options(SALIENCY_METHODS[method]), options)
        self.method = method
        self.model = DirectionScore(classifier, score)
        self._attribute = SALIENCY_METHODS[method](self.model, **options)

    def explain(self, x: torch.Tensor, target: float | torch.Tensor | None = None) -> torch.Tensor:
        index = direction_index(self.classifier, x, target)
        # captum needs gradients even when the caller (e.g. a metric) runs under no_grad.
        with torch.enable_grad():
            attribution = self._attribute(x.detach().requires_grad_(), index)
        return attribution.detach()
