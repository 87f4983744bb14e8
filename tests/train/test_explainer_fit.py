"""Training an explainer from Python (`fit_explainer`) with a classifier held in memory."""

import json

import pytest
import torch

from cfgen.errors import ClassifierError, ConfigError
from cfgen.io import load_bundle, safe_torch_load
from cfgen.train.explainer import ExplainerModule
from cfgen.train.explainer_data import ExplainerDataModule
from cfgen.train.explainer_fit import fit_explainer
from tests.helpers import TwoClassLogits, tiny_networks

SIZE = 16
QUIET = {"enable_progress_bar": False}


def tiny_data(**options) -> ExplainerDataModule:
    sizes = {"n_train": 32, "n_val": 8, "n_test": 8, "batch_size": 8, "steps_per_epoch": 2}
    return ExplainerDataModule(image_size=SIZE, val_queries=4, **sizes | options)


def tiny_module(classifier, **options) -> ExplainerModule:
    return ExplainerModule(
        classifier, image_size=SIZE, n_bins=4, optimisation={"n_critic": 1},
        **tiny_networks(), **options,
    )  # fmt: skip


def test_a_model_in_memory_trains_an_explainer_read_as_chosen(tmp_path):
    model = TwoClassLogits()
    module = tiny_module(model, classifier_output=1, classifier_activation="softmax")
    data = tiny_data()
    explainer = fit_explainer(module, data, generator_steps=2, out=tmp_path / "run", **QUIET)
    # the training posteriors are the module's reading of the model, its bins the module's
    images = data.train_dataset.images
    torch.testing.assert_close(data.train_posteriors, model(images).softmax(dim=1)[:, 1])
    assert data.n_bins == 4 == explainer.n_bins
    recorded = load_bundle(tmp_path / "run" / "explainer.pt", "explainer")["config"]["classifier"]
    assert recorded["in_memory"] and (recorded["output"], recorded["activation"]) == (1, "softmax")
    checkpoint = safe_torch_load(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert checkpoint["cfgen_classifier"] == recorded
    assert [r["step"] for r in json.loads((tmp_path / "run" / "monitor.json").read_text())] == [2]
    assert explainer.classifier is module.classifier
    strip = explainer.exaggerate(images[:3])
    assert strip.images.shape == (4, 3, 3, SIZE, SIZE)
    torch.testing.assert_close(strip.query_posteriors, model(images[:3]).softmax(dim=1)[:, 1])


def test_a_model_of_two_columns_without_a_reading_is_refused_before_training(tmp_path):
    module = tiny_module(TwoClassLogits())
    with pytest.raises(ClassifierError, match="output and activation were not chosen"):
        fit_explainer(module, tiny_data(), generator_steps=1, out=tmp_path / "run", **QUIET)
    assert not (tmp_path / "run" / "explainer.pt").exists()


def test_data_of_another_image_size_is_refused(tmp_path):
    module = tiny_module(TwoClassLogits(), classifier_output=1, classifier_activation="softmax")
    data = ExplainerDataModule(image_size=32)
    with pytest.raises(ConfigError, match="takes image_size 16 but the data module gives 32"):
        fit_explainer(module, data, generator_steps=1, out=tmp_path)
    with pytest.raises(ConfigError, match="generator_steps must be >= 1"):
        fit_explainer(module, data, generator_steps=0, out=tmp_path)


def test_a_logger_records_the_module_and_data_hyper_parameters_without_a_clash(tmp_path):
    from pytorch_lightning.loggers import CSVLogger

    module = tiny_module(TwoClassLogits(), classifier_output=1, classifier_activation="softmax")
    logger = CSVLogger(tmp_path / "logs", name="run", version="0")
    fit_explainer(module, tiny_data(), generator_steps=1, out=tmp_path, logger=logger, **QUIET)
    logged = (tmp_path / "logs" / "run" / "0" / "hparams.yaml").read_text()
    assert "n_bins: 4" in logged and "steps_per_epoch: 2" in logged
