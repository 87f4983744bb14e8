"""`cfgen evaluate` on every data source: CelebA and CheXpert layouts, the synthetic world.

The layouts are fakes the tests write (`tests/data/fakes.py`); the explainers are tiny and
untrained, exported as training exports them: these tests check which images are scored and
which metric groups are skipped and why, not how good the counterfactuals are.
"""

import inspect
import json
from dataclasses import fields

import numpy as np
import pytest
import torch

from cfgen.cli import main
from cfgen.data.chexpert import chexpert_splits
from cfgen.data.datamodule import AttributeDataModule
from cfgen.data.folders import CelebA
from cfgen.data.synthetic import SyntheticFaces
from cfgen.errors import ConfigError
from cfgen.evaluate.loading import EvalData, SuiteConfig, load_inputs
from cfgen.io import save_bundle
from cfgen.models.classifiers import build_classifier
from tests.data.fakes import celeba_folder, chexpert_folder
from tests.helpers import export_tiny_explainer, tiny_networks

SIZE = 16
# What needs an oracle, judges, re-rendering, region masks or LPIPS weights (absent here; the
# tiny training splits hold fewer images than the nearest-neighbour judge's k).
SKIPPED = {
    "validity",
    "judge",
    "robust_judge",
    "neighbours",
    "truth",
    "realism",
    "preservation",
    "localisation",
    "lpips",
}


def tiny_explainer(folder, target: str, channels: int):
    """An untrained explainer.pt of a small CNN classifier bundle for `target`."""
    from cfgen.train.explainer import ExplainerModule

    config = {"arch": "small_cnn", "num_outputs": 1, "image_size": SIZE, "in_channels": channels}
    config |= {"attribute_names": [target], "target": target}
    torch.manual_seed(0)
    model = build_classifier("small_cnn", 1, SIZE, channels)
    classifier = save_bundle(folder / "classifier.pt", "classifier", config, model.state_dict())
    module = ExplainerModule(str(classifier), image_size=SIZE, channels=channels, **tiny_networks())
    return module.export(folder / "explainer.pt")


def evaluate(explainer, out, *data) -> dict:
    argv = ["evaluate", "--explainer", explainer, *data, "--out", out, "--n_real", "4",
            "--baselines", "[]", "--adversarial", "[]", "--logger", "none"]  # fmt: skip
    assert main([str(arg) for arg in argv]) == 0
    return json.loads((out / "results.json").read_text())


def queries_of(out) -> np.ndarray:
    with np.load(out / "report_images.npz") as arrays:
        return arrays["queries"]


def test_the_data_options_are_options_of_the_training_data_module():
    accepted = inspect.signature(AttributeDataModule).parameters
    assert {field.name for field in fields(EvalData)} <= set(accepted)
    for field in fields(EvalData):  # same defaults: unset means what it means for training
        assert field.default == accepted[field.name].default, field.name


def test_celeba_queries_are_its_test_partition(tmp_path):
    partition = [0, 0, 0, 1, 1, 2, 2, 2]
    labels = [[1 if i % 2 else -1, -1] for i in range(8)]
    root = celeba_folder(tmp_path / "celeba", partition, labels)
    explainer = tiny_explainer(tmp_path, "Smiling", channels=3)
    out = tmp_path / "eval"
    results = evaluate(explainer, out, "--data.source", "celeba", "--data.root", root)
    test = CelebA(root, "test", SIZE)
    assert results["n_queries"] == len(test) == 3
    expected = torch.stack([test[i]["image"] for i in range(3)]).numpy()
    np.testing.assert_array_equal(queries_of(out), expected)
    pe = results["methods"]["pe"]
    assert set(pe["skipped"]) == SKIPPED
    assert {"shift", "identity", "closeness", "faithfulness", "robustness"} == set(pe["metrics"])
    assert "set `oracle`" in pe["skipped"]["validity"]


def test_chexpert_queries_are_the_official_validation_csv_in_grey(tmp_path):
    root = chexpert_folder(tmp_path / "CheXpert-v1.0-small", patients=6, per_patient=2)
    explainer = tiny_explainer(tmp_path, "Edema", channels=1)
    out = tmp_path / "eval"
    results = evaluate(explainer, out, "--data.source", "chexpert", "--data.root", root)
    test = chexpert_splits(root, image_size=SIZE)[2]
    assert results["n_queries"] == len(test) == 4
    expected = torch.stack([test[i]["image"] for i in range(4)]).numpy()
    assert expected.shape[1] == 1
    np.testing.assert_array_equal(queries_of(out), expected)
    assert set(results["methods"]["pe"]["skipped"]) == SKIPPED


def test_synthetic_queries_and_reference_are_the_worlds_test_and_validation_splits(tmp_path):
    explainer, _, _ = export_tiny_explainer(tmp_path, size=SIZE)
    config = SuiteConfig(explainer=str(explainer), n_queries=5, n_real=7, logger="none")
    context = load_inputs(config).context
    test = SyntheticFaces(5, SIZE, seed=0, split="test")
    val = SyntheticFaces(7, SIZE, seed=0, split="val")
    torch.testing.assert_close(context.queries, test.images)
    torch.testing.assert_close(context.masks, test.masks.float() / 255.0)
    torch.testing.assert_close(context.real_images, val.images)
    torch.testing.assert_close(context.real_labels, val.labels[:, val.target_index].float())
    assert (context.target_factor, context.target_region) == ("Smiling", None)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--data.source", "imagenet", "unknown data source 'imagenet'"),
        ("--data.channels", "1", "data.channels is 1 but the classifier"),
        ("--split", "holdout", "split must be one of"),
    ],
)
def test_a_bad_data_option_fails_with_its_message(tmp_path, capsys, option, value, message):
    explainer, _, _ = export_tiny_explainer(tmp_path, size=SIZE)
    argv = ["evaluate", "--explainer", str(explainer), option, value, "--out", str(tmp_path / "e")]
    assert main(argv + ["--logger", "none"]) == 2
    assert message in capsys.readouterr().err


def test_a_judge_trained_at_another_image_size_is_refused(tmp_path):
    explainer, _, _ = export_tiny_explainer(tmp_path, size=SIZE)
    config = {"arch": "small_cnn", "num_outputs": 1, "image_size": 2 * SIZE, "in_channels": 3}
    config |= {"attribute_names": ["Smiling"], "target": "Smiling"}
    judge_net = build_classifier("small_cnn", 1, 2 * SIZE, 3)
    judge = save_bundle(tmp_path / "judge.pt", "classifier", config, judge_net.state_dict())
    suite = SuiteConfig(explainer=str(explainer), judge=str(judge), n_queries=2, n_real=0)
    with pytest.raises(ConfigError, match=f"trained on {2 * SIZE} px images but the queries"):
        load_inputs(suite)
