import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cfgen.errors import CfgenError, ConfigError, DataError
from cfgen.explain.cli import generate_main
from cfgen.explain.progressive import PLACEMENT_STEPS
from tests.helpers import export_tiny_explainer


@pytest.fixture
def checkpoint(tmp_path):
    return export_tiny_explainer(tmp_path, size=16)[0]


def test_generate_command_writes_strips_gifs_overview_and_json(checkpoint, tmp_path):
    out = tmp_path / "strips"
    command = [sys.executable, "-m", "cfgen.cli", "generate", "--checkpoint", str(checkpoint)]
    command += ["--input", "synthetic:test", "--n", "3", "--batch-size", "2", "--out", str(out)]
    command += ["--gif"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "3 strips written" in result.stdout
    summary = json.loads((out / "strips.json").read_text())
    assert summary["placement_steps"] == PLACEMENT_STEPS
    records = summary["queries"]
    assert [r["id"] for r in records] == ["test_000000", "test_000001", "test_000002"]
    assert all(r["target_bins"] == list(range(10)) and len(r["posteriors"]) == 10 for r in records)
    for record in records:
        assert Image.open(out / "strips" / f"{record['id']}.png").size[0] > 0
        assert Image.open(out / "gifs" / f"{record['id']}.gif").n_frames == 10
    assert (out / "overview.png").is_file()
    with pytest.raises(CfgenError, match="is not empty; .* --overwrite"):
        generate_main(command[4:])  # the same arguments, in-process: the folder is taken


def test_image_folder_is_resized_to_the_explainer(checkpoint, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.jpg"):
        Image.fromarray(np.full((40, 50, 3), 128, dtype=np.uint8)).save(photos / name)
    (photos / "notes.txt").write_text("not an image")
    assert generate_main(["--checkpoint", str(checkpoint), "--input", str(photos), "--out",
                          str(tmp_path / "out")]) == 0  # fmt: skip
    records = json.loads((tmp_path / "out" / "strips.json").read_text())["queries"]
    assert [r["id"] for r in records] == ["a", "b"]
    assert not (tmp_path / "out" / "gifs").exists()  # GIFs only on request
    assert Image.open(tmp_path / "out" / "strips" / "a.png").height == 2 + 16 + 12 + 2


def test_grey_explainer_writes_grey_strips(tmp_path):
    checkpoint = export_tiny_explainer(tmp_path, size=16, channels=1)[0]
    out = tmp_path / "out"
    argv = ["--checkpoint", str(checkpoint), "--input", "synthetic:test", "--n", "2"]
    assert generate_main([*argv, "--out", str(out), "--gif", "--placement-steps", "0"]) == 0
    assert json.loads((out / "strips.json").read_text())["placement_steps"] == 0
    assert Image.open(out / "strips" / "test_000000.png").mode == "L"
    assert Image.open(out / "gifs" / "test_000000.gif").mode in ("L", "P")


def test_bad_inputs_are_refused(checkpoint, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["--checkpoint", str(checkpoint), "--out"]
    with pytest.raises(DataError, match="no images in"):
        generate_main([*base, str(tmp_path / "o1"), "--input", str(empty)])
    with pytest.raises(DataError, match="neither a folder nor 'synthetic:SPLIT'"):
        generate_main([*base, str(tmp_path / "o2"), "--input", str(tmp_path / "missing")])
    with pytest.raises(ConfigError, match="placement_steps must be >= 0"):
        generate_main([*base, str(tmp_path / "o4"), "--input", "synthetic:test",
                       "--placement-steps", "-2"])  # fmt: skip
    assert not (tmp_path / "o4").exists()
    with pytest.raises(CfgenError, match="not found"):
        generate_main(["--checkpoint", str(tmp_path / "none.pt"), "--input", "synthetic:test",
                       "--out", str(tmp_path / "o3")])  # fmt: skip
