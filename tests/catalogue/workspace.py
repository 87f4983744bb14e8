"""The workspace every catalogue case runs in, the `Case` record, and the builders of inputs
that cases of several areas share (folders, command lines of the tiny models).

A workspace is a temporary folder with a classifier and its explainer (`models/`, 16 px,
untrained) and a run folder holding earlier work (`run/`: config, last.ckpt, classifier.pt,
results.json) that no failure may damage.
"""

import contextlib
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.io import atomic_write_json, atomic_write_text, save_bundle
from cfgen.models.autoencoder import BUNDLE_KIND as AUTOENCODER_KIND
from cfgen.models.autoencoder import Autoencoder
from tests.data.fakes import random_pixels, write_csv, write_png
from tests.model_files import IMAGE_SIZE, write_model_pair


@dataclass
class Workspace:
    root: Path
    classifier: Path
    explainer: Path
    run: Path  # earlier work that no failure may damage
    monkeypatch: pytest.MonkeyPatch
    cleanup: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # at the end


@dataclass
class Case:
    """One catalogue row: `argv` (a `cfgen` command line) or `call` (Python API) fails, or
    `accepted` runs an input cfgen takes on purpose and asserts what it makes of it.

    What the user must read is the row's last cell in docs/BAD_INPUTS.md, not a copy here.
    `exit_code`: what the command returns (0 for a warning or a note, 130 for an interrupt).
    """

    id: str
    argv: Callable[[Workspace], list] | None = None
    call: Callable[[Workspace], object] | None = None
    exit_code: int = 2
    accepted: Callable[[Workspace], None] | None = None


def make_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The models and the run folder of earlier work, in `tmp_path` (the working folder)."""
    monkeypatch.chdir(tmp_path)
    classifier, explainer_path = write_model_pair(tmp_path / "models")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(classifier, run / "classifier.pt")
    torch.save(
        {"global_step": 7, "state_dict": {"w": torch.ones(2)}}, run / "checkpoints/last.ckpt"
    )
    atomic_write_text(run / "config.yaml", "model:\n  arch: small_cnn\n")
    atomic_write_json(run / "results.json", {"earlier": "results"})
    return Workspace(tmp_path, classifier, explainer_path, run, monkeypatch)


def attribute_folder(ws: Workspace, rows: list[list], header=("file", "Smiling")) -> Path:
    """`data/` with one good 16 px image and `attributes.csv` holding `rows`."""
    data = ws.root / "data"
    write_png(data / "images" / "good.png", random_pixels(0, IMAGE_SIZE, IMAGE_SIZE))
    write_csv(data / "attributes.csv", list(header), rows)
    return data


SPLITS = ("train", "val", "test")


def split_folder(ws: Workspace, digits: Sequence[str] = ("3", "4", "3")) -> Path:
    """A train / val / test folder of one image with a binary and a multi-class column."""
    rows = [
        ["images/good.png", split, 1, digit] for split, digit in zip(SPLITS, digits, strict=True)
    ]
    return attribute_folder(ws, rows, header=("file", "split", "Smiling", "digit"))


def generate(ws: Workspace, input_spec, *extra) -> list:
    out = ws.root / "strips"
    return ["generate", "--checkpoint", ws.explainer, "--input", input_spec, "--out", out, *extra]


def fit(ws: Workspace, *extra) -> list:
    """`cfgen classifier fit` into the run folder that holds earlier work."""
    return [
        "classifier", "fit", "--trainer.default_root_dir", ws.run, "--logger", "none",
        "--trainer.max_steps", "1", "--data.image_size", "16",
        "--data.n_train", "8", "--data.n_val", "8", "--data.n_test", "8", *extra,
    ]  # fmt: skip


def explainer_fit(ws: Workspace, *extra) -> list:
    """`cfgen explainer fit` of the workspace's classifier into the run folder."""
    return [
        "explainer", "fit", "--model.classifier", ws.classifier, "--trainer.default_root_dir",
        ws.run, "--logger", "none", "--trainer.max_steps", "1", "--data.n_train", "8",
        "--data.n_val", "8", "--data.n_test", "8", *extra,
    ]  # fmt: skip


def explainer(ws: Workspace) -> ProgressiveExaggeration:
    return ProgressiveExaggeration.from_checkpoint(ws.explainer)


def without_gpu(ws: Workspace) -> Workspace:
    """A machine without a GPU, also where the test runs on one: Lightning finds no backend."""
    from pytorch_lightning.accelerators import CUDAAccelerator, MPSAccelerator

    for accelerator in (CUDAAccelerator, MPSAccelerator):
        ws.monkeypatch.setattr(accelerator, "is_available", staticmethod(lambda: False))
    ws.monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ws.monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    return ws


def autoencoder_file(ws: Workspace, size: int) -> Path:
    """An untrained autoencoder bundle for `size` px RGB images."""
    autoencoder = Autoencoder(size, 3, code_channels=4, width=4)
    config, state = autoencoder.config(), autoencoder.state_dict()
    return save_bundle(ws.root / f"autoencoder{size}.pt", AUTOENCODER_KIND, config, state)


def evaluate_latent_shift(ws: Workspace, options: str) -> list:
    """`cfgen evaluate` of PE and latent shift only, on 2 queries."""
    return ["evaluate", "--explainer", ws.explainer, "--out", ws.root / "eval", "--baselines",
            "[]", "--adversarial", "[latent_shift]", "--explainer_options", options,
            "--n_queries", "2", "--n_real", "0", "--logger", "none"]  # fmt: skip


def below_a_file(ws: Workspace) -> Path:
    """An output folder whose parent is a file."""
    (ws.root / "notes.txt").write_text("a file, not a folder")
    return ws.root / "notes.txt" / "out"
