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
from cfgen.explain.latent_shift import LatentShift
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.io import atomic_write_json, atomic_write_text, save_bundle
from cfgen.models.autoencoder import BUNDLE_KIND as AUTOENCODER_KIND
from cfgen.models.autoencoder import Autoencoder
from cfgen.models.blackbox import BlackBox, load_blackbox
from tests.data.fakes import random_pixels, write_csv, write_png
from tests.helpers import write_two_class_torchscript
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
    """One catalogue row: `argv` (a `cfgen` command line) or `call` (Python API) fails.

    What the user must read is the row's last cell in docs/BAD_INPUTS.md, not a copy here.
    """

    id: str
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


def latent_shift_of(ws: Workspace, classifier: Callable[[torch.Tensor], torch.Tensor]) -> object:
    images = torch.linspace(-1, 1, 2 * 3 * IMAGE_SIZE**2).view(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    return LatentShift(classifier, autoencoder_file(ws, IMAGE_SIZE)).exaggerate(images)


def no_torch_cache(ws: Workspace, load: Callable[[], object]) -> object:
    ws.monkeypatch.setenv("TORCH_HOME", str(ws.root / "empty_torch_cache"))
    return load()


# --- the catalogue ---------------------------------------------------------------------------

CASES = [
    # data
    Case("data-corrupt-image",
         argv=lambda ws: generate(ws, folder_with_file(ws, b"not a png"))),
    Case("data-empty-image",
         argv=lambda ws: generate(ws, folder_with_file(ws, b""))),
    Case("data-decompression-bomb",
         argv=lambda ws: generate(ws, small_pixel_limit(ws))),
    Case("data-missing-image",
         argv=lambda ws: generate(ws, attribute_folder(ws, [["images/absent.png", 1]]))),
    Case("data-csv-missing-column",
         call=lambda ws: AttributeFolder(attribute_folder(ws, [["images/good.png", 1]],
                                                          header=("path", "Smiling")))),
    Case("data-csv-empty",
         call=lambda ws: (attribute_folder(ws, []) / "attributes.csv").write_text("")
         or AttributeFolder(ws.root / "data")),
    Case("data-label-not-binary",
         call=lambda ws: AttributeFolder(attribute_folder(ws, [["images/good.png", 2]]),
                                         target="Smiling")),
    Case("data-no-target",
         argv=lambda ws: fit(ws, "--data.source", "folder", "--data.root", split_folder(ws))),
    Case("data-blank-class-label",
         argv=lambda ws: fit(ws, "--data.source", "folder", "--data.target", "digit=3",
                             "--data.root", split_folder(ws, ["3", "", "4"]))),
    Case("data-unsafe-file-name",
         argv=lambda ws: generate(ws, attribute_folder(ws, [["../x.png", 1]]))),
    Case("data-empty-split",
         call=empty_test_split),
    Case("data-wrong-size",
         call=lambda ws: explainer(ws).exaggerate(torch.zeros(2, 3, 32, 32))),
    Case("data-wrong-channels",
         call=lambda ws: explainer(ws).exaggerate(torch.zeros(2, 1, 16, 16))),
    Case("data-not-scaled",
         call=lambda ws: explainer(ws).exaggerate(torch.linspace(0, 255, 1536).view(2, 3, 16, 16))),
    Case("data-nan-in-inputs", call=with_nan),
    Case("data-duplicate-query-ids",
         argv=lambda ws: generate(ws, same_stem_twice(ws))),
    Case("data-input-missing",
         argv=lambda ws: generate(ws, ws.root / "absent")),
    Case("data-no-images",
         argv=lambda ws: generate(ws, (ws.root / "empty").mkdir() or ws.root / "empty")),
    Case("data-autoencoder-wrong-size",
         argv=lambda ws: evaluate_latent_shift(
             ws, f"{{latent_shift: {{autoencoder: {autoencoder_file(ws, 32)}}}}}")),
    # config
    Case("config-typo-command-line",
         argv=lambda ws: fit(ws, "--model.arhc", "small_cnn")),
    Case("config-typo-yaml",
         argv=lambda ws: fit(ws, "--config", yaml_with_typo(ws))),
    Case("config-file-missing",
         argv=lambda ws: fit(ws, "--config", ws.root / "absent.yaml")),
    Case("config-wrong-type",
         argv=lambda ws: fit(ws, "--model.lr", "fast")),
    Case("config-unknown-source",
         argv=lambda ws: fit(ws, "--data.source", "imagenet")),
    Case("config-unknown-target",
         argv=lambda ws: fit(ws, "--data.target", "Smiles")),
    Case("config-batch-size-zero",
         argv=lambda ws: fit(ws, "--data.batch_size", "0")),
    Case("config-target-not-the-classifiers",
         argv=lambda ws: explainer_fit(ws, "--data.target", "Eyeglasses")),
    Case("config-bad-channels",
         argv=lambda ws: fit(ws, "--data.channels", "2")),
    Case("config-demo-data-without-target",
         argv=lambda ws: ["demo", "--data", split_folder(ws), "--out", ws.root / "demo"]),
    Case("config-demo-data-not-a-folder",
         argv=lambda ws: ["demo", "--data", ws.root, "--target", "Smiling"]),
    Case("config-unknown-arch",
         argv=lambda ws: fit(ws, "--model.arch", "vgg")),
    Case("config-folder-without-root",
         argv=lambda ws: fit(ws, "--data.source", "folder")),
    Case("config-unknown-baseline",
         argv=lambda ws: ["evaluate", "--explainer", ws.explainer, "--out", ws.root / "eval",
                          "--baselines", "[nope]", "--n_queries", "4", "--n_real", "0"]),
    Case("config-latent-shift-without-autoencoder",
         argv=lambda ws: evaluate_latent_shift(ws, "{}")),
    # classifier
    Case("classifier-logits-declared-probabilities",
         call=lambda ws: box(Returns(lambda x: x.mean((1, 2, 3))[:, None] * 5), "probabilities")(
             torch.linspace(-1, 1, 2 * 768).view(2, 3, 16, 16))),
    Case("classifier-nan-output",
         call=lambda ws: box(Returns(lambda x: torch.full((len(x), 1), float("nan"))))(
             torch.zeros(2, 3, 16, 16))),
    Case("classifier-wrong-output-shape",
         call=lambda ws: box(Returns(lambda x: torch.zeros(len(x) + 1, 1)))(
             torch.zeros(2, 3, 16, 16))),
    Case("classifier-wrong-input-channels",
         call=lambda ws: load_blackbox(str(ws.classifier))(torch.zeros(2, 1, 16, 16))),
    Case("classifier-no-gradient",
         call=lambda ws: latent_shift_of(
             ws, lambda x: load_blackbox(str(ws.classifier))(x).detach())),
    Case("classifier-zero-gradient",
         call=lambda ws: latent_shift_of(
             ws, lambda x: 0.25 + 0.5 * torch.round(load_blackbox(str(ws.classifier))(x)))),
    Case("classifier-file-missing",
         argv=lambda ws: generate(ws, "synthetic:test", "--classifier", ws.root / "absent.pt",
                                  "--allow-classifier-mismatch")),
    Case("classifier-wrong-kind",
         call=lambda ws: load_blackbox(str(ws.explainer))),
    Case("classifier-import-not-allowed",
         call=lambda ws: load_blackbox("os.path:join")),
    Case("classifier-torch-export-pickled",
         call=lambda ws: load_blackbox(
             str(write_crafted_export(ws.root / "c.pt2", ws.root / "ran")))),
    Case("classifier-not-the-explained-one",
         argv=lambda ws: generate(ws, "synthetic:test", "--classifier",
                                  write_classifier_bundle(ws.root / "other.pt", seed=1))),
    Case("classifier-output-not-chosen",
         argv=lambda ws: explainer_fit(ws, "--model.classifier",
                                       write_two_class_torchscript(ws.root / "two.ts"))),
    # checkpoint
    Case("checkpoint-truncated",
         argv=lambda ws: generate(ws, "synthetic:test", "--classifier", truncated(ws),
                                  "--allow-classifier-mismatch")),
    Case("checkpoint-empty-file",
         call=lambda ws: ProgressiveExaggeration.from_checkpoint(empty_file(ws))),
    Case("checkpoint-runs-code",
         argv=lambda ws: fit(ws, "--ckpt_path", write_crafted_pickle(
             ws.root / "evil.ckpt", ws.root / "ran", as_torch_zip=True))),
    Case("checkpoint-resume-missing",
         argv=lambda ws: fit(ws, "--ckpt_path", ws.root / "absent.ckpt")),
    Case("checkpoint-explainer-missing",
         argv=lambda ws: ["generate", "--checkpoint", ws.root / "absent.pt",
                          "--input", "synthetic:test", "--out", ws.root / "strips"]),
    # command line
    Case("cli-unknown-command", argv=lambda ws: ["trian"]),
    Case("cli-output-folder-not-empty",
         argv=lambda ws: ["generate", "--checkpoint", ws.explainer, "--input", "synthetic:test",
                          "--out", ws.run]),
    Case("cli-unknown-option",
         argv=lambda ws: generate(ws, "synthetic:test", "--bogus")),
    # environment
    Case("env-gpu-absent",
         argv=lambda ws: fit(without_gpu(ws), "--trainer.accelerator", "gpu")),
    Case("env-disk-full", call=disk_full_on_write),
    Case("env-lpips-weights-missing",
         call=lambda ws: no_torch_cache(ws, build_lpips)),
    Case("env-inception-weights-missing",
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


CATALOGUE = Path(__file__).resolve().parents[1] / "docs" / "BAD_INPUTS.md"


def catalogue_rows() -> dict[str, str]:
    """{id: the message cell} of every row of docs/BAD_INPUTS.md's table."""
    rows = {}
    for line in CATALOGUE.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = line.strip()[2:-2].split(" | ")
        assert len(cells) == 5, f"a catalogue row needs 5 cells: {line}"
        rows[cells[0].strip("`")] = cells[-1]
    return rows


ROWS = catalogue_rows()
API_MESSAGE = re.compile(r"(?P<cls>[A-Z]\w*Error): (?P<text>.*)", flags=re.DOTALL)


def expected_pattern(message: str) -> str:
    """The row's message as a regex: literal text, `…` matching any run of characters."""
    return ".*?".join(re.escape(piece) for piece in message.split("…"))


def run_case(case: Case, ws: Workspace, capsys) -> str:
    """Run `case`; return the message the user reads: stderr, or `Class: text` of the error."""
    if case.call is not None:
        with pytest.raises(CfgenError) as caught:
            case.call(ws)
        return f"{type(caught.value).__name__}: {caught.value}"
    argv = [str(arg) for arg in case.argv(ws)]
    try:
        code = main(argv)
    except SystemExit as exit_request:  # argparse usage errors
        code = exit_request.code
    assert code == case.exit_code, capsys.readouterr().err[-2000:]
    return capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_its_message_and_loses_nothing(case, workspace, capsys):
    row = ROWS[case.id]
    before = _snapshot(workspace.run)
    message = run_case(case, workspace, capsys)
    if case.call is not None:
        # The row names the exception class the API raises; the whole message is the row's.
        api = API_MESSAGE.fullmatch(row)
        assert api, f"the row of a Python-API case starts with its exception class: {row}"
        assert message.startswith(api["cls"] + ": "), message
        assert re.fullmatch(expected_pattern(row), message, flags=re.DOTALL), message
    else:
        # The command prints the row's message as whole line(s) (argparse's or cfgen's usage
        # may come before or after it), and never a traceback.
        assert not API_MESSAGE.fullmatch(row), f"a command's row shows what it prints: {row}"
        pattern = r"(?:\A|\n)" + expected_pattern(row) + r"(?:\n|\Z)"
        assert re.search(pattern, message, flags=re.DOTALL), message
        assert "Traceback" not in message
    assert _snapshot(workspace.run) == before
    assert not (workspace.root / "ran").exists()


def test_the_message_pattern_of_a_row_is_strict():
    # A wildcard stands for any text; every other character of the row must be there.
    pattern = expected_pattern("error: cannot read image …/bad.png; replace the file")
    assert re.fullmatch(pattern, "error: cannot read image /tmp/x/bad.png; replace the file")
    assert not re.fullmatch(pattern, "error: cannot read image /tmp/x/bad.png")
    assert not re.fullmatch(pattern, "error: cannot read image /tmp/x/bad.png; replace a file")


def test_catalogue_has_a_row_per_case_and_enough_rows():
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", CATALOGUE.read_text(), flags=re.MULTILINE)
    assert sorted(rows) == sorted(case.id for case in CASES)
    assert len(rows) == len(ROWS)
    assert len(CASES) >= 25
