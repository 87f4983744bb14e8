"""sFID (ACE's split protocol) on sets whose answer is known, and realism's staging: each image
set is encoded once."""

import numpy as np
import pytest
import torch
from scipy import linalg

from cfgen.evaluate.context import EvalContext
from cfgen.evaluate.realism import FeatureExtractor, fid_of_features, sfid
from cfgen.evaluate.suite import SuiteConfig, SuiteInputs, run_suite
from tests.helpers import ExactCounterfactual, RegionClassifier


def _reference_fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID with scipy's matrix square root."""
    a, b = a.double().numpy(), b.double().numpy()
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def test_sfid_matches_a_reference_on_the_same_splits():
    real, fake = torch.randn(40, 3), torch.randn(40, 3) * 1.5 + 0.3
    generator = torch.Generator().manual_seed(7)
    expected = []
    for _ in range(3):
        a, b = torch.randperm(40, generator=generator).tensor_split(2)
        expected += [_reference_fid(real[a], fake[b]), _reference_fid(real[b], fake[a])]
    measured = sfid(real, fake, splits=3, seed=7)
    torch.testing.assert_close(measured, float(np.mean(expected)), rtol=1e-5, atol=1e-6)


def test_a_copy_of_the_queries_is_not_rewarded():
    queries = torch.randn(60, 4)
    assert fid_of_features(queries, queries) == pytest.approx(0.0, abs=1e-6)
    copy = sfid(queries, queries.clone())
    # A copy scores what two independent halves of the real set score: clearly above 0.
    generator = torch.Generator().manual_seed(0)
    halves = []
    for _ in range(10):
        a, b = torch.randperm(60, generator=generator).tensor_split(2)
        halves.append(_reference_fid(queries[a], queries[b]))
    torch.testing.assert_close(copy, float(np.mean(halves)), rtol=1e-5, atol=1e-6)
    assert copy > 0.1


def test_a_constant_shift_adds_its_squared_length():
    # For the halves A, B of any split, |mA - mB - d|² + |mB - mA - d|² = 2|mA - mB|² + 2|d|²,
    # and a shift leaves covariances alone: sFID(x, x + d) = sFID(x, x) + |d|², exactly.
    queries = torch.randn(50, 3, dtype=torch.float64)
    shift = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(
        sfid(queries, queries + shift), sfid(queries, queries) + 5.25, rtol=1e-6, atol=1e-6
    )


def test_sfid_refuses_unpaired_sets():
    with pytest.raises(ValueError, match="pairs"):
        sfid(torch.randn(10, 3), torch.randn(9, 3))


class CountingFeatures(torch.nn.Module):
    """Flattened pixels as features; counts the images it has encoded."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.seen = 0
        self.num_features = dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen += images.shape[0]
        return images.flatten(1).double()


def test_the_real_set_and_the_queries_are_encoded_once_for_every_method_and_bin(tmp_path):
    classifier = RegionClassifier()
    counting = CountingFeatures(3 * 8 * 8)
    n_queries, n_real, n_bins = 6, 30, 10
    real = torch.randn(n_real, 3, 8, 8) * 0.3
    context = EvalContext(
        classifier=classifier,
        queries=torch.randn(n_queries, 3, 8, 8) * 0.3,
        features=FeatureExtractor(counting, counting.num_features),
        real_images=real,
        real_posteriors=classifier(real),
        batch_size=4,
    )
    methods = {"one": ExactCounterfactual(classifier), "two": ExactCounterfactual(classifier)}
    config = SuiteConfig(
        explainer="unused.pt",
        out=str(tmp_path),
        counterfactual_metrics=["realism"],
        map_metrics=[],
        logger="none",
    )
    results, _ = run_suite(config, SuiteInputs(context, methods, {}))
    for name in methods:
        assert "sfid" in results["methods"][name]["metrics"]["realism"]
    # Real set and queries once in all; each method's strip once (all bins, KID, sFID).
    assert counting.seen == n_real + n_queries + 2 * n_bins * n_queries
