"""A few real training steps through the CLI, on 16 px synthetic faces and a tiny explainer."""

import csv
import math
import shutil

import pytest
import torch

from cfgen.errors import CheckpointError, TrainingDivergedError
from cfgen.io import file_sha256, load_bundle, safe_torch_load
from cfgen.losses import LOSSES
from cfgen.train.explainer import cli_main, update_ema
from tests.helpers import write_classifier_bundle

TINY = [
    "--data.image_size", "16", "--data.n_train", "64", "--data.n_val", "8", "--data.n_test", "8",
    "--data.batch_size", "8", "--data.steps_per_epoch", "2",
    "--model.generator_width", "4", "--model.generator_max_width", "8",
    "--model.discriminator_width", "4", "--model.discriminator_max_width", "8",
    "--model.n_critic", "1", "--monitor.every_n_steps", "2", "--monitor.n_queries", "4",
    "--logger", "csv", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1",
]  # fmt: skip


def fit(run_dir, classifier, max_steps, *extra):
    argv = ["fit", *TINY, "--trainer.default_root_dir", str(run_dir)]
    argv += ["--model.classifier", str(classifier), "--trainer.max_steps", str(max_steps)]
    return cli_main([*argv, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run directory after 4 generator steps (2 epochs of 2 batches), and its classifier."""
    root = tmp_path_factory.mktemp("explainer")
    classifier = write_classifier_bundle(root / "classifier.pt", size=16)
    assert fit(root / "run", classifier, 8) == 0
    return root / "run", classifier


@pytest.fixture
def run_copy(trained, tmp_path):
    run_dir, classifier = trained
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run", classifier


def test_training_writes_the_run_directory(trained):
    run_dir, classifier = trained
    for name in ("config.yaml", "explainer.pt", "checkpoints/last.ckpt", "monitor.json"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "strips").glob("step_*.png"))
    bundle = load_bundle(run_dir / "explainer.pt", "explainer")
    assert bundle["config"]["classifier"]["sha256"] == file_sha256(classifier)
    assert bundle["config"]["generator"]["image_size"] == 16


def test_losses_are_logged_and_finite(trained):
    with open(trained[0] / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    for name in ("loss/discriminator", "loss/generator", "loss/classifier", "loss/cycle"):
        values = [float(row[name]) for row in rows if row.get(name)]
        assert values, name
        assert all(math.isfinite(value) for value in values), name
    assert any(row.get("val/compat_mae") for row in rows)


def test_checkpoint_records_the_classifier_and_an_ema_generator(trained):
    run_dir, classifier = trained
    checkpoint = safe_torch_load(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["cfgen_classifier"]["sha256"] == file_sha256(classifier)
    weights = checkpoint["state_dict"]
    generator = {
        k[len("generator.") :]: v for k, v in weights.items() if k.startswith("generator.")
    }
    differences = [(weights[f"ema_generator.{k}"] - v).abs().max() for k, v in generator.items()]
    assert max(differences) > 0
    assert not any(key.startswith("classifier.") for key in weights)  # not the explainer's


def test_update_ema_moves_towards_the_model():
    average, model = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    expected = 0.75 * average.weight.detach() + 0.25 * model.weight.detach()
    update_ema(average, model, decay=0.75)
    torch.testing.assert_close(average.weight.detach(), expected)


def test_resuming_with_another_classifier_is_refused(run_copy):
    run_dir, _ = run_copy
    other = write_classifier_bundle(run_dir.parent / "other.pt", size=16, seed=1)
    last = str(run_dir / "checkpoints" / "last.ckpt")
    with pytest.raises(CheckpointError, match="allow_classifier_mismatch"):
        fit(run_dir, other, 12, "--ckpt_path", last)
    allowed = ("--ckpt_path", last, "--model.allow_classifier_mismatch", "true")
    assert fit(run_dir, other, 10, *allowed) == 0


def test_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(run_copy, monkeypatch):
    run_dir, classifier = run_copy
    nan_loss = lambda logits, target: logits.sum() * float("nan")  # noqa: E731
    monkeypatch.setitem(LOSSES, "classifier_cross_entropy", nan_loss)
    last = run_dir / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(TrainingDivergedError, match="loss 'classifier' is nan"):
        fit(
            run_dir, classifier, 12, "--ckpt_path", str(last), "--model.classifier_loss", "nan_loss"
        )
    assert last.read_bytes() == before
    weights = safe_torch_load(last)["state_dict"]
    assert all(bool(torch.isfinite(value).all()) for value in weights.values())
