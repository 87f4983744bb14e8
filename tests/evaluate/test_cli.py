import json
import os
import subprocess
import sys

import pytest

from cfgen.data.synthetic import ATTRIBUTE_NAMES, FACTOR_NAMES
from cfgen.evaluate.cli import parse_config
from cfgen.io import save_bundle
from cfgen.models.classifiers import build_classifier
from cfgen.models.oracle import BUNDLE_KIND, FactorOracle
from tests.helpers import tiny_networks

SIZE = 16


def test_yaml_overrides_defaults_and_options_override_yaml(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("explainer: e.pt\nn_queries: 50\nbias:\n  confounder: hair_colour\n")
    config = parse_config(["--config", str(path), "--n_queries", "7"])
    assert (config.explainer, config.n_queries, config.bias.confounder) == (
        "e.pt",
        7,
        "hair_colour",
    )
    assert config.baselines[0] == "gradient" and config.split == "test"


def test_unknown_key_fails_and_names_it(tmp_path, capsys):
    path = tmp_path / "eval.yaml"
    path.write_text("explainer: e.pt\nn_querys: 50\n")
    with pytest.raises(SystemExit):
        parse_config(["--config", str(path)])
    assert "n_querys" in capsys.readouterr().err


def write_classifier_bundle(path):
    """An untrained small CNN saved as a cfgen classifier bundle (what `cfgen classifier fit`
    exports), explaining Smiling."""
    config = {
        "arch": "small_cnn",
        "num_outputs": len(ATTRIBUTE_NAMES),
        "image_size": SIZE,
        "in_channels": 3,
        "attribute_names": list(ATTRIBUTE_NAMES),
        "target": "Smiling",
        "output": "logits",
        "activation": "sigmoid",
    }
    network = build_classifier("small_cnn", len(ATTRIBUTE_NAMES), SIZE)
    return save_bundle(path, "classifier", config, network.state_dict())


@pytest.fixture
def model_files(tmp_path):
    """A tiny explainer (untrained, exported by the training module), its classifier, an oracle."""
    from cfgen.train.explainer import ExplainerModule

    classifier = str(write_classifier_bundle(tmp_path / "classifier.pt"))
    module = ExplainerModule(classifier, image_size=SIZE, **tiny_networks())
    explainer = module.export(tmp_path / "explainer.pt")
    oracle = FactorOracle(FACTOR_NAMES, width=4, num_features=8)
    save_bundle(tmp_path / "oracle.pt", BUNDLE_KIND, oracle.config(), oracle.state_dict())
    return explainer, tmp_path / "oracle.pt"


@pytest.mark.slow
def test_cfgen_evaluate_runs_end_to_end(tmp_path, model_files):
    explainer, oracle = model_files
    out = tmp_path / "eval"
    argv = [
        sys.executable, "-m", "cfgen.cli", "evaluate",
        "--explainer", str(explainer), "--oracle", str(oracle),
        "--bias.biased_explainer", str(explainer), "--out", str(out),
        "--n_queries", "6", "--n_real", "20", "--robustness_queries", "2",
        "--baselines", "[gradient]", "--adversarial", "[fgsm]", "--logger", "none",
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    # PE as drawn and placed, the true counterfactual of the synthetic world, the baselines.
    assert set(results["methods"]) == {"truth", "pe", "pe_placed", "fgsm", "gradient"}
    assert {entry["n_queries"] for entry in results["methods"].values()} == {6}
    assert {"shift", "truth", "realism", "preservation", "localisation", "robustness"} <= set(
        results["methods"]["pe"]["metrics"]
    )
    truth = results["methods"]["truth"]["metrics"]
    assert truth["truth"]["truth_far"] == pytest.approx(0.0)  # its frames are the truth
    assert truth["identity"]["identity_l1"] == pytest.approx(0.0)
    assert results["cout_reference"] == "truth"
    lower, upper = results["methods"]["pe"]["intervals"]["shift"]["flip_rate"]
    assert lower <= results["methods"]["pe"]["metrics"]["shift"]["flip_rate"] <= upper
    assert "robustness" in results["methods"]["gradient"]["metrics"]
    assert results["bias"]["unbiased"]["drift"] == pytest.approx(results["bias"]["biased"]["drift"])
    # The biased explainer is PE's own bundle here: its strips are judged as PE's are.
    validity = results["methods"]["pe"]["metrics"]["validity"]
    assert results["bias"]["biased"]["reading_flip"] == pytest.approx(validity["reading_flip"])
    assert "no judge given" in results["bias"]["biased"]["skipped"]["judge"]
    assert f"report:  {out / 'report.html'}" in done.stdout
    assert (out / "report_images.npz").is_file() and (out / "report.md").is_file()
