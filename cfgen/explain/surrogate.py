"""LIME and KernelSHAP: local linear surrogates over square superpixels, from captum.

Both fit a linear model of the classifier's score on random on/off patterns of superpixels
(square `patch` x `patch`-pixel tiles shared by all channels; off = the `baseline` value), so one
query costs `samples` forward passes however large the image. captum's default surrogates are
scikit-learn models; cfgen fits the same weighted least squares in closed form with torch
(`weighted_ridge`), which is exact, fast and needs no extra dependency. LIME uses a small ridge
penalty (captum's default is a Lasso with alpha 0.01); KernelSHAP the plain regression its
theory asks for.
"""

import warnings
from collections.abc import Callable

import torch
from captum._utils.models.linear_model import LinearModel
from captum.attr import KernelShap, Lime
from torch import nn
from torch.utils.data import DataLoader

Attribute = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _one_model_per_query(attribute: Attribute) -> Attribute:
    """captum warns that a batch fits one surrogate per query: that is what is wanted here."""

    def quiet(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "You are providing multiple inputs for Lime")
            return attribute(x, index)

    return quiet


def weighted_ridge(
    model: LinearModel, dataloader: DataLoader, construct_kwargs: dict, **_: object
) -> dict[str, float]:
    """captum train function: weighted least squares with an (unpenalised) intercept.

    Solves min_w sum_i s_i (y_i - w.x_i - b)^2 + alpha |w|^2 in float64 and loads (w, b) into
    `model`. `construct_kwargs` holds `alpha`.
    """
    features, outputs, weights = [], [], []
    for batch in dataloader:
        x, y, *w = batch
        features.append(x.double())
        outputs.append(y.double().reshape(len(x), -1))
        weights.append(w[0].double() if w else x.new_ones(len(x), dtype=torch.float64))
    x, y, s = torch.cat(features), torch.cat(outputs), torch.cat(weights).reshape(-1, 1)
    design = torch.cat([x, x.new_ones(len(x), 1)], dim=1)
    penalty = torch.eye(design.shape[1], dtype=x.dtype, device=x.device)
    penalty = penalty * construct_kwargs.get("alpha", 0.0)
    penalty[-1, -1] = 0.0
    gram = design.T @ (s * design) + penalty
    # lstsq rather than solve: with few samples the Gram matrix can be singular.
    solution = torch.linalg.lstsq(gram, design.T @ (s * y)).solution
    model._construct_model_params(
        weight_values=solution[:-1].T.float(), bias_value=solution[-1].float()
    )
    return {}


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
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    lime = Lime(
        model,
        interpretable_model=LinearModel(train_fn=weighted_ridge, alpha=alpha),
        similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width),
    )

    return _superpixel_surrogate(lime, patch, samples, baseline)


def kernel_shap_attribute(
    model: nn.Module, patch: int = 4, samples: int = 200, baseline: float = 0.0
) -> Attribute:
    """KernelSHAP: Shapley-kernel-weighted linear regression over superpixels."""
    shap = KernelShap(model)
    # Swap captum's scikit-learn regression for the closed-form one (same problem).
    shap.interpretable_model = LinearModel(train_fn=weighted_ridge, alpha=0.0)

    return _superpixel_surrogate(shap, patch, samples, baseline)
