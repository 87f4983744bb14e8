"""The independent judges on cases whose answer is known by construction."""

import pytest
import torch

from cfgen.bins import bin_centre
from cfgen.data.synthetic import FACTOR_NAMES, SyntheticFaces
from cfgen.errors import ConfigError
from cfgen.evaluate import scoring
from cfgen.evaluate.context import EvalContext, NoGroundTruth, plain
from cfgen.evaluate.judges import (
    AttributeReading,
    attribute_reading,
    identity_images,
    identity_l1,
    judge_shift,
    real_gap,
    validity,
)
from cfgen.evaluate.shift import shift_summary
from cfgen.explain.base import CounterfactualExplainer
from cfgen.explain.registry import build_explainer
from cfgen.explain.strip import Strip
from tests.helpers import ExactCounterfactual, LinearClassifier, RegionClassifier

SIZE, N_BINS = 16, 10
VALUES = bin_centre(torch.arange(N_BINS), N_BINS)  # 0.05 ... 0.95


class TrueFactorOracle(torch.nn.Module):
    """Reads the true factors of the face an image depicts: the factors of the nearest rendered
    face of its table (an exact oracle on the table's faces; a small perturbation of a face
    still depicts that face)."""

    def __init__(self, images: torch.Tensor, factors: torch.Tensor) -> None:
        super().__init__()
        self.images, self.factors = images.flatten(1), factors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nearest = torch.cdist(x.flatten(1), self.images).argmin(dim=1)
        return self.factors[nearest]


def faces(n: int = 8) -> SyntheticFaces:
    return SyntheticFaces(n, SIZE, seed=0, split="test")


def rerendered_strip(world: SyntheticFaces, factor: str, values: torch.Tensor, classifier):
    """Every face re-rendered with `factor` set to each of `values` (S,), all else kept."""
    indices = torch.arange(len(world))
    images = torch.stack([world.render_with(indices, factor, v)[0] for v in values])
    posteriors = torch.stack([classifier(step) for step in images])
    strip = Strip(images, torch.arange(len(values)), posteriors, classifier(world.images))
    factors = world.factors[None].repeat(len(values), 1, 1)
    factors[..., FACTOR_NAMES.index(factor)] = values[:, None]
    return strip, factors


def test_strips_that_move_the_smile_are_valid_by_ground_truth():
    world = faces()
    classifier = RegionClassifier(size=SIZE)
    strip, factors = rerendered_strip(world, "smile", VALUES, classifier)
    table = torch.cat([world.images, strip.images.flatten(0, 1)])
    oracle = TrueFactorOracle(table, torch.cat([world.factors, factors.flatten(0, 1)]))
    reading = attribute_reading("Smiling", list(FACTOR_NAMES), kind="factors")
    scores = validity(
        reading(oracle, strip.images), reading(oracle, world.images), strip.target_bins
    )
    assert scores == pytest.approx(
        {"oracle_flip": 1.0, "oracle_spearman": 1.0, "oracle_change": 0.9}, abs=1e-6
    )


def test_an_attribute_present_below_its_threshold_is_read_mirrored():
    # Pale_Skin is present when skin_tone < 0.5: a strip lowering the skin tone exaggerates it.
    world = faces()
    strip, factors = rerendered_strip(world, "skin_tone", VALUES.flip(0), RegionClassifier(SIZE))
    oracle = TrueFactorOracle(strip.images.flatten(0, 1), factors.flatten(0, 1))
    reading = attribute_reading("Pale_Skin", list(FACTOR_NAMES), kind="factors")
    assert (reading.name, reading.threshold, reading.present_above) == ("skin_tone", 0.5, False)
    readings = reading(oracle, strip.images)
    torch.testing.assert_close(readings, VALUES[:, None].expand(N_BINS, len(world)))
    scores = validity(readings, readings[0], strip.target_bins)
    assert scores["oracle_spearman"] == pytest.approx(1.0)
    assert scores["oracle_change"] == pytest.approx(0.9)


def test_imperceptible_adversarial_strips_are_not_valid_by_ground_truth():
    world = faces()
    torch.manual_seed(1)
    classifier = LinearClassifier((3, SIZE, SIZE))
    with torch.no_grad():  # steep: a small change moves the posterior across every bin
        classifier.weight.mul_(40.0 / classifier.weight.abs().mean() / (3 * SIZE * SIZE))
        classifier.bias.fill_(-classifier.logit(world.images).median().item())
    pgd = build_explainer("pgd", classifier, max_radius=0.1)
    strip = pgd.exaggerate(world.images, n_bins=N_BINS)
    assert shift_summary(strip.posteriors, strip.target_bins, strip.query_posteriors, N_BINS)[
        "flip_rate"
    ] == pytest.approx(1.0)
    assert (strip.images - world.images).abs().max() <= 0.1 + 1e-6
    oracle = TrueFactorOracle(world.images, world.factors)
    reading = attribute_reading("Smiling", list(FACTOR_NAMES), kind="factors")
    scores = validity(
        reading(oracle, strip.images), reading(oracle, world.images), strip.target_bins
    )
    assert scores["oracle_flip"] == pytest.approx(0.0)
    assert scores["oracle_change"] == pytest.approx(0.0)


def test_oracle_flip_follows_the_direction_the_query_reading_asks():
    # Query 0 reads 0.2 (asks up), query 1 reads 0.8 (asks down); the strips go 0.1 -> 0.9.
    rising = torch.linspace(0.1, 0.9, 5)[:, None].repeat(1, 2)
    bins = torch.arange(5)
    both = validity(rising, torch.tensor([0.2, 0.8]), bins)
    assert both["oracle_flip"] == pytest.approx(1.0)
    # A strip stuck at its query's reading changes nothing and never flips.
    stuck = torch.tensor([0.2, 0.8])[None].repeat(5, 1)
    assert validity(stuck, torch.tensor([0.2, 0.8]), bins) == pytest.approx(
        {"oracle_flip": 0.0, "oracle_spearman": 0.0, "oracle_change": 0.0}
    )
    # Only the far end counts: up for query 0 (ends at 0.45, short of 0.5), down for query 1.
    short = torch.linspace(0.1, 0.45, 5)[:, None].repeat(1, 2)
    assert validity(short, torch.tensor([0.2, 0.8]), bins)["oracle_flip"] == pytest.approx(0.5)


def test_real_gap_is_present_minus_absent_and_ignores_unknown_labels():
    readings = torch.tensor([0.9, 0.7, 0.2, 0.0, 5.0])
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0, float("nan")])
    assert real_gap(readings, labels) == pytest.approx(0.8 - 0.1)
    assert torch.isnan(torch.tensor(real_gap(readings, torch.ones(5))))


def test_attribute_oracles_read_their_own_column_and_unknown_targets_fail():
    reading = attribute_reading("digit=8", ["digit=7", "digit=8"], kind="attributes")
    assert reading == AttributeReading(1, "digit=8", 0.5, True)
    with pytest.raises(ConfigError, match="Smiling"):
        attribute_reading("Smiling", ["Eyeglasses"], kind="attributes")
    with pytest.raises(ConfigError, match="Wavy_Hair"):
        attribute_reading("Wavy_Hair", list(FACTOR_NAMES), kind="factors")
    with pytest.raises(ConfigError, match="kind"):
        attribute_reading("Smiling", ["smile"], kind="regions")


def test_a_judge_that_is_the_classifier_sees_what_the_classifier_sees():
    classifier = RegionClassifier()
    queries = torch.randn(6, 3, 8, 8) * 0.3
    strip = ExactCounterfactual(classifier).exaggerate(queries, n_bins=N_BINS)
    own = shift_summary(strip.posteriors, strip.target_bins, strip.query_posteriors, N_BINS)
    judged = judge_shift(classifier, strip, queries, N_BINS)
    assert judged == pytest.approx({f"judge_{key}": value for key, value in own.items()})


def test_a_judge_reading_another_region_is_not_moved():
    classifier = RegionClassifier(region=slice(2, 5))
    judge = RegionClassifier(region=slice(5, 8))
    queries = torch.randn(6, 3, 8, 8) * 0.3
    strip = ExactCounterfactual(classifier).exaggerate(queries, n_bins=N_BINS)
    judged = judge_shift(judge, strip, queries, N_BINS)
    # Every frame keeps the judge's region: it reads the query's posterior all along.
    targets = bin_centre(strip.target_bins, N_BINS)[:, None]
    expected_mae = (judge(queries)[None] - targets).abs().mean().item()
    assert judged == pytest.approx(
        {"judge_flip_rate": 0.0, "judge_compat_mae": expected_mae, "judge_monotonicity": 0.0},
        abs=1e-6,
    )


class AddConstant(CounterfactualExplainer):
    """Adds `shift` to every pixel whatever the target: changes the query even at its own bin."""

    def __init__(self, classifier, shift: float) -> None:
        super().__init__(classifier)
        self.shift = shift

    def counterfactual(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def test_identity_is_zero_for_a_method_that_keeps_the_query_at_its_own_bin():
    classifier = RegionClassifier()
    queries = torch.randn(7, 3, 8, 8) * 0.3
    identity = identity_images(ExactCounterfactual(classifier), queries, batch_size=3)
    torch.testing.assert_close(identity, queries, atol=1e-5, rtol=0)
    assert identity_l1(queries, identity) == pytest.approx(0.0, abs=1e-5)
    shifted = identity_images(AddConstant(classifier, 0.25), queries, batch_size=3)
    assert identity_l1(queries, shifted) == pytest.approx(0.25)


def test_pgd_at_the_query_s_own_posterior_returns_the_query():
    classifier = LinearClassifier((3, 8, 8))
    queries = torch.randn(5, 3, 8, 8) * 0.3
    identity = identity_images(build_explainer("pgd", classifier), queries)
    torch.testing.assert_close(identity, queries)


def judged_context(judge=None, oracle=None) -> EvalContext:
    classifier = RegionClassifier()
    queries = torch.randn(6, 3, 8, 8) * 0.3

    def reads_the_region(x: torch.Tensor) -> torch.Tensor:  # factor "smile" = the classifier
        return torch.stack([classifier(x), x[:, 1].mean(dim=(1, 2)).clamp(0, 1)], dim=1)

    real = torch.randn(40, 3, 8, 8) * 0.6
    return EvalContext(
        classifier=classifier,
        queries=queries,
        factor_names=["smile", "glasses"],
        oracle=oracle or reads_the_region,
        judge=judge,
        real_images=real,
        real_labels=(classifier(real) > 0.5).float(),
        real_posteriors=classifier(real),
        batch_size=4,
    )


def test_score_groups_report_validity_judge_and_identity():
    context = judged_context(judge=RegionClassifier())
    method = ExactCounterfactual(context.classifier)
    strip = method.exaggerate(context.queries, n_bins=N_BINS)
    context.identity = identity_images(method, context.queries)
    scores = {
        name: plain(scoring.COUNTERFACTUAL_SCORES[name](context, strip))
        for name in ("validity", "judge", "identity")
    }
    assert scores["validity"]["reading_flip"] == pytest.approx(1.0)
    assert scores["validity"]["reading_spearman"] == pytest.approx(1.0)
    real_readings = context.classifier(context.real_images)
    assert scores["validity"]["reading_change_real"] == pytest.approx(
        real_gap(real_readings, context.real_labels)
    )
    assert scores["judge"]["judge_flip_rate"] == pytest.approx(1.0)
    assert scores["identity"]["identity_l1"] == pytest.approx(0.0, abs=1e-5)


def test_score_groups_without_their_judge_say_what_to_set():
    context = judged_context()
    strip = ExactCounterfactual(context.classifier).exaggerate(context.queries, n_bins=N_BINS)
    with pytest.raises(NoGroundTruth, match="judge"):
        scoring.COUNTERFACTUAL_SCORES["judge"](context, strip)
    with pytest.raises(NoGroundTruth, match="identity"):
        scoring.COUNTERFACTUAL_SCORES["identity"](context, strip)
    context.oracle = None
    with pytest.raises(NoGroundTruth, match="oracle"):
        scoring.COUNTERFACTUAL_SCORES["validity"](context, strip)
