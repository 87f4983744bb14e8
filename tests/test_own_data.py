"""Every command on a folder as users have it: grey PNGs and a CSV with an id, an age, free
text, a multi-class `digit` column and a binary one (`tests.data.fakes.user_folder`).

The commands run in-process through `cfgen.cli.main`, one after the other as a user would type
them; each test checks one stage's output. The explainer is given nothing but the classifier:
target, image size and channels come from the classifier's bundle.
"""

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
          "--data.steps_per_epoch", 2, "--monitor.n_queries", 8, "--model.generator_width", 8,
          "--model.discriminator_width", 8, *QUIET)  # fmt: skip
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
    assert list(stages)[:5] == ["classifier", "oracle", "judge", "explainer", "strips"]
    arguments = [arg for stage in stages.values() for arg in stage.args]
    assert not any("{data}" in arg or "{target}" in arg for arg in arguments)
    classifier = stages["classifier"].args
    assert classifier[classifier.index("--data.root") + 1] == str(data.resolve())
    assert classifier[classifier.index("--data.target") + 1] == "digit=1"
    assert stages["judge"].args[stages["judge"].args.index("--seed_everything") + 1] == "1"
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
    assert sorted(folders) == sorted(["classifier", "oracle", "judge", "explainer", "strips"])
    assert all((folder / "DONE").is_file() for folder in folders.values())
    judge = classifier_facts(str(folders["judge"] / "classifier.pt"))
    assert (judge["target"], judge["in_channels"]) == ("digit=1", 1)
    assert len(list((folders["strips"] / "strips").glob("*.png"))) == 20
    assert "all stages finished" in done.stdout and "QUICK RUN" in done.stdout
