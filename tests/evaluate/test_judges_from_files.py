"""The judges loaded from files, as `cfgen evaluate` builds them."""

import pytest
import torch

from cfgen.data.synthetic import FACTOR_NAMES, SyntheticFaces
from cfgen.evaluate.loading import load_inputs
from cfgen.evaluate.suite import SuiteConfig, run_suite
from cfgen.io import save_bundle
from cfgen.models.oracle import BUNDLE_KIND, FactorOracle
from tests.helpers import export_tiny_explainer, judged_like


@pytest.fixture
def files(tmp_path):
    explainer, classifier, _ = export_tiny_explainer(tmp_path, size=16)
    oracle = FactorOracle(FACTOR_NAMES, width=4, num_features=8)
    save_bundle(tmp_path / "oracle.pt", BUNDLE_KIND, oracle.config(), oracle.state_dict())
    return str(explainer), classifier, str(tmp_path / "oracle.pt")


def test_a_judge_file_that_is_the_explained_classifier_agrees_with_it(tmp_path, files):
    explainer, classifier, oracle = files
    config = SuiteConfig(
        explainer=explainer,
        oracle=oracle,
        judge=classifier,
        out=str(tmp_path / "eval"),
        n_queries=6,
        n_real=20,
        baselines=[],
        adversarial=["fgsm"],
        counterfactual_metrics=["shift", "judge", "validity", "identity", "realism"],
        logger="none",
    )
    inputs = load_inputs(config)
    assert inputs.context.target_reading.name == "smile"
    reference = SyntheticFaces(20, 16, seed=0, split="val")
    torch.testing.assert_close(inputs.context.real_labels, reference.labels[:, 0])
    results, _ = run_suite(config, inputs)
    for name in ("pe", "fgsm"):
        metrics = results["methods"][name]["metrics"]
        shift, judge = metrics["shift"], metrics["judge"]
        assert judge == pytest.approx(judged_like(shift))
        assert {"reading_flip", "reading_spearman", "reading_change", "reading_change_real"} <= set(
            metrics["validity"]
        )
        assert "sfid" in metrics["realism"]
    # FGSM leaves a query alone when asked for its own posterior.
    assert results["methods"]["fgsm"]["metrics"]["identity"]["identity_l1"] == 0.0
