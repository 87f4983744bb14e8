"""`cfgen generate --devices N`: Lightning's predict loop writes what the streaming path writes."""

import json
import os
import subprocess
import sys

import pytest

from cfgen.explain.cli import generate_main
from tests.helpers import export_tiny_explainer

# 5 queries in batches of 2: batches 0 and 2 go to rank 0, batch 1 to rank 1.
ARGS = ["--input", "synthetic:test", "--n", "5", "--batch-size", "2", "--gif"]


@pytest.fixture
def checkpoint(tmp_path):
    return export_tiny_explainer(tmp_path, size=16)[0]


def written(out):
    """strips.json's records, and the strip and GIF files, of an output folder."""
    records = json.loads((out / "strips.json").read_text())["queries"]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return records, files


def assert_same_outputs(out, reference):
    records, files = written(out)
    expected_records, expected_files = written(reference)
    assert files == expected_files
    assert [r["id"] for r in records] == [r["id"] for r in expected_records]  # input order
    for record, expected in zip(records, expected_records, strict=True):
        assert record["posteriors"] == pytest.approx(expected["posteriors"], abs=1e-5)
        assert record["query_posterior"] == pytest.approx(expected["query_posterior"], abs=1e-5)


@pytest.fixture
def reference(checkpoint, tmp_path):
    """The single-process streaming path's output folder."""
    out = tmp_path / "streaming"
    assert generate_main(["--checkpoint", str(checkpoint), *ARGS, "--out", str(out)]) == 0
    return out


def test_predict_loop_on_one_device_matches_the_streaming_path(checkpoint, reference, tmp_path):
    out = tmp_path / "predict"
    argv = ["--checkpoint", str(checkpoint), *ARGS, "--out", str(out), "--devices", "1"]
    assert generate_main(argv) == 0
    assert_same_outputs(out, reference)


@pytest.mark.slow
def test_two_processes_write_the_same_files_as_one(checkpoint, reference, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "cfgen.cli", "generate", "--checkpoint", str(checkpoint)]
    command += [*ARGS, "--out", str(out), "--devices", "2", "--strategy", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    # The exit code is rank 0's: a failing rank 1 only shows as a traceback.
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stdout.count("5 strips written") == 1  # rank 0 only
    assert_same_outputs(out, reference)
