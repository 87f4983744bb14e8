import json

import numpy as np
import pytest
import torch

from cfgen.errors import ConfigError, WeightsMissingError
from cfgen.evaluate import scoring
from cfgen.evaluate.context import EvalContext
from cfgen.evaluate.scoring import counterfactual_map
from cfgen.evaluate.suite import SuiteConfig, SuiteInputs, evaluate, run_suite
from tests.helpers import ExactCounterfactual, MaskSaliency, RegionClassifier


def make_inputs(n: int = 6) -> SuiteInputs:
    classifier = RegionClassifier()
    queries = torch.randn(n, 3, 8, 8) * 0.3
    context = EvalContext(classifier=classifier, queries=queries, n_bins=10, batch_size=4)
    return SuiteInputs(
        context=context,
        counterfactual_methods={"exact": ExactCounterfactual(classifier)},
        saliency_methods={"mask": MaskSaliency(classifier)},
    )


def config(tmp_path, **changes) -> SuiteConfig:
    options = dict(
        explainer="unused.pt",
        out=str(tmp_path / "eval"),
        counterfactual_metrics=["shift"],
        map_metrics=[],
        report_queries=2,
        logger="none",
    )
    return SuiteConfig(**{**options, **changes})


def test_exact_counterfactual_scores_perfect_shift(tmp_path):
    results, images = run_suite(config(tmp_path), make_inputs())
    shift = results["methods"]["exact"]["metrics"]["shift"]
    assert shift["flip_rate"] == pytest.approx(1.0)
    assert shift["compat_mae"] == pytest.approx(0.0, abs=1e-4)
    assert shift["monotonicity"] == pytest.approx(1.0)
    assert set(results["timing"]) == {"exact", "mask"}
    assert images["strip/exact"].shape == (10, 2, 3, 8, 8)
    assert images["map/mask"].shape == (2, 8, 8)


def test_far_end_is_opposite_to_the_decision():
    inputs = make_inputs(4)
    queries = inputs.context.queries
    queries[:2, 0] = -1.0  # f < 0.5: explained by the last frame
    queries[2:, 0] = 1.0  # f > 0.5: explained by the first frame
    strip = inputs.counterfactual_methods["exact"].exaggerate(queries)
    torch.testing.assert_close(strip.far_end()[:2], strip.images[-1, :2])
    torch.testing.assert_close(strip.far_end()[2:], strip.images[0, 2:])
    outside = 1 - inputs.context.classifier.mask
    torch.testing.assert_close(
        counterfactual_map(queries, strip) * outside, torch.zeros_like(queries)
    )


def test_a_metric_needing_missing_weights_is_skipped_with_its_reason(tmp_path, monkeypatch):
    def needs_weights(context, output):
        raise WeightsMissingError("place alexnet.pth in the torch cache")

    monkeypatch.setitem(scoring.COUNTERFACTUAL_SCORES, "lpips_like", needs_weights)
    results, _ = run_suite(
        config(tmp_path, counterfactual_metrics=["shift", "lpips_like"]), make_inputs()
    )
    entry = results["methods"]["exact"]
    assert entry["skipped"] == {"lpips_like": "place alexnet.pth in the torch cache"}
    assert "shift" in entry["metrics"]


def test_unknown_metric_name_fails_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="fidelity"):
        run_suite(config(tmp_path, counterfactual_metrics=["fidelity"]), make_inputs())


def test_evaluate_writes_results_images_and_report(tmp_path):
    results = evaluate(config(tmp_path), make_inputs())
    out = tmp_path / "eval"
    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"]["exact"]["metrics"]["shift"]["flip_rate"] == pytest.approx(1.0)
    assert saved["config"]["n_queries"] == 500 and saved["versions"]["torch"] == torch.__version__
    with np.load(out / "report_images.npz") as arrays:
        assert arrays["queries"].shape == (2, 3, 8, 8)
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert results["wandb_sync"] is None


def test_wandb_failure_keeps_the_results(tmp_path, monkeypatch):
    import cfgen.evaluate.tracking as tracking

    def broken(*args, **kwargs):
        raise RuntimeError("wandb service crashed")

    monkeypatch.setattr(tracking, "_log_run", broken)
    evaluate(config(tmp_path, logger="wandb"), make_inputs())
    assert (tmp_path / "eval" / "results.json").is_file()


def test_every_method_of_a_table_is_scored_on_the_queries_its_slowest_affords(tmp_path):
    maps = ["localisation"]
    inputs = make_inputs(6)
    inputs.context.masks = torch.cat([inputs.context.classifier.mask] * 2, 1).expand(6, 2, 8, 8)
    inputs.context.region_names = ["mouth", "rest"]
    results, _ = run_suite(config(tmp_path, max_queries={"mask": 3}, map_metrics=maps), inputs)
    # The slow saliency method sets the map table's n, the counterfactual table keeps all 6.
    assert (results["n_queries"], results["n_map_queries"]) == (6, 3)
    assert results["methods"]["mask"]["n_queries"] == 3
    assert results["methods"]["exact"]["n_queries"] == 6
    assert results["timing"]["mask"]["ms_per_query"] == pytest.approx(
        1000 * results["timing"]["mask"]["seconds"] / 3
    )
    # A slow counterfactual method lowers both tables for every method.
    inputs.counterfactual_methods["slow"] = ExactCounterfactual(inputs.context.classifier)
    results, _ = run_suite(config(tmp_path, max_queries={"slow": 4}, map_metrics=maps), inputs)
    assert (results["n_queries"], results["n_map_queries"]) == (4, 4)
    assert {entry["n_queries"] for entry in results["methods"].values()} == {4}


class NoisySaliency(MaskSaliency):
    """A map drawn from the global random stream: what LIME, SHAP and SmoothGrad do."""

    def explain(self, x, target=None):
        return torch.rand_like(x)


def test_the_evaluation_is_seeded_per_method_whatever_their_order(tmp_path):
    inputs = make_inputs(4)
    classifier = inputs.context.classifier
    inputs.saliency_methods = {
        "noisy": NoisySaliency(classifier),
        "other": NoisySaliency(classifier),
    }
    first, images = run_suite(config(tmp_path), inputs)
    inputs.saliency_methods = dict(reversed(inputs.saliency_methods.items()))
    again, images_again = run_suite(config(tmp_path), inputs)
    np.testing.assert_array_equal(images["map/noisy"], images_again["map/noisy"])
    assert not np.array_equal(images["map/noisy"], images["map/other"])
    _, other_seed = run_suite(config(tmp_path, seed=1), inputs)
    assert not np.array_equal(images["map/noisy"], other_seed["map/noisy"])


class CountingFeatures(torch.nn.Module):
    """A fixed projection of the pixels to 3 features that counts the images it encodes."""

    num_features = 3

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.randn(3 * 8 * 8, 3, generator=torch.Generator().manual_seed(0))
        self.images_seen = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.images_seen += len(images)
        return images.flatten(1) @ self.weight


def test_the_real_reference_is_encoded_once_for_every_method_and_bin(tmp_path):
    inputs = make_inputs(8)
    context = inputs.context
    classifier = context.classifier
    context.features = CountingFeatures()
    context.real_images = torch.randn(24, 3, 8, 8) * 0.3
    with torch.no_grad():
        context.real_posteriors = classifier(context.real_images)
    inputs.counterfactual_methods["exact_too"] = ExactCounterfactual(classifier)
    results, _ = run_suite(config(tmp_path, counterfactual_metrics=["realism"]), inputs)
    assert {"fid_overall", "kid_overall", "sfid"} <= set(
        results["methods"]["exact_too"]["metrics"]["realism"]
    )
    # The reference (24) and the queries (8, for sFID) once; each method's 10 x 8 strip images.
    assert context.features.images_seen == 24 + 8 + 2 * 10 * 8


def test_saliency_cout_inserts_the_counterfactuals_of_the_method_the_config_names(tmp_path):
    inputs = make_inputs(6)
    classifier = inputs.context.classifier

    class Untouched(ExactCounterfactual):  # its counterfactual is the query: COUT gains nothing
        def counterfactual(self, x, target):
            return x.clone()

    inputs.counterfactual_methods = {
        "still": Untouched(classifier),
        "exact": inputs.counterfactual_methods["exact"],
    }
    options = dict(counterfactual_metrics=["shift"], map_metrics=["faithfulness"])
    by_reference = {}
    for reference in ("still", "exact"):
        results, _ = run_suite(config(tmp_path, cout_reference=reference, **options), inputs)
        by_reference[reference] = results["methods"]["mask"]["metrics"]["faithfulness"]["cout"]
        inputs.context.reference_counterfactual = None
    exact = results["methods"]["exact"]["metrics"]["faithfulness"]["cout_own"]
    # Every map, the counterfactual methods' too, inserts the reference's pixels.
    assert results["methods"]["exact"]["metrics"]["faithfulness"]["cout"] == pytest.approx(exact)
    # The mask orders exactly the pixels the exact counterfactual changes: its COUT is the
    # exact method's own; inserting an unchanged query moves nothing: the curve stays at the
    # query's distance from the counterfactual class, -|2 f(x) - 1|.
    assert by_reference["exact"] == pytest.approx(exact)
    with torch.no_grad():
        stays = -(2 * classifier(inputs.context.queries) - 1).abs().mean().item()
    assert by_reference["still"] == pytest.approx(stays, abs=1e-5)
    assert abs(stays - exact) > 0.1
    with pytest.raises(ConfigError, match="cout_reference 'pgd' is not one of"):
        run_suite(config(tmp_path, cout_reference="pgd", **options), inputs)
    # Unset: the first counterfactual method that is not PE's own (here "still").
    results, _ = run_suite(config(tmp_path, **options), inputs)
    assert results["cout_reference"] == "still"
    results, _ = run_suite(config(tmp_path, cout_reference="none", **options), inputs)
    assert "cout" not in results["methods"]["mask"]["metrics"]["faithfulness"]


def test_a_config_error_inside_a_metric_group_fails_the_run_instead_of_skipping(
    tmp_path, monkeypatch
):
    def misconfigured(context, output):
        raise ConfigError("the oracle reads no 'Smiling'")

    monkeypatch.setitem(scoring.COUNTERFACTUAL_SCORES, "misconfigured", misconfigured)
    with pytest.raises(ConfigError, match="reads no 'Smiling'"):
        run_suite(config(tmp_path, counterfactual_metrics=["misconfigured"]), make_inputs())


class Decoded(ExactCounterfactual):
    """A counterfactual method that decodes through an autoencoder (as the latent shift does)."""

    def __init__(self, classifier, autoencoder) -> None:
        super().__init__(classifier)
        self.autoencoder = autoencoder


def test_a_method_that_decodes_reports_its_autoencoder_s_reconstruction_floor(tmp_path):
    inputs = make_inputs(4)
    classifier = inputs.context.classifier
    inputs.counterfactual_methods = {
        "perfect": Decoded(classifier, torch.nn.Identity()),
        "halving": Decoded(classifier, lambda x: 0.5 * x),
    }
    results, _ = run_suite(config(tmp_path), inputs)
    assert results["methods"]["perfect"]["metrics"]["floor"]["floor_l1"] == 0.0
    halved = results["methods"]["halving"]["metrics"]["floor"]["floor_l1"]
    assert halved == pytest.approx((0.5 * inputs.context.queries).abs().mean().item())
