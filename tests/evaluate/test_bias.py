import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.evaluate.bias import BiasConfig, bias_experiment, bias_finding, confounder_drift
from cfgen.evaluate.context import EvalContext
from cfgen.evaluate.loading import SuiteConfig, SuiteInputs
from cfgen.evaluate.suite import _run_bias
from cfgen.explain.strip import Strip
from tests.helpers import ExactCounterfactual, RegionClassifier

FACTORS = ["smile", "glasses"]


def oracle(x: torch.Tensor) -> torch.Tensor:
    """Factors by construction: smile = mean of channel 0, glasses = mean of channel 1."""
    return torch.stack([x[:, 0].mean(dim=(1, 2)), x[:, 1].mean(dim=(1, 2))], dim=1)


class GlassesAdding(ExactCounterfactual):
    """Reaches the target and sets channel 1 (the glasses) to the target posterior too."""

    def counterfactual(self, x, target):
        out = super().counterfactual(x, target)
        out[:, 1] = target.view(-1, 1, 1)
        return out


def strips(explainer, queries):
    return explainer.exaggerate(queries, n_bins=10)


def test_drift_of_a_strip_that_sets_the_confounder_to_the_target():
    classifier = RegionClassifier()
    queries = torch.randn(6, 3, 8, 8) * 0.1
    queries[:, 1] = 0.0
    strip = strips(GlassesAdding(classifier), queries)
    drift = confounder_drift(strip, queries, oracle, index=1)
    # Channel 1 goes from bin centre 0.05 (first frame) to 0.95 (last frame).
    assert drift["drift"] == pytest.approx(0.9, abs=1e-5)
    assert drift["signed_change"] == pytest.approx(0.9, abs=1e-5)
    torch.testing.assert_close(torch.tensor(drift["curve"]), (torch.arange(10) + 0.5) / 10)


def test_biased_classifier_is_detected_and_named():
    classifier = RegionClassifier()
    queries = torch.randn(6, 3, 8, 8) * 0.1
    queries[:, 1] = 0.0
    result = bias_experiment(
        strips(GlassesAdding(classifier), queries),
        strips(ExactCounterfactual(classifier), queries),
        queries,
        oracle,
        FACTORS,
    )
    assert result["detected"] is True
    assert result["unbiased"]["drift"] == pytest.approx(0.0, abs=1e-6)
    assert result["finding"].startswith(
        "the biased classifier's strips add glasses: drift 0.90 vs 0.00"
    )


def test_similar_drifts_are_no_finding():
    detected, finding = bias_finding(
        {"drift": 0.08, "signed_change": 0.08}, {"drift": 0.05, "signed_change": 0.0}, "glasses"
    )
    assert detected is False
    assert "no bias found" in finding and "0.08 vs 0.05" in finding


def test_unknown_confounder_is_a_config_error():
    strip = Strip(torch.zeros(2, 1, 3, 4, 4), torch.arange(2), torch.zeros(2, 1), torch.zeros(1))
    with pytest.raises(ConfigError, match="hat"):
        bias_experiment(strip, strip, torch.zeros(1, 3, 4, 4), oracle, FACTORS, confounder="hat")


class GlassesOnly(ExactCounterfactual):
    """A confounded explainer's strips: channel 1 (the glasses) set to the target, channel 0
    (what the explained attribute's oracle and the judge read) left as it was."""

    def counterfactual(self, x, target):
        out = x.clone()
        out[:, 1] = target.view(-1, 1, 1)
        return out


def test_the_suite_judges_the_bias_experiments_strips_by_oracle_and_judge():
    classifier = RegionClassifier()
    # Queries without a smile (channel 0 well below the region's 0.5 crossing), no glasses.
    queries = torch.full((6, 3, 8, 8), -0.5)
    queries[:, 1] = 0.0

    def reads_smile_and_glasses(x):
        return torch.stack([classifier(x), x[:, 1].mean(dim=(1, 2)).clamp(0, 1)], dim=1)

    context = EvalContext(
        classifier=classifier,
        queries=queries,
        factor_names=FACTORS,
        oracle=reads_smile_and_glasses,
        judge=classifier,
        batch_size=4,
    )
    config = SuiteConfig("pe.pt", bias=BiasConfig(biased_explainer="biased.pt"))
    explainers = (GlassesOnly(classifier), ExactCounterfactual(classifier))
    result = _run_bias(config, SuiteInputs(context, {}, {}, explainers))
    # By construction: the unbiased strips move the smile across 0.5 (oracle and judge flip on
    # every strip); the biased ones change only the glasses (neither flips on any).
    assert result["detected"] is True
    unbiased, biased = result["unbiased"], result["biased"]
    assert unbiased["reading_flip"] == 1.0 and unbiased["judge_flip_rate"] == 1.0
    assert biased["reading_flip"] == 0.0 and biased["judge_flip_rate"] == 0.0
    assert result["finding"].endswith(
        "; the oracle's reading of the target flips on 0% of the biased classifier's strips (100% "
        "of the unbiased one's), the judge flips on 0% of the biased classifier's strips (100% of "
        "the unbiased one's)"
    )


def test_bias_strips_without_a_judge_say_so():
    classifier = RegionClassifier()
    queries = torch.randn(4, 3, 8, 8) * 0.1
    context = EvalContext(
        classifier=classifier, queries=queries, factor_names=FACTORS, oracle=oracle
    )
    explainers = (GlassesAdding(classifier), ExactCounterfactual(classifier))
    result = _run_bias(SuiteConfig("pe.pt"), SuiteInputs(context, {}, {}, explainers))
    assert "no judge given" in result["biased"]["skipped"]["judge"]
    assert "judge_flip_rate" not in result["biased"] and "the judge" not in result["finding"]
