"""LIME and KernelSHAP: local linear surrogates over square superpixels, from captum.

Both fit a linear model of the classifier's score on random on/off patterns of superpixels
(square `patch` x `patch`-pixel tiles shared by all channels; off = the `baseline` value), so one
query costs `samples` forward passes however large the image. captum's default surrogates are
scikit-learn models; cfgen fits the same weighted least squares in closed form with torch
(`WeightedRidge`), which is exact, fast and needs no extra dependency. LIME uses a small ridge
penalty (captum's default is a Lasso with alpha 0.01); KernelSHAP the plain regression its
theory asks for.
"""

import warnings
from collections.abc import Callable

import torch
from captum.attr import KernelShap, Lime
from torch import nn
from torch.utils.data import DataLoader

from cfgen.compat import exp_kernel_similarity, set_interpretable_model

Attribute = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _one_model_per_query(attribute: Attribute) -> Attribute:
    """captum warns that a batch fits one surrogate per query: that is what is wanted here."""

    def quiet(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "You are providing multiple inputs for Lime")
            return attribute(x, index)

    return quiet


class WeightedRidge:
    """captum's interpretable-model contract (`fit`, `representation`, `__call__`): weighted
    least squares with an (unpenalised) intercept, in closed form.

    Solves min_w sum_i s_i (y_i - w.x_i - b)^2 + alpha |w|^2 in float64 over the
    `(x, y, s)` batches captum's `fit` receives.
    """

    def __init__(self, alpha: float = 0.0) -> None:
        self.alpha = alpha
        self.weight = torch.zeros(1, 0)  # (outputs, features)
        self.bias = torch.zeros(1)

    def fit(self, train_data: DataLoader, **_: object) -> dict[str, float]:
        features, outputs, weights = [], [], []
        for batch in train_data:
            x, y, *w = batch
            features.append(x.double())
            outputs.append(y.double().reshape(len(x), -1))
            weights.append(w[0].double() if w else x.new_ones(len(x), dtype=torch.float64))
        x, y, s = torch.cat(features), torch.cat(outputs), torch.cat(weights).reshape(-1, 1)
        design = torch.cat([x, x.new_ones(len(x), 1)], dim=1)
        penalty = torch.eye(design.shape[1], dtype=x.dtype, device=x.device) * self.alpha
        penalty[-1, -1] = 0.0
        gram = design.T @ (s * design) + penalty
        # lstsq rather than solve: with few samples the Gram matrix can be singular.
        solution = torch.linalg.lstsq(gram, design.T @ (s * y)).solution
        self.weight, self.bias = solution[:-1].T.float(), solution[-1].float()
        return {}

    def representation(self) -> torch.Tensor:
        """The fitted weights (outputs, features), without the intercept (as captum's)."""
        return self.weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() @ self.weight.T + self.bias


def superpixel_mask(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Feature ids of square superpixels, shared by channels: (N, C, H, W) -> (1, C, H, W) long."""
    height, width = x.shape[-2:]
    rows = torch.arange(height, device=x.device) // patch
    cols = torch.arange(width, device=x.device) // patch
    ids = rows[:, None] * (-(-width // patch)) + cols[None, :]
    return ids.expand(1, x.shape[1], height, width).contiguous()


def _superpixel_surrogate(
    method: Lime | KernelShap, patch: int, samples: int, baseline: float
) -> Attribute:
    """Attribution over square superpixels with a fitted surrogate (LIME and KernelSHAP alike)."""

    def attribute(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return method.attribute(
            x,
            baselines=baseline,
            target=index,
            feature_mask=superpixel_mask(x, patch),
            n_samples=samples,
            perturbations_per_eval=min(samples, 64),
        )

    return _one_model_per_query(attribute)


def lime_attribute(
    model: nn.Module,
    patch: int = 4,
    samples: int = 200,
    alpha: float = 0.01,
    baseline: float = 0.0,
    kernel_width: float = 1.0,
) -> Attribute:
    """LIME: exponential-kernel-weighted ridge surrogate over superpixels."""
    lime = Lime(
        model,
        interpretable_model=WeightedRidge(alpha),
        similarity_func=exp_kernel_similarity(kernel_width),
    )

    return _superpixel_surrogate(lime, patch, samples, baseline)


def kernel_shap_attribute(
    model: nn.Module, patch: int = 4, samples: int = 200, baseline: float = 0.0
) -> Attribute:
    """KernelSHAP: Shapley-kernel-weighted linear regression over superpixels."""
    # captum's own surrogate for KernelSHAP is a scikit-learn regression: the closed-form one
    # solves the same problem.
    shap = set_interpretable_model(KernelShap(model), WeightedRidge(alpha=0.0))

    return _superpixel_surrogate(shap, patch, samples, baseline)
