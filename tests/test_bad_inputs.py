"""The bad-input catalogue (docs/BAD_INPUTS.md): one case per row, same ids as the table.

Each case feeds one bad input through the entry point a user would hit (`cfgen ...` in-process,
or the Python API) and asserts the stable part of the message. Every case runs next to a run
folder holding earlier work (config, last.ckpt, classifier.pt, results.json): after the failure
every one of those files must be byte-for-byte intact.
"""

import errno
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from cfgen.cli import main
from cfgen.data.datamodule import AttributeDataModule
from cfgen.data.folders import AttributeFolder
from cfgen.errors import CfgenError
from cfgen.evaluate.closeness import build_lpips
from cfgen.evaluate.realism import inception_features
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.io import atomic_write_json, atomic_write_text
from cfgen.models.blackbox import BlackBox, load_blackbox
from tests.data.fakes import random_pixels, write_csv, write_png
from tests.model_files import (
    IMAGE_SIZE,
    write_classifier_bundle,
    write_crafted_export,
    write_crafted_pickle,
    write_model_pair,
)


@dataclass
class Workspace:
    root: Path
    classifier: Path
    explainer: Path
    run: Path  # earlier work that no failure may damage
    monkeypatch: pytest.MonkeyPatch


@dataclass
class Case:
    """One catalogue row: `argv` (a `cfgen` command line) or `call` (Python API) fails."""

    id: str
    message: str  # the stable part of what the user reads
    argv: Callable[[Workspace], list] | None = None
    call: Callable[[Workspace], object] | None = None
    exit_code: int = 2


# --- builders of bad inputs -----------------------------------------------------------------


def attribute_folder(ws: Workspace, rows: list[list], header=("file", "Smiling")) -> Path:
    """`data/` with one good 16 px image and `attributes.csv` holding `rows`."""
    data = ws.root / "data"
    write_png(data / "images" / "good.png", random_pixels(0, IMAGE_SIZE, IMAGE_SIZE))
    write_csv(data / "attributes.csv", list(header), rows)
    return data


SPLITS = ("train", "val", "test")


def folder_with_file(ws: Workspace, content: bytes) -> Path:
    data = attribute_folder(ws, [["images/good.png", 1], ["images/bad.png", 0]])
    (data / "images" / "bad.png").write_bytes(content)
    return data


def same_stem_twice(ws: Workspace) -> Path:
    """`face.png` and `face.jpg`: one strip file name for two queries."""
    folder = ws.root / "photos"
    write_png(folder / "face.png", random_pixels(0, IMAGE_SIZE, IMAGE_SIZE))
    write_png(folder / "face.jpg", random_pixels(1, IMAGE_SIZE, IMAGE_SIZE))
    return folder


def small_pixel_limit(ws: Workspace) -> Path:
    """A folder of one 16 x 16 image, and PIL's decompression-bomb limit lowered to 100 pixels
    so that it counts as a bomb (a real one would take gigabytes to write)."""
    from PIL import Image

    ws.monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    return attribute_folder(ws, [["images/good.png", 1]])


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


def split_folder(ws: Workspace, digits: Sequence[str] = ("3", "4", "3")) -> Path:
    """A train / val / test folder of one image with a binary and a multi-class column."""
    rows = [
        ["images/good.png", split, 1, digit] for split, digit in zip(SPLITS, digits, strict=True)
    ]
    return attribute_folder(ws, rows, header=("file", "split", "Smiling", "digit"))


def explainer(ws: Workspace) -> ProgressiveExaggeration:
    return ProgressiveExaggeration.from_checkpoint(ws.explainer)


def with_nan(ws: Workspace) -> object:
    pe = explainer(ws)
    images = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    pe.exaggerate(images)  # the classifier's first-use checks pass on clean images...
    images[1, 0, 3, 3] = float("nan")
    return pe.exaggerate(images)  # ...and a NaN later is still caught


def box(model: torch.nn.Module, output: str = "logits") -> BlackBox:
    return BlackBox(model, target_index=0, output=output, activation="sigmoid")


class Returns(torch.nn.Module):
    """A classifier returning `make(x)`: stands for a model that misbehaves."""

    def __init__(self, make: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.make = make

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.make(x)


def truncated(ws: Workspace) -> Path:
    path = ws.root / "truncated.pt"
    path.write_bytes(ws.classifier.read_bytes()[:1000])
    return path


def empty_file(ws: Workspace) -> Path:
    path = ws.root / "empty.pt"
    path.write_bytes(b"")
    return path


def yaml_with_typo(ws: Workspace) -> Path:
    path = ws.root / "typo.yaml"
    path.write_text("model:\n  arhc: small_cnn\n")
    return path


def disk_full_on_write(ws: Workspace) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    ws.monkeypatch.setattr(os, "fsync", no_space)
    atomic_write_json(ws.run / "results.json", {"new": "results"})


def empty_test_split(ws: Workspace) -> None:
    rows = [["images/good.png", "train", 1], ["images/good.png", "val", 0]]
    data = attribute_folder(ws, rows, header=("file", "split", "Smiling"))
    AttributeDataModule(source="folder", root=str(data), image_size=16).setup()


def no_torch_cache(ws: Workspace, load: Callable[[], object]) -> object:
    ws.monkeypatch.setenv("TORCH_HOME", str(ws.root / "empty_torch_cache"))
    return load()


# --- the catalogue ---------------------------------------------------------------------------

CASES = [
    # data
    Case("data-corrupt-image", "cannot read image",
         argv=lambda ws: generate(ws, folder_with_file(ws, b"not a png"))),
    Case("data-empty-image", "cannot read image",
         argv=lambda ws: generate(ws, folder_with_file(ws, b""))),
    Case("data-decompression-bomb", "exceeds limit",
         argv=lambda ws: generate(ws, small_pixel_limit(ws))),
    Case("data-missing-image", "image file(s) listed in",
         argv=lambda ws: generate(ws, attribute_folder(ws, [["images/absent.png", 1]]))),
    Case("data-csv-missing-column", "has no column(s) ['file']",
         call=lambda ws: AttributeFolder(attribute_folder(ws, [["images/good.png", 1]],
                                                          header=("path", "Smiling")))),
    Case("data-csv-empty", "is empty; it needs a header row",
         call=lambda ws: (attribute_folder(ws, []) / "attributes.csv").write_text("")
         or AttributeFolder(ws.root / "data")),
    Case("data-label-not-binary", "label '2' is not binary; use 1 / 0 (or 1 / -1), or explain one",
         call=lambda ws: AttributeFolder(attribute_folder(ws, [["images/good.png", 2]]),
                                         target="Smiling")),
    Case("data-no-target", "no target: name the attribute to explain with --data.target",
         argv=lambda ws: fit(ws, "--data.source", "folder", "--data.root", split_folder(ws))),
    Case("data-blank-class-label", "line 3, column 'digit': blank label; fill it or drop the row",
         argv=lambda ws: fit(ws, "--data.source", "folder", "--data.target", "digit=3",
                             "--data.root", split_folder(ws, ["3", "", "4"]))),
    Case("data-unsafe-file-name", "unsafe file name '../x.png'",
         argv=lambda ws: generate(ws, attribute_folder(ws, [["../x.png", 1]]))),
    Case("data-empty-split", "the test split is empty; give it rows",
         call=empty_test_split),
    Case("data-wrong-size", "this explainer takes images (N, 3, 16, 16); got shape (2, 3, 32, 32)",
         call=lambda ws: explainer(ws).exaggerate(torch.zeros(2, 3, 32, 32))),
    Case("data-wrong-channels", "got shape (2, 1, 16, 16)",
         call=lambda ws: explainer(ws).exaggerate(torch.zeros(2, 1, 16, 16))),
    Case("data-not-scaled", "images must be scaled to [-1, 1]; got values in [0, 255]",
         call=lambda ws: explainer(ws).exaggerate(torch.linspace(0, 255, 1536).view(2, 3, 16, 16))),
    Case("data-nan-in-inputs", "contain NaN or inf", call=with_nan),
    Case("data-duplicate-query-ids", "would both be written as strips/face.png",
         argv=lambda ws: generate(ws, same_stem_twice(ws))),
    Case("data-input-missing", "is neither a folder nor 'synthetic:SPLIT'",
         argv=lambda ws: generate(ws, ws.root / "absent")),
    Case("data-no-images", "no images in",
         argv=lambda ws: generate(ws, (ws.root / "empty").mkdir() or ws.root / "empty")),
    # config
    Case("config-typo-command-line", "unrecognized arguments: --model.arhc",
         argv=lambda ws: fit(ws, "--model.arhc", "small_cnn")),
    Case("config-typo-yaml", "does not accept option 'model.arhc'",
         argv=lambda ws: fit(ws, "--config", yaml_with_typo(ws))),
    Case("config-file-missing", "File does not exist",
         argv=lambda ws: fit(ws, "--config", ws.root / "absent.yaml")),
    Case("config-wrong-type", 'Parser key "model.lr"',
         argv=lambda ws: fit(ws, "--model.lr", "fast")),
    Case("config-unknown-source", "unknown data source 'imagenet'",
         argv=lambda ws: fit(ws, "--data.source", "imagenet")),
    Case("config-unknown-target", "unknown target attribute 'Smiles'",
         argv=lambda ws: fit(ws, "--data.target", "Smiles")),
    Case("config-batch-size-zero", "batch_size must be at least 1, got 0",
         argv=lambda ws: fit(ws, "--data.batch_size", "0")),
    Case("config-target-not-the-classifiers", "data.target is 'Eyeglasses' but the classifier",
         argv=lambda ws: explainer_fit(ws, "--data.target", "Eyeglasses")),
    Case("config-bad-channels", "channels must be 1 (grey), 3 (RGB) or unset, got 2",
         argv=lambda ws: fit(ws, "--data.channels", "2")),
    Case("config-demo-data-without-target", "cfgen demo --data needs --target NAME",
         argv=lambda ws: ["demo", "--data", split_folder(ws), "--out", ws.root / "demo"]),
    Case("config-demo-data-not-a-folder", "is not an attribute folder: it needs attributes.csv",
         argv=lambda ws: ["demo", "--data", ws.root, "--target", "Smiling"]),
    Case("config-unknown-arch", "unknown classifier arch 'vgg'",
         argv=lambda ws: fit(ws, "--model.arch", "vgg")),
    Case("config-folder-without-root", "data source 'folder' needs `root`",
         argv=lambda ws: fit(ws, "--data.source", "folder")),
    Case("config-unknown-baseline", "unknown explainer 'nope'",
         argv=lambda ws: ["evaluate", "--explainer", ws.explainer, "--out", ws.root / "eval",
                          "--baselines", "[nope]", "--n_queries", "4", "--n_real", "0"]),
    # classifier
    Case("classifier-logits-declared-probabilities", "but output='probabilities' was declared",
         call=lambda ws: box(Returns(lambda x: x.mean((1, 2, 3))[:, None] * 5), "probabilities")(
             torch.linspace(-1, 1, 2 * 768).view(2, 3, 16, 16))),
    Case("classifier-nan-output", "the classifier returned non-finite values",
         call=lambda ws: box(Returns(lambda x: torch.full((len(x), 1), float("nan"))))(
             torch.zeros(2, 3, 16, 16))),
    Case("classifier-wrong-output-shape", "the classifier returned shape (3, 1) for 2 images",
         call=lambda ws: box(Returns(lambda x: torch.zeros(len(x) + 1, 1)))(
             torch.zeros(2, 3, 16, 16))),
    Case("classifier-wrong-input-channels", "the classifier expects 3-channel images; got 1",
         call=lambda ws: load_blackbox(str(ws.classifier))(torch.zeros(2, 1, 16, 16))),
    Case("classifier-file-missing", "classifier file not found",
         argv=lambda ws: generate(ws, "synthetic:test", "--classifier", ws.root / "absent.pt",
                                  "--allow-classifier-mismatch")),
    Case("classifier-wrong-kind", "holds a 'explainer' model, expected 'classifier'",
         call=lambda ws: load_blackbox(str(ws.explainer))),
    Case("classifier-import-not-allowed", "would import and run Python code",
         call=lambda ws: load_blackbox("os.path:join")),
    Case("classifier-torch-export-pickled", "as pickles, which would run code",
         call=lambda ws: load_blackbox(
             str(write_crafted_export(ws.root / "c.pt2", ws.root / "ran")))),
    Case("classifier-not-the-explained-one", "is not the classifier",
         argv=lambda ws: generate(ws, "synthetic:test", "--classifier",
                                  write_classifier_bundle(ws.root / "other.pt", seed=1))),
    # checkpoint
    Case("checkpoint-truncated", "the file is corrupt or not a torch file",
         argv=lambda ws: generate(ws, "synthetic:test", "--classifier", truncated(ws),
                                  "--allow-classifier-mismatch")),
    Case("checkpoint-empty-file", "the file is corrupt or not a torch file",
         call=lambda ws: ProgressiveExaggeration.from_checkpoint(empty_file(ws))),
    Case("checkpoint-runs-code", "would run code when unpickled",
         argv=lambda ws: fit(ws, "--ckpt_path", write_crafted_pickle(
             ws.root / "evil.ckpt", ws.root / "ran", as_torch_zip=True))),
    Case("checkpoint-resume-missing", "checkpoint file not found",
         argv=lambda ws: fit(ws, "--ckpt_path", ws.root / "absent.ckpt")),
    Case("checkpoint-explainer-missing", "checkpoint file not found",
         argv=lambda ws: ["generate", "--checkpoint", ws.root / "absent.pt",
                          "--input", "synthetic:test", "--out", ws.root / "strips"]),
    # command line
    Case("cli-unknown-command", "unknown command 'trian'", argv=lambda ws: ["trian"]),
    Case("cli-output-folder-not-empty", "is not empty; choose another folder or pass --overwrite",
         argv=lambda ws: ["generate", "--checkpoint", ws.explainer, "--input", "synthetic:test",
                          "--out", ws.run]),
    Case("cli-unknown-option", "unrecognized arguments: --bogus",
         argv=lambda ws: generate(ws, "synthetic:test", "--bogus")),
    # environment
    Case("env-gpu-absent", "invalid trainer setting: No supported gpu backend found!",
         argv=lambda ws: fit(ws, "--trainer.accelerator", "gpu")),
    Case("env-disk-full", "no space left on the device while writing", call=disk_full_on_write),
    Case("env-lpips-weights-missing", "alexnet-owt-7be5be79.pth",
         call=lambda ws: no_torch_cache(ws, build_lpips)),
    Case("env-inception-weights-missing", "Inception weights for FID not found",
         call=lambda ws: no_torch_cache(ws, inception_features)),
]  # fmt: skip


# --- the test --------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Workspace:
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


def run_case(case: Case, ws: Workspace, capsys) -> str:
    """Run `case`; return the message the user reads (stderr, or the exception's text)."""
    if case.call is not None:
        with pytest.raises(CfgenError) as caught:
            case.call(ws)
        return str(caught.value)
    argv = [str(arg) for arg in case.argv(ws)]
    try:
        code = main(argv)
    except SystemExit as exit_request:  # argparse usage errors
        code = exit_request.code
    assert code == case.exit_code, capsys.readouterr().err[-2000:]
    return capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_its_message_and_loses_nothing(case, workspace, capsys):
    before = _snapshot(workspace.run)
    message = run_case(case, workspace, capsys)
    assert re.search(re.escape(case.message), message), message
    assert "Traceback" not in message
    assert _snapshot(workspace.run) == before
    assert not (workspace.root / "ran").exists()


def test_catalogue_has_a_row_per_case_and_enough_rows():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "BAD_INPUTS.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.MULTILINE)
    assert sorted(rows) == sorted(case.id for case in CASES)
    assert len(CASES) >= 25
