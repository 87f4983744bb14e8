"""Every command on a folder as users have it: grey PNGs and a CSV with an id, an age, free
text, a multi-class `digit` column and a binary one (`tests.data.fakes.user_folder`).

The commands run in-process through `cfgen.cli.main`, one after the other as a user would type
them; each test checks one stage's output. The explainer is given nothing but the classifier:
target, image size and channels come from the classifier's bundle.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cfgen.cli import main
from cfgen.data.folders import AttributeFolder
from cfgen.errors import ConfigError
from cfgen.io import load_bundle
from cfgen.models.blackbox import classifier_facts, load_blackbox
from cfgen.models.oracle import load_oracle
from cfgen.pipeline import parse_config
from tests.data.fakes import user_folder
from tests.helpers import judged_like

SIZE = 16
QUIET = ["--logger", "none", "--trainer.enable_progress_bar", "false"]


def cfgen(*argv) -> None:
    assert main([str(arg) for arg in argv]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("own_data")
    data = user_folder(root / "data", n=40, size=SIZE, classes=4)
    folder = ["--data.source", "folder", "--data.root", data, "--data.batch_size", "8"]
    cfgen("classifier", "fit", *folder, "--data.target", "digit=3", "--data.image_size", SIZE,
          "--trainer.default_root_dir", root / "classifier", "--trainer.max_epochs", 4,
          *QUIET)  # fmt: skip
    cfgen("oracle", "fit", *folder, "--data.target", "digit=3", "--data.image_size", SIZE,
          "--trainer.default_root_dir", root / "oracle", "--trainer.max_epochs", 8,
          "--model.width", 8, *QUIET)  # fmt: skip
    cfgen("explainer", "fit", *folder, "--model.classifier", root / "classifier/classifier.pt",
          "--trainer.default_root_dir", root / "explainer", "--trainer.max_steps", 4,
          "--data.steps_per_epoch", 2, "--monitor.n_queries", 8, "--model.generator.width", 8,
          "--model.discriminator.width", 8, *QUIET)  # fmt: skip
    cfgen("generate", "--checkpoint", root / "explainer/explainer.pt", "--input", data,
          "--out", root / "strips")  # fmt: skip
    stages = ("classifier", "oracle", "explainer", "strips")
    return {"data": data, **{name: root / name for name in stages}}


def test_the_classifier_explains_one_digit_against_the_others_on_one_channel(runs):
    facts = classifier_facts(str(runs["classifier"] / "classifier.pt"))
    assert facts == {
        "target": "digit=3",
        "attribute_names": ["digit=0", "digit=1", "digit=2", "digit=3"],
        "image_size": SIZE,
        "in_channels": 1,
        "activation": "softmax",
    }
    box = load_blackbox(str(runs["classifier"] / "classifier.pt"))
    images = torch.rand(6, 1, SIZE, SIZE) * 2 - 1
    torch.testing.assert_close(box(images), box.model(images).softmax(1)[:, 3])


def test_the_attribute_oracle_reads_every_class_and_binary_column(runs):
    oracle = load_oracle(runs["oracle"] / "oracle.pt")
    names = ["digit=0", "digit=1", "digit=2", "digit=3", "smiling"]
    assert (oracle.kind, oracle.output_names, oracle.in_channels) == ("attributes", names, 1)
    data = AttributeFolder(runs["data"], image_size=SIZE, target="digit=3")
    images = torch.stack([data[i]["image"] for i in range(len(data))])
    present = oracle(images) >= 0.5
    # The bands are easy: the oracle reads the digit of most images after a few epochs.
    agreement = (present[:, :4] == data.labels[:, :4].bool()).all(dim=1).float().mean()
    assert agreement >= 0.75, agreement


def test_the_explainer_takes_target_size_and_channels_from_the_classifier(runs):
    config = load_bundle(runs["explainer"] / "explainer.pt", "explainer")["config"]
    assert (config["image_size"], config["channels"]) == (SIZE, 1)
    assert config["classifier"]["path"] == str(runs["classifier"] / "classifier.pt")


def test_strips_of_grey_queries_are_grey(runs):
    strips = sorted((runs["strips"] / "strips").glob("*.png"))
    assert len(strips) == 40
    with Image.open(strips[0]) as picture:
        pixels = np.asarray(picture.convert("RGB")).astype(int)
    # Every pixel of the picture (frames, captions, background) is a shade of grey.
    assert np.abs(pixels - pixels[..., :1]).max() == 0


def test_demo_on_a_folder_fills_the_folder_and_target_into_every_stage(tmp_path):
    data = user_folder(tmp_path / "data", n=5)
    config = parse_config(["--data", str(data), "--target", "digit=1"])
    stages = {stage.name: stage for stage in config.resolved_stages()}
    names = ["classifier", "oracle", "judge", "robust_judge", "autoencoder", "explainer"]
    assert list(stages) == [*names, "strips", "evaluate"]
    arguments = [arg for stage in stages.values() for arg in stage.args]
    assert not any("{data}" in arg or "{target}" in arg for arg in arguments)
    classifier = stages["classifier"].args
    assert classifier[classifier.index("--data.root") + 1] == str(data.resolve())
    assert classifier[classifier.index("--data.target") + 1] == "digit=1"
    assert stages["judge"].args[stages["judge"].args.index("--seed_everything") + 1] == "1"
    evaluate = stages["evaluate"].args
    assert evaluate[evaluate.index("--data.root") + 1] == str(data.resolve())
    assert config.out == "runs/folder"
    quick = parse_config(["--data", str(data), "--target", "digit=1", "--quick"])
    assert "QUICK RUN" in quick.note and quick.out == "runs/folder_quick"


def test_demo_on_a_folder_needs_a_target_and_an_attribute_csv(tmp_path):
    data = user_folder(tmp_path / "data", n=5)
    with pytest.raises(ConfigError, match="needs --target NAME"):
        parse_config(["--data", str(data)])
    with pytest.raises(ConfigError, match="--target goes with --data"):
        parse_config(["--target", "digit=1"])
    with pytest.raises(ConfigError, match="is not an attribute folder: it needs attributes.csv"):
        parse_config(["--data", str(tmp_path), "--target", "digit=1"])


def test_cfgen_demo_runs_every_stage_on_a_tiny_folder(tmp_path):
    data = user_folder(tmp_path / "data", n=20, size=32, classes=2)
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "cfgen.cli", "demo", "--data", str(data)]
    command += ["--target", "digit=1", "--quick", "--out", str(out)]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    folders = {path.name.rsplit("-", 1)[0]: path for path in out.iterdir()}
    stages = ["classifier", "oracle", "judge", "robust_judge", "autoencoder", "explainer"]
    assert sorted(folders) == sorted([*stages, "strips", "evaluate"])
    assert all((folder / "DONE").is_file() for folder in folders.values())
    judge = classifier_facts(str(folders["judge"] / "classifier.pt"))
    assert (judge["target"], judge["in_channels"]) == ("digit=1", 1)
    assert len(list((folders["strips"] / "strips").glob("*.png"))) == 20
    results = json.loads((folders["evaluate"] / "results.json").read_text())
    # The 4 test images of the 20 (every fifth row), PE, FGSM and the latent shift (of the
    # autoencoder stage's bundle) judged by the attribute oracle and the judge classifier; the
    # folder has no region masks.
    assert results["n_queries"] == 4 and set(results["config"]["data"]) >= {"source", "root"}
    assert {"pe", "fgsm", "latent_shift", "gradient", "lime"} <= set(results["methods"])
    options = results["config"]["explainer_options"]["latent_shift"]
    assert options["autoencoder"] == str(folders["autoencoder"] / "autoencoder.pt")
    for name in ("pe", "fgsm", "latent_shift"):
        assert {"validity", "judge", "preservation"} <= set(results["methods"][name]["metrics"])
        assert "region masks" in results["methods"][name]["skipped"]["localisation"]
    assert (folders["evaluate"] / "report.html").is_file()
    assert "headline figures" in done.stdout and "skipped localisation" in done.stdout
    assert "all stages finished" in done.stdout and "QUICK RUN" in done.stdout


def evaluate_args(runs, out: Path, *extra) -> list:
    """`cfgen evaluate` of the folder's explainer, its oracle and judge, on a few quick methods."""
    return ["evaluate", "--explainer", runs["explainer"] / "explainer.pt",
            "--data.source", "folder", "--data.root", runs["data"],
            "--oracle", runs["oracle"] / "oracle.pt",
            "--judge", runs["classifier"] / "classifier.pt",
            "--out", out, "--n_real", 8, "--baselines", "[gradient]", "--adversarial", "[fgsm]",
            "--map_metrics", "[faithfulness, localisation]", "--logger", "none",
            *extra]  # fmt: skip


def test_evaluate_scores_the_folder_explainer_on_its_test_split(runs, tmp_path, capsys):
    out = tmp_path / "eval"
    cfgen(*evaluate_args(runs, out))
    results = json.loads((out / "results.json").read_text())
    # Every fifth row of the CSV is in the test split: the queries are those 8 grey images, as
    # the training data module reads them (target and image size are the classifier's).
    test = AttributeFolder(runs["data"], split="test", image_size=SIZE, target="digit=3")
    assert results["n_queries"] == len(test) == 8
    with np.load(out / "report_images.npz") as arrays:
        expected = torch.stack([test[i]["image"] for i in range(4)]).numpy()
        np.testing.assert_array_equal(arrays["queries"], expected)
        assert arrays["strip/pe"].shape[2] == 1  # one channel in the report too
    pe = results["methods"]["pe"]
    # The attribute oracle reads the explained class (validity), the other columns (MNAC) and
    # gives realism its features; the classifier as its own judge agrees with it.
    assert {"validity", "judge", "realism", "preservation", "shift"} <= set(pe["metrics"])
    # MNAC counts the other attributes changed by the successful counterfactuals only.
    preservation = pe["metrics"]["preservation"]
    assert ("mnac" in preservation) == (pe["metrics"]["shift"]["flip_rate"] > 0)
    assert 0 <= preservation.get("mnac", 0) <= 1
    shift, judge = pe["metrics"]["shift"], pe["metrics"]["judge"]
    assert judge == pytest.approx(judged_like(shift))
    # A folder has no region masks: localisation is skipped for every method, with the reason.
    assert "region masks" in pe["skipped"]["localisation"]
    assert "region masks" in results["methods"]["gradient"]["skipped"]["localisation"]
    assert "cout" in results["methods"]["gradient"]["metrics"]["faithfulness"]
    assert results["config"]["data"]["source"] == "folder"
    printed = capsys.readouterr().out
    assert "skipped" in printed and "localisation" in printed


def test_evaluate_refuses_a_target_or_size_the_explainer_was_not_made_for(runs, tmp_path, capsys):
    argv = [str(arg) for arg in evaluate_args(runs, tmp_path / "a", "--data.target", "digit=1")]
    assert main(argv) == 2
    assert "was trained with 'digit=3'" in capsys.readouterr().err
    argv = [str(arg) for arg in evaluate_args(runs, tmp_path / "b", "--data.image_size", "32")]
    assert main(argv) == 2
    assert "was trained with 16" in capsys.readouterr().err
    assert not (tmp_path / "a" / "results.json").exists()


def test_evaluate_fails_on_an_oracle_of_another_world_instead_of_skipping(runs, tmp_path, capsys):
    from cfgen.data.synthetic import FACTOR_NAMES
    from cfgen.io import save_bundle
    from cfgen.models.oracle import BUNDLE_KIND, FactorOracle

    factor_oracle = FactorOracle(FACTOR_NAMES, width=4, num_features=8)
    path = save_bundle(tmp_path / "factors.pt", BUNDLE_KIND, factor_oracle.config(), {
        **factor_oracle.state_dict()})  # fmt: skip
    argv = [str(arg) for arg in evaluate_args(runs, tmp_path / "eval", "--oracle", path)]
    assert main(argv) == 2
    assert "'digit=3' is not one of them" in capsys.readouterr().err


def test_the_bias_experiment_runs_on_a_folder_with_an_attribute_column_as_confounder(
    runs, tmp_path
):
    # The "biased" explainer is PE's own bundle: by construction both strips are the same, so
    # the confounder (the binary column `smiling`, read by the attribute oracle) drifts equally,
    # nothing is found, and the bias strips are judged exactly as PE's are.
    out = tmp_path / "eval"
    explainer = runs["explainer"] / "explainer.pt"
    cfgen(*evaluate_args(runs, out, "--bias.biased_explainer", explainer,
                         "--bias.confounder", "smiling"))  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    bias, pe = results["bias"], results["methods"]["pe"]["metrics"]
    assert bias["confounder"] == "smiling" and bias["detected"] is False
    assert bias["biased"]["drift"] == pytest.approx(bias["unbiased"]["drift"])
    assert bias["biased"]["reading_flip"] == pytest.approx(pe["validity"]["reading_flip"])
    assert bias["biased"]["judge_flip_rate"] == pytest.approx(pe["judge"]["judge_flip_rate"])
    assert bias["finding"].startswith(
        "no bias found: the biased classifier's strips change smiling"
    )


def test_the_bias_experiment_names_the_folders_columns_when_the_confounder_is_not_one(
    runs, tmp_path, capsys
):
    explainer = runs["explainer"] / "explainer.pt"
    argv = evaluate_args(runs, tmp_path / "eval", "--bias.biased_explainer", explainer,
                         "--bias.confounder", "glasses")  # fmt: skip
    assert main([str(arg) for arg in argv]) == 2
    error = capsys.readouterr().err
    assert "bias.confounder 'glasses' is not an oracle factor" in error and "smiling" in error
