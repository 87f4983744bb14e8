"""Determinism on CPU: same seed and config -> bit-identical weights, checkpoints and strips.

What is and is not deterministic on a GPU is documented in docs/RELIABILITY.md.
"""

import json
from pathlib import Path

import pytest
import torch

from cfgen.cli import main
from cfgen.io import safe_torch_load
from cfgen.train.classifier_cli import cli_main as classifier_main
from tests.model_files import write_classifier_bundle
from tests.tiny_runs import tiny_classifier_args, tiny_explainer_args


def assert_same_tensors(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=key)


def folder_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` by relative path (strips.json names the checkpoint: left out)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "strips.json")
    return {str(path.relative_to(root)): path.read_bytes() for path in files}


def strips_records(root: Path) -> list:
    return json.loads((root / "strips.json").read_text())["queries"]


@pytest.mark.slow
def test_classifier_trained_twice_has_identical_weights(tmp_path):
    bundles = []
    for name in ("first", "second"):
        assert classifier_main(tiny_classifier_args(tmp_path / name, max_steps=4)) == 0
        bundles.append(safe_torch_load(tmp_path / name / "classifier.pt")["state_dict"])
    assert_same_tensors(*bundles)


@pytest.mark.slow
def test_explainer_trained_twice_gives_identical_checkpoints_and_strips(tmp_path):
    classifier = write_classifier_bundle(tmp_path / "classifier.pt")
    for name in ("first", "second"):
        argv = tiny_explainer_args(tmp_path / name, classifier, max_steps=4)
        assert main(["explainer", *argv]) == 0
        argv = ["generate", "--checkpoint", str(tmp_path / name / "explainer.pt")]
        argv += ["--input", "synthetic:test", "--n", "6", "--out", str(tmp_path / f"{name}_s")]
        assert main(argv) == 0
    checkpoints = [
        safe_torch_load(tmp_path / n / "checkpoints" / "last.ckpt") for n in ("first", "second")
    ]
    assert_same_tensors(*(c["state_dict"] for c in checkpoints))
    assert checkpoints[0]["global_step"] == checkpoints[1]["global_step"] > 0
    assert folder_bytes(tmp_path / "first_s") == folder_bytes(tmp_path / "second_s")
    assert strips_records(tmp_path / "first_s") == strips_records(tmp_path / "second_s")
