"""A few real training steps through the CLI, on 16 px synthetic faces and a tiny explainer."""

import copy
import csv
import json
import math
import re
import shutil

import pytest
import torch

from cfgen.errors import CheckpointError, ConfigError, TrainingDivergedError
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.io import file_sha256, load_bundle, safe_torch_load
from cfgen.losses import LOSSES
from cfgen.models.blocks import ConditionalBatchNorm2d
from cfgen.train.explainer import ExplainerModule
from cfgen.train.explainer_cli import cli_main, not_learned
from cfgen.train.explainer_options import LossWeights
from cfgen.train.explainer_steps import (
    linear_decay,
    optimizer_steps,
    standing_statistics,
)
from tests.helpers import tiny_networks, write_classifier_bundle

TINY = [
    "--data.image_size", "16", "--data.n_train", "64", "--data.n_val", "8", "--data.n_test", "8",
    "--data.batch_size", "8", "--data.steps_per_epoch", "2",
    "--model.generator.width", "4", "--model.generator.max_width", "8",
    "--model.discriminator.width", "4", "--model.discriminator.max_width", "8",
    "--model.optimisation.n_critic", "1",
    "--monitor.every_n_steps", "2", "--monitor.n_queries", "4",
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
    differences = [(weights[f"ema.module.{k}"] - v).abs().max() for k, v in generator.items()]
    assert max(differences) > 0
    assert not any(key.startswith("classifier.") for key in weights)  # not the explainer's


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
        fit(run_dir, classifier, 12, "--ckpt_path", str(last))
    assert last.read_bytes() == before
    weights = safe_torch_load(last)["state_dict"]
    assert all(bool(torch.isfinite(value).all()) for value in weights.values())


def test_validation_logs_val_figures_and_keeps_the_best_checkpoint(trained, capsys):
    run_dir, classifier = trained
    history = json.loads((run_dir / "monitor.json").read_text())
    # validation every 2 generator steps (--monitor.every_n_steps 2) of a 4-step run
    assert [record["step"] for record in history] == [2, 4]
    for name in ("compat_mae", "flip_rate", "monotonicity", "identity_l1"):
        assert all(math.isfinite(record[f"val/{name}"]) for record in history), name
    # NaN when no validation query of this tiny run lies in an end bin (no pair to compare)
    auc = [record["val/critic_auc"] for record in history]
    assert all(math.isnan(value) or 0.0 <= value <= 1.0 for value in auc), auc
    best = run_dir / "checkpoints" / "best.ckpt"
    checkpoint = safe_torch_load(best)
    kept = min(history, key=lambda record: record["val/compat_mae"])
    assert checkpoint["global_step"] == optimizer_steps(kept["step"], 1)
    # `validate` scores a checkpoint with the same figures (the same EMA generator, queries)
    capsys.readouterr()
    argv = ["validate", *TINY, "--trainer.default_root_dir", str(run_dir / "validate")]
    argv += ["--model.classifier", str(classifier), "--ckpt_path", str(best)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    value = float(re.search(r"val/compat_mae\s*│\s*([0-9.]+)", printed).group(1))
    assert value == pytest.approx(kept["val/compat_mae"], abs=1e-4)


def test_an_explainer_that_has_not_learned_is_named_so():
    # fewer than half of the strips cross the decision: a warning with the figures and the causes
    warning = not_learned({"step": 500, "val/flip_rate": 0.0, "val/identity_l1": 0.0})
    assert "only 0% of the validation queries" in warning
    assert "identity L1 0.000" in warning and "--generator_steps" in warning
    assert "only 49%" in not_learned({"val/flip_rate": 0.49})
    assert not_learned({"val/flip_rate": 0.5, "val/identity_l1": 0.01}) is None
    assert not_learned({"val/compat_mae": 0.1}) is None  # no flip figure: nothing to say


def test_the_end_of_a_run_warns_exactly_when_its_last_validation_did_not_flip(tmp_path, capfd):
    classifier = write_classifier_bundle(tmp_path / "classifier.pt", size=16)
    # No classifier term: nothing pulls the strips across the decision.
    assert fit(tmp_path / "run", classifier, 4, "--model.weights.classifier", "0") == 0
    last = json.loads((tmp_path / "run" / "monitor.json").read_text())[-1]
    assert ("has not learned" in capfd.readouterr().err) == (last["val/flip_rate"] < 0.5)


def test_generator_steps_set_the_length_of_a_run(tmp_path, trained):
    _, classifier = trained
    argv = ["fit", *TINY, "--trainer.default_root_dir", str(tmp_path / "run")]
    argv += ["--model.classifier", str(classifier), "--model.optimisation.n_critic", "2"]
    assert cli_main([*argv, "--generator_steps", "3"]) == 0
    checkpoint = safe_torch_load(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == optimizer_steps(3, 2) == 9
    with pytest.raises(ConfigError, match="give only one"):
        cli_main([*argv, "--generator_steps", "3", "--trainer.max_steps", "9"])


def test_lr_decay_falls_linearly_to_zero_over_the_end_of_the_run(tmp_path, trained):
    factor = linear_decay(10, 0.5)
    expected = [1.0] * 6 + [0.8, 0.6, 0.4, 0.2, 0.0]
    assert [factor(step) for step in range(11)] == pytest.approx(expected)
    assert [linear_decay(10, 0.0)(step) for step in (0, 10)] == [1.0, 1.0]
    _, classifier = trained
    run_dir = tmp_path / "run"
    assert (
        fit(run_dir, classifier, 8, "--model.optimisation.lr_decay", "0.5") == 0
    )  # 4 generator steps
    checkpoint = safe_torch_load(run_dir / "checkpoints" / "last.ckpt")
    # both optimisers stepped with the generator: at the end of the run their rates are 0
    assert [state["last_epoch"] for state in checkpoint["lr_schedulers"]] == [4, 4]
    states = checkpoint["optimizer_states"]
    rates = [group["lr"] for state in states for group in state["param_groups"]]
    assert rates == [0.0, 0.0]
    with pytest.raises(ConfigError, match="lr_decay"):
        fit(tmp_path / "other", classifier, 8, "--model.optimisation.lr_decay", "1.5")
    # a run measured in epochs has no known end to decay towards
    epochs = ("--trainer.max_epochs", "1", "--model.optimisation.lr_decay", "0.5")
    with pytest.raises(ConfigError, match="lr_decay needs the run's length"):
        fit(tmp_path / "epochs", classifier, -1, *epochs)


def test_every_generator_option_trains_and_exports_what_it_trained(tmp_path, trained):
    _, classifier = trained
    run_dir = tmp_path / "run"
    options = ["--model.generator.output", "blend", "--model.generator.skips", "true"]
    options += ["--model.generator.edit_downsample", "2", "--model.weights.mask", "0.5"]
    options += ["--model.weights.mask_tv", "0.1", "--model.weights.mask_binary", "0.5"]
    options += [
        "--model.classifier_term.view_shift",
        "1.0",
        "--model.generator.mask_downsample",
        "4",
    ]
    options += ["--model.weights.redraw", "1.0"]
    options += ["--model.discriminator.views", "[translation, cutout, colour]"]
    options += [
        "--model.classifier_term.view_blur",
        "1.0",
        "--model.classifier_term.view_noise",
        "0.05",
    ]
    options += ["--model.classifier_term.loss", "classifier_logit_l1"]
    assert fit(run_dir, classifier, 4, *options) == 0
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    for name in ("loss/mask", "loss/mask_tv", "loss/mask_binary", "loss/redraw", "loss/classifier"):
        assert any(row.get(name) for row in rows), name
    explainer = ProgressiveExaggeration.from_checkpoint(run_dir / "explainer.pt")
    from_ckpt = ProgressiveExaggeration.from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    generator = explainer.generator
    assert (generator.output, generator.skips, generator.edit_downsample) == ("blend", True, 2)
    assert generator.mask_downsample == 4
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(explainer.counterfactual(x, 0.9), from_ckpt.counterfactual(x, 0.9))


def test_mask_penalties_need_the_blend_output(trained):
    _, classifier = trained
    with pytest.raises(ConfigError, match="set generator.output: blend"):
        ExplainerModule(
            str(classifier), image_size=16, generator={"output": "residual"}, weights={"mask": 1}
        )
    with pytest.raises(ConfigError, match="weights.mask_binary"):
        ExplainerModule(str(classifier), image_size=16, weights=LossWeights(mask_binary=1))


def test_the_context_loss_reads_the_region_masks_of_the_data(tmp_path, trained):
    _, classifier = trained
    run_dir = tmp_path / "run"
    options = ["--data.context_region", "mouth", "--model.weights.context", "1.0"]
    assert fit(run_dir, classifier, 2, *options) == 0
    with open(run_dir / "metrics.csv") as handle:
        values = [
            float(row["loss/context"]) for row in csv.DictReader(handle) if row.get("loss/context")
        ]
    assert values and all(value > 0 for value in values)
    with pytest.raises(ConfigError, match="set data.context_region"):
        fit(tmp_path / "other", classifier, 2, "--model.weights.context", "1.0")


# --- batch-norm statistics of the rendering generator ------------------------------------------


def test_the_module_recomputes_the_ema_statistics_from_its_last_batches_not_training_draws(
    tmp_path,
):
    classifier = write_classifier_bundle(tmp_path / "classifier.pt", size=16)
    module = ExplainerModule(
        str(classifier), image_size=16, averaging={"standing_images": 20}, **tiny_networks()
    )
    assert not module.standing_statistics()  # no batch seen yet: the statistics are kept
    for size in (8, 8, 8, 8):
        images = torch.rand(size, 3, 16, 16) * 2 - 1
        module._remember(images, torch.randint(10, (size,)))
    # The last batches holding >= 20 images: three of 8; the first was dropped.
    assert [len(images) for images, _ in module.recent_batches.batches] == [8, 8, 8]
    with torch.no_grad():  # bins that matter: an untrained generator renders every bin alike
        for norm in module.ema_generator.modules():
            if isinstance(norm, ConditionalBatchNorm2d):
                norm.gamma.weight.uniform_(0.5, 1.5)
                norm.beta.weight.normal_()
    expected = copy.deepcopy(module.ema_generator)
    draws = torch.Generator().manual_seed(0)
    batches = [
        (x, c, torch.randint(10, c.shape, generator=draws))
        for x, c in module.recent_batches.batches
    ]
    standing_statistics(expected, batches)
    state = torch.get_rng_state()
    assert module.standing_statistics()
    assert torch.equal(torch.get_rng_state(), state)  # training's random stream is untouched
    for (name, mine), theirs in zip(
        module.ema_generator.named_buffers(), expected.buffers(), strict=True
    ):
        torch.testing.assert_close(mine, theirs, msg=name)
    running = ExplainerModule(
        str(classifier), image_size=16, averaging={"bn_statistics": "running"}, **tiny_networks()
    )
    running._remember(images, torch.randint(10, (8,)))
    assert not running.recent_batches and not running.standing_statistics()
    with pytest.raises(ConfigError, match="unknown averaging.bn_statistics 'batch'"):
        ExplainerModule(str(classifier), averaging={"bn_statistics": "batch"})
    with pytest.raises(ConfigError, match="standing_images must be >= 1.*got 0"):
        ExplainerModule(str(classifier), averaging={"standing_images": 0})


def test_help_describes_every_option_and_a_bad_choice_is_refused(capsys, tmp_path, trained):
    import dataclasses
    import typing

    import docstring_parser

    from cfgen.train.explainer import ExplainerModule as Module

    assert cli_main(["fit", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    hints = typing.get_type_hints(Module.__init__)
    groups = ("generator", "discriminator", "weights", "classifier_term", "optimisation")
    for group in (*groups, "averaging"):
        documented = {
            p.arg_name: p.description for p in docstring_parser.parse(hints[group].__doc__).params
        }
        for field in dataclasses.fields(hints[group]):
            assert f"--model.{group}.{field.name} " in text, (group, field.name)
            opening = " ".join(documented[field.name].split()[:6])
            assert opening in text, (group, field.name, opening)
    assert "--model.averaging.bn_statistics {edit,running}" in text
    _, classifier = trained
    with pytest.raises(ConfigError, match="model.generator.output"):
        fit(tmp_path / "run", classifier, 2, "--model.generator.output", "redrawn")
