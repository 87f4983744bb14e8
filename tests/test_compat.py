"""Every entry of `cfgen.compat` still holds on the installed versions of its dependencies.

A failure here means a new release changed what cfgen relies on: update `cfgen/compat.py` (and
the version cap in `pyproject.toml`), never the assertion.
"""

import math

import torch
from captum.attr import KernelShap, Lime

from cfgen.compat import exp_kernel_similarity, set_interpretable_model
from cfgen.explain.surrogate import WeightedRidge


class RecordingSurrogate(WeightedRidge):
    """The closed-form surrogate, remembering the samples captum fitted it on."""

    def fit(self, train_data, **kwargs):
        self.samples = sum(len(batch[0]) for batch in train_data)
        return super().fit(train_data, **kwargs)


def linear_score(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1) @ torch.tensor([1.0, -2.0, 0.5, 3.0])


def test_exp_kernel_similarity_is_the_cosine_exponential_kernel():
    query = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    perturbed = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # cosine distance 1 - 1/sqrt(2)
    distance = 1.0 - 1.0 / math.sqrt(2.0)
    for width in (0.25, 1.0, 3.0):
        similarity = float(exp_kernel_similarity(width)(query, perturbed, None))
        expected = math.exp(-(distance**2) / (2 * width**2))
        torch.testing.assert_close(similarity, expected, rtol=1e-6, atol=0.0)


def test_kernel_shap_fits_the_surrogate_it_is_given():
    surrogate = RecordingSurrogate()
    shap = set_interpretable_model(KernelShap(linear_score), surrogate)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    attribution = shap.attribute(x, baselines=0.0, n_samples=40)
    assert surrogate.samples == 40  # captum fitted ours, not its scikit-learn regression
    # The score is linear: KernelSHAP's values are exactly weight * (x - baseline).
    torch.testing.assert_close(attribution, torch.tensor([[1.0, -4.0, 1.5, 12.0]]))


def test_lime_fits_the_surrogate_it_is_given_with_the_kernel_weights():
    surrogate = RecordingSurrogate(alpha=0.0)
    lime = Lime(
        linear_score, interpretable_model=surrogate, similarity_func=exp_kernel_similarity(1.0)
    )
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    attribution = lime.attribute(x, baselines=0.0, n_samples=60)
    assert surrogate.samples == 60
    torch.testing.assert_close(attribution, torch.tensor([[1.0, -4.0, 1.5, 12.0]]))
