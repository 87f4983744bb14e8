import pytest
import torch

from cfgen.errors import WeightsMissingError
from cfgen.evaluate import closeness, scoring
from cfgen.evaluate.realism import FeatureExtractor
from cfgen.evaluate.scoring import EvalContext, NoGroundTruth, SaliencyOutput
from tests.helpers import ExactCounterfactual, MaskSaliency, RegionClassifier


def oracle(x: torch.Tensor) -> torch.Tensor:
    """Two factors by construction: smile (what the classifier reads) and glasses (channel 1)."""
    smile = RegionClassifier()(x)
    glasses = x[:, 1].mean(dim=(1, 2)).clamp(0, 1)
    return torch.stack([smile, glasses], dim=1)


def context(n: int = 8) -> EvalContext:
    classifier = RegionClassifier()
    queries = torch.randn(n, 3, 8, 8) * 0.3
    real = torch.randn(32, 3, 8, 8) * 0.3
    masks = torch.cat([classifier.mask, 1 - classifier.mask], dim=1).expand(n, 2, 8, 8)
    return EvalContext(
        classifier=classifier,
        queries=queries,
        factors=torch.rand(n, 2),
        masks=masks,
        factor_names=["smile", "glasses"],
        region_names=["mouth", "rest"],
        oracle=oracle,
        features=FeatureExtractor(torch.nn.Flatten(), 3 * 8 * 8),
        real_images=real,
        real_posteriors=classifier(real),
        batch_size=4,
    )


def test_exact_counterfactual_changes_only_its_region():
    ctx = context()
    strip = ExactCounterfactual(ctx.classifier).exaggerate(ctx.queries)
    scores = {
        name: scoring.COUNTERFACTUAL_SCORES[name](ctx, strip)
        for name in ("preservation", "closeness", "localisation", "faithfulness", "realism")
    }
    assert scores["preservation"]["drift_glasses"] == pytest.approx(0.0, abs=1e-6)
    assert scores["preservation"]["mnac"] == pytest.approx(0.0)
    assert scores["closeness"]["l1_outside"] == pytest.approx(0.0, abs=1e-6)
    assert scores["closeness"]["ssim_outside"] <= 1.0 and scores["closeness"]["l1"] > 0
    assert scores["localisation"]["relevance_mass"] == pytest.approx(1.0)
    assert scores["localisation"]["pointing_game"] == pytest.approx(1.0)
    # Inserting the counterfactual's pixels flips the decision: the transition curve ends at +1.
    assert -1.0 <= scores["faithfulness"]["cout"] <= 1.0
    assert {"fid_overall", "fid_present", "fid_absent", "kid_overall"} <= set(scores["realism"])


def test_saliency_groups_score_a_perfect_map_as_perfect():
    ctx = context()
    ctx.reference_counterfactual = scoring.far_end(
        ExactCounterfactual(ctx.classifier).exaggerate(ctx.queries)
    )
    method = MaskSaliency(ctx.classifier)
    output = SaliencyOutput(maps=method.explain(ctx.queries), explain=method.explain)
    local = scoring.SALIENCY_SCORES["localisation"](ctx, output)
    assert local == {"relevance_mass": 1.0, "pointing_game": 1.0, "region_share": 9 / 64}
    faithful = scoring.SALIENCY_SCORES["faithfulness"](ctx, output)
    assert set(faithful) == {"deletion_auc", "insertion_auc", "cout"}


def test_missing_ground_truth_is_a_skip_reason():
    ctx = context()
    ctx.masks, ctx.oracle = None, None
    strip = ExactCounterfactual(ctx.classifier).exaggerate(ctx.queries)
    with pytest.raises(NoGroundTruth, match="masks"):
        scoring.COUNTERFACTUAL_SCORES["localisation"](ctx, strip)
    with pytest.raises(NoGroundTruth, match="oracle"):
        scoring.COUNTERFACTUAL_SCORES["preservation"](ctx, strip)


def test_lpips_without_weights_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(
        closeness, "lpips_weights_file", lambda net="alex": (tmp_path / "a.pth", "url")
    )
    ctx = context()
    strip = ExactCounterfactual(ctx.classifier).exaggerate(ctx.queries)
    with pytest.raises(WeightsMissingError, match="a.pth"):
        scoring.COUNTERFACTUAL_SCORES["lpips"](ctx, strip)


def test_robustness_of_a_real_baseline_on_a_conv_net():
    from cfgen.explain.registry import build_explainer
    from tests.helpers import TinyConvNet

    ctx = context()
    ctx.classifier = TinyConvNet(channels=3)
    ctx.robustness_queries = 3
    method = build_explainer("gradient", ctx.classifier)
    output = SaliencyOutput(method.explain(ctx.queries), method.explain, name="gradient")
    scores = scoring.SALIENCY_SCORES["robustness"](ctx, output)
    assert set(scores) == {
        "max_sensitivity",
        "infidelity",
        "randomised_spearman_top",
        "randomised_spearman_all",
    }
    assert scores["max_sensitivity"] > 0


def test_a_map_that_ignores_the_input_has_zero_sensitivity():
    ctx = context()
    method = MaskSaliency(ctx.classifier)
    output = SaliencyOutput(method.explain(ctx.queries), method.explain, name=None)
    scores = scoring.SALIENCY_SCORES["robustness"](ctx, output)
    assert scores["max_sensitivity"] == pytest.approx(0.0)
    assert set(scores) == {"max_sensitivity", "infidelity"}
