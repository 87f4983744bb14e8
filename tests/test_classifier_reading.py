"""A classifier of two output columns, read as its user says, in every command.

A TorchScript 2-class softmax model (`TwoClassLogits`: a grey image reads 0.701 by softmax,
0.395 as the sigmoid of column 0) is refused until its output and activation are chosen; once
chosen in training, the explainer bundle records them, and `cfgen generate` and
`cfgen evaluate` read the classifier the same way unless told otherwise.
"""

import json
import shutil

import pytest
import torch

from cfgen.errors import CheckpointError, ClassifierError
from cfgen.evaluate.cli import parse_config
from cfgen.evaluate.loading import load_inputs
from cfgen.explain.cli import generate_main
from cfgen.io import load_bundle
from cfgen.models.blackbox import load_blackbox
from cfgen.train.explainer_cli import cli_main
from tests.helpers import TwoClassLogits, write_two_class_torchscript

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
GREY = torch.zeros(2, 3, 16, 16)
TINY = [
    "--data.image_size", "16", "--data.n_train", "32", "--data.n_val", "8", "--data.n_test", "8",
    "--data.batch_size", "8", "--data.steps_per_epoch", "2",
    "--model.generator.width", "4", "--model.generator.max_width", "8",
    "--model.discriminator.width", "4", "--model.discriminator.max_width", "8",
    "--model.optimisation.n_critic", "1", "--trainer.max_steps", "2",
    "--monitor.every_n_steps", "1", "--monitor.n_queries", "4",
    "--logger", "none", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip
CHOSEN = ["--model.classifier_output", "1", "--model.classifier_activation", "softmax"]


def test_a_two_class_softmax_torchscript_file_reads_the_chosen_posterior(tmp_path):
    path = write_two_class_torchscript(tmp_path / "smile.ts")
    softmax = load_blackbox(path, output=1, activation="softmax")
    torch.testing.assert_close(softmax(GREY), torch.full((2,), 0.701), atol=5e-4, rtol=0)
    sigmoid = load_blackbox(path, output=0, activation="sigmoid")
    torch.testing.assert_close(sigmoid(GREY), torch.full((2,), 0.395), atol=5e-4, rtol=0)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(softmax(x), TwoClassLogits()(x).softmax(dim=1)[:, 1])
    for chosen, missing in (({}, "output and activation were"), ({"output": 1}, "activation was")):
        with pytest.raises(ClassifierError, match=f"2 outputs per image but its {missing} not"):
            load_blackbox(path, **chosen)(GREY)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An explainer trained from the command line on the TorchScript classifier, read as its
    class-1 softmax posterior."""
    root = tmp_path_factory.mktemp("reading")
    classifier = write_two_class_torchscript(root / "smile.ts")
    run = root / "run"
    argv = ["fit", *TINY, "--trainer.default_root_dir", str(run), "--model.classifier", classifier]
    assert cli_main([*argv, *CHOSEN]) == 0
    return run / "explainer.pt", classifier


def test_training_refuses_the_classifier_until_its_reading_is_chosen(tmp_path):
    classifier = write_two_class_torchscript(tmp_path / "smile.ts")
    argv = ["fit", *TINY, "--trainer.default_root_dir", str(tmp_path / "run")]
    with pytest.raises(ClassifierError, match="--model.classifier_output/--model.classifier_"):
        cli_main([*argv, "--model.classifier", classifier])
    assert not (tmp_path / "run" / "explainer.pt").exists()


def test_training_records_the_reading_in_the_bundle(trained):
    explainer, classifier = trained
    recorded = load_bundle(explainer, "explainer")["config"]["classifier"]
    reading = (recorded["path"], recorded["output"], recorded["activation"])
    assert reading == (classifier, 1, "softmax")


def test_generate_reads_the_classifier_as_recorded_unless_told(trained, tmp_path):
    explainer, _ = trained
    out = tmp_path / "strips"
    argv = ["--checkpoint", str(explainer), "--input", "synthetic:test", "--n", "3"]
    assert generate_main([*argv, "--out", str(out), "--placement-steps", "0"]) == 0
    records = json.loads((out / "strips.json").read_text())["queries"]
    from cfgen.data.inputs import open_input

    queries = next(open_input("synthetic:test", 3, 16, 3).batches(3)).images
    expected = TwoClassLogits()(queries).softmax(dim=1)[:, 1]
    posteriors = torch.tensor([record["query_posterior"] for record in records])
    torch.testing.assert_close(posteriors, expected, atol=1e-4, rtol=0)
    other = [*argv, "--out", str(tmp_path / "other"), "--classifier-activation", "sigmoid"]
    with pytest.raises(CheckpointError, match="activation 'softmax', now 'sigmoid'"):
        generate_main(other)


def test_evaluate_takes_the_reading_options(trained):
    explainer, _ = trained
    base = ["--explainer", str(explainer), "--n_queries", "4", "--n_real", "0"]
    base += ["--data.image_size", "16", "--baselines", "[]", "--adversarial", "[]"]
    config = parse_config([*base, "--classifier_output", "1"])
    assert (config.classifier_output, config.classifier_activation) == (1, None)
    inputs = load_inputs(config)
    expected = TwoClassLogits()(GREY).softmax(dim=1)[:, 1]
    torch.testing.assert_close(inputs.context.classifier(GREY), expected)
    wrong = parse_config([*base, "--classifier_output", "0"])
    with pytest.raises(CheckpointError, match="output 1, now 0"):
        load_inputs(wrong)


def test_resuming_with_another_reading_is_refused(trained, tmp_path):
    explainer, classifier = trained
    run = tmp_path / "run"
    shutil.copytree(explainer.parent, run)
    argv = ["fit", *TINY, "--trainer.default_root_dir", str(run), "--model.classifier", classifier]
    argv += ["--ckpt_path", str(run / "checkpoints" / "last.ckpt")]
    other = ["--model.classifier_output", "0", "--model.classifier_activation", "softmax"]
    with pytest.raises(CheckpointError, match="output 1, now 0.*allow_classifier_mismatch"):
        cli_main([*argv, *other])
