import pytest
import torch

from cfgen.errors import WeightsMissingError
from cfgen.evaluate import closeness, scoring
from cfgen.evaluate.context import EvalContext, NoGroundTruth, SaliencyOutput, plain
from cfgen.evaluate.judges import AttributeReading
from cfgen.evaluate.maps import MAP_SCORES, score_faithfulness
from cfgen.evaluate.preservation import attributes_changed
from cfgen.evaluate.realism import FeatureExtractor
from cfgen.explain.strip import Strip
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
        attribute_readings=[AttributeReading(1, "glasses")],
        features=FeatureExtractor(torch.nn.Flatten(), 3 * 8 * 8),
        real_images=real,
        real_posteriors=classifier(real),
        batch_size=4,
    )


def cout_by_hand(ctx: EvalContext) -> float:
    """COUT of `ExactCounterfactual`'s far end in closed form (20 steps, 8 x 8 = 64 pixels).

    Its change is one shift of channel 0 on the 3 x 3 region, so the region's 9 pixels enter
    first: 3, 6, then all 9 of them after steps 1, 2, 3 (round(k * 64 / 20) pixels). f follows
    the region mean, which moves by j / 9 of the shift after j pixels; from step 3 on the image
    is the counterfactual, whose transition value is 2 * 0.95 - 1 = 0.9 (target bin 9 or 0).
    COUT = [(t0 + t1) / 2 + (t1 + t2) / 2 + (t2 + t3) / 2 + 17 * 0.9] / 20.
    """
    model = ctx.classifier
    start = model.region_mean(ctx.queries)
    goes_up = model(ctx.queries) < 0.5
    target = torch.where(goes_up, 0.95, 0.05)
    end = torch.logit(target) / model.scale

    def transition(swapped: int) -> torch.Tensor:
        f = torch.sigmoid(model.scale * (start + swapped / 9 * (end - start)))
        return torch.where(goes_up, 2 * f - 1, 1 - 2 * f)

    t0, t1, t2, t3 = (transition(j) for j in (0, 3, 6, 9))
    torch.testing.assert_close(t3, torch.full_like(t3, 0.9))
    cout = ((t0 + t1) / 2 + (t1 + t2) / 2 + (t2 + t3) / 2 + 17 * t3) / 20
    return cout.mean().item()


def counterfactual_output(ctx: EvalContext, strip) -> SaliencyOutput:
    """A counterfactual method's map |x - x_far| as the map table scores it."""
    return SaliencyOutput(scoring.counterfactual_map(ctx.queries, strip), explain=None)


def test_exact_counterfactual_changes_only_its_region():
    ctx = context()
    strip = ExactCounterfactual(ctx.classifier).exaggerate(ctx.queries)
    scores = {
        name: plain(scoring.COUNTERFACTUAL_SCORES[name](ctx, strip))
        for name in ("preservation", "closeness")
    }
    output = counterfactual_output(ctx, strip)
    scores["localisation"] = plain(MAP_SCORES["localisation"](ctx, output))
    far = strip.far_end()
    scores["faithfulness"] = plain(score_faithfulness(ctx, output, counterfactual=far))
    assert scores["preservation"]["drift_glasses"] == pytest.approx(0.0, abs=1e-6)
    assert scores["preservation"]["mnac"] == pytest.approx(0.0)
    # L1 by hand: |shift| on 9 of the 3 x 64 values of each image, shift = what moves the
    # region mean to the far end's target.
    model = ctx.classifier
    target = torch.where(model(ctx.queries) < 0.5, 0.95, 0.05)
    shift = torch.logit(target) / model.scale - model.region_mean(ctx.queries)
    closeness = scores["closeness"]
    assert closeness["l1"] == pytest.approx((shift.abs() * 9 / 192).mean().item(), rel=1e-5)
    assert closeness["l1_outside"] == pytest.approx(0.0, abs=1e-6)
    # SSIM's window reaches across the region's border, so outside is not exactly 1, but only
    # the inside changed: closer to 1 outside than over the whole image.
    assert closeness["ssim"] < closeness["ssim_outside"] < 1.0
    assert closeness["ssim"] < 0.99
    assert scores["localisation"]["relevance_mass"] == pytest.approx(1.0)
    assert scores["localisation"]["pointing_game"] == pytest.approx(1.0)
    # Its own far frames inserted in its own order (no reference counterfactual is set).
    assert "cout" not in scores["faithfulness"]
    assert scores["faithfulness"]["cout_own"] == pytest.approx(cout_by_hand(ctx), rel=1e-5)


def test_mnac_counts_other_attributes_of_successful_counterfactuals_only():
    ctx = context(n=4)
    glasses_on = ctx.queries.clone()
    glasses_on[:, 1] = 1.0  # the oracle reads glasses from channel 1: present everywhere
    ctx.queries[:, 1] = -1.0  # ... and absent on every query
    strip = ExactCounterfactual(ctx.classifier).exaggerate(ctx.queries)
    changed = attributes_changed(oracle, ctx.attribute_readings, glasses_on, ctx.queries)
    torch.testing.assert_close(changed, torch.ones(4))
    # A strip whose far frames add glasses to every query: MNAC 1 over the successful ones.
    images = strip.images.clone()
    images[:, :, 1] = 1.0
    with_glasses = type(strip)(images, strip.target_bins, strip.posteriors, strip.query_posteriors)
    scores = plain(scoring.COUNTERFACTUAL_SCORES["preservation"](ctx, with_glasses))
    assert scores["mnac"] == pytest.approx(1.0)
    # No successful counterfactual (the posteriors never cross): MNAC is not reported.
    stuck = type(strip)(
        images,
        strip.target_bins,
        strip.query_posteriors.expand_as(strip.posteriors),
        strip.query_posteriors,
    )
    assert "mnac" not in scoring.COUNTERFACTUAL_SCORES["preservation"](ctx, stuck)


def kid_of_identical_sets(features: torch.Tensor) -> float:
    """Unbiased MMD^2 (KID's estimator, cubic polynomial kernel (x.y / d + 1)^3) of a set of
    features (n, d) against itself: the within-set sums leave out i = j, the cross sum keeps
    it, so the value is 2 * (mean off-diagonal kernel - mean kernel), slightly below 0."""
    n, d = features.shape
    kernel = (features @ features.T / d + 1) ** 3
    off_diagonal = (kernel.sum() - kernel.diagonal().sum()) / (n * (n - 1))
    return (2 * (off_diagonal - kernel.mean())).item()


def test_realism_of_fakes_equal_to_the_reals_is_exact():
    ctx = context()
    real = ctx.real_images
    ctx.queries = real  # one strip frame per real image, equal to it
    posteriors = ctx.classifier(real)
    strip = Strip(real[None], torch.tensor([4]), posteriors[None], posteriors)
    scores = plain(scoring.COUNTERFACTUAL_SCORES["realism"](ctx, strip))
    # 0 up to the matrix square root of a rank-deficient covariance (192 features, 32 images).
    assert scores["fid_overall"] == pytest.approx(0.0, abs=1e-5)
    expected = kid_of_identical_sets(real.flatten(1).double())
    assert expected < 0
    assert scores["kid_overall"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # A frame that differs from the reals is measurably further away.
    strip = Strip((real + 0.5)[None], torch.tensor([4]), posteriors[None], posteriors)
    shifted = plain(scoring.COUNTERFACTUAL_SCORES["realism"](ctx, strip))
    # The features are the pixels: the means differ by 0.5 in each of 192 dimensions and the
    # covariances are equal, so FID = 192 * 0.5^2.
    assert shifted["fid_overall"] == pytest.approx(192 * 0.25, rel=1e-6, abs=1e-5)


def test_saliency_groups_score_a_perfect_map_as_perfect():
    ctx = context()
    ctx.reference_counterfactual = (
        ExactCounterfactual(ctx.classifier).exaggerate(ctx.queries).far_end()
    )
    method = MaskSaliency(ctx.classifier)
    output = SaliencyOutput(maps=method.explain(ctx.queries), explain=method.explain)
    local = plain(MAP_SCORES["localisation"](ctx, output))
    assert local == {"relevance_mass": 1.0, "pointing_game": 1.0, "region_share": 9 / 64}
    faithful = plain(MAP_SCORES["faithfulness"](ctx, output))
    assert set(faithful) == {"deletion_auc", "insertion_auc", "cout"}
    # The mask ranks the region's pixels first, as |x - x_far| does: the same COUT.
    assert faithful["cout"] == pytest.approx(cout_by_hand(ctx), rel=1e-5)


def test_missing_ground_truth_is_a_skip_reason():
    ctx = context()
    ctx.masks, ctx.oracle = None, None
    strip = ExactCounterfactual(ctx.classifier).exaggerate(ctx.queries)
    with pytest.raises(NoGroundTruth, match="masks"):
        MAP_SCORES["localisation"](ctx, counterfactual_output(ctx, strip))
    with pytest.raises(NoGroundTruth, match="oracle"):
        scoring.COUNTERFACTUAL_SCORES["preservation"](ctx, strip)
    # Masks, but none of the explained factor's region: the reason names what there is.
    ctx = context()
    ctx.target_region = "hat"
    with pytest.raises(NoGroundTruth, match=r"no region mask named 'hat'.*regions: \["):
        MAP_SCORES["localisation"](ctx, counterfactual_output(ctx, strip))
    with pytest.raises(NoGroundTruth, match="synthetic world"):
        scoring.COUNTERFACTUAL_SCORES["truth"](ctx, strip)
    for judge in ("judge", "robust_judge", "neighbours"):
        with pytest.raises(NoGroundTruth, match=judge.replace("_", " ")[:6]):
            scoring.COUNTERFACTUAL_SCORES[judge](ctx, strip)


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
    scores = MAP_SCORES["robustness"](ctx, output)
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
    scores = MAP_SCORES["robustness"](ctx, output)
    assert scores["max_sensitivity"] == pytest.approx(0.0)
    assert set(scores) == {"max_sensitivity", "infidelity"}
