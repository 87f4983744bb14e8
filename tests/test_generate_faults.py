"""Faults of `cfgen generate` with real processes: two runs into one folder at once leave one
whole run and a clear refusal; a run stopped by SIGINT or SIGKILL is finished by
`--resume`, which makes only the missing strips, and the folder is then the one an
uninterrupted run writes.

Real subprocesses race and are killed here (no simulation): the point is what is on disk.
"""

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cfgen.explain.strip_folder import JOURNAL
from cfgen.folder_lock import LOCK_NAME
from tests.model_files import write_explainer_bundle, write_model_pair
from tests.test_faults import ENV, WAIT_S, _default_sigint, _killed_at_exit

N_QUERIES = 96  # 12 batches of 8: seconds of work, so that a signal lands half-way


def generate_command(explainer: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "cfgen.cli", "generate", "--checkpoint", str(explainer),
        "--input", "synthetic:test", "--n", str(N_QUERIES), "--batch-size", "8",
        "--out", str(out), *extra,
    ]  # fmt: skip


def start(command: list[str], log: Path) -> subprocess.Popen:
    """`command` in the background, stderr to `log` (a file: nothing blocks on a full pipe),
    SIGINT handled as in a terminal."""
    with log.open("w") as stderr:
        return subprocess.Popen(
            command, env=ENV, stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=_default_sigint
        )


def wait_for_strips(out: Path, process: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while not (out / "strips").is_dir() or len(list((out / "strips").iterdir())) < count:
        assert process.poll() is None, f"generate ended before {count} strips were written"
        assert time.monotonic() < deadline, f"no {count} strips within {WAIT_S} s"
        time.sleep(0.02)


def folder_contents(out: Path) -> dict[str, bytes]:
    """Every file of an output folder but strips.json, by name (the bytes of each strip)."""
    return {
        str(path.relative_to(out)): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name != "strips.json"
    }


def records(out: Path) -> list[dict]:
    return json.loads((out / "strips.json").read_text())["queries"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return write_model_pair(tmp_path_factory.mktemp("models"))[1].parent


@pytest.fixture
def explainer(models) -> Path:
    return models / "explainer.pt"


@pytest.fixture(scope="module")
def reference(models) -> Path:
    """The folder of a run that was never stopped."""
    out = models.parent / "reference"
    command = generate_command(models / "explainer.pt", out)
    whole = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=WAIT_S)
    assert whole.returncode == 0, whole.stderr[-2000:]
    return out


def test_two_runs_into_one_folder_leave_one_whole_run_and_a_refusal(tmp_path, explainer):
    other = write_explainer_bundle(
        tmp_path / "other.pt", explainer.parent / "classifier.pt", seed=1
    )
    out = tmp_path / "strips"
    first = start(generate_command(explainer, out), tmp_path / "first.txt")
    with _killed_at_exit(first):
        wait_for_strips(out, first, 1)  # the first run holds the folder...
        first.send_signal(signal.SIGSTOP)  # ...and keeps it while the second one starts
        second = subprocess.run(
            generate_command(other, out), env=ENV, capture_output=True, text=True, timeout=WAIT_S
        )
        first.send_signal(signal.SIGCONT)
        first.wait(timeout=WAIT_S)
    assert first.returncode == 0, (tmp_path / "first.txt").read_text()[-2000:]
    assert second.returncode == 2
    refusal = f"error: output folder {out} is being written by another run (cfgen generate, pid "
    assert refusal + f"{first.pid} on " in second.stderr
    assert "Traceback" not in second.stderr
    # One run's folder, whole: every strip listed once, nothing else, made by the first one.
    listed = [record["id"] for record in records(out)]
    assert len(listed) == N_QUERIES
    assert sorted(path.stem for path in (out / "strips").iterdir()) == sorted(listed)
    assert json.loads((out / "strips.json").read_text())["checkpoint"] == str(explainer)
    assert sorted(path.name for path in out.iterdir()) == ["overview.png", "strips", "strips.json"]


def test_two_runs_started_at_once_never_both_write(tmp_path, explainer):
    out = tmp_path / "strips"
    runs = [start(generate_command(explainer, out), tmp_path / f"run{i}.txt") for i in (0, 1)]
    for run in runs:
        with _killed_at_exit(run):
            run.wait(timeout=WAIT_S)
    logs = [(tmp_path / f"run{i}.txt").read_text() for i in (0, 1)]
    assert sorted(run.returncode for run in runs) == [0, 2], logs
    refused = logs[[run.returncode for run in runs].index(2)]
    assert "is being written by another run" in refused or "is not empty" in refused, refused
    assert len(records(out)) == N_QUERIES == len(list((out / "strips").iterdir()))


# SIGTERM takes SIGINT's path (tests/explain/test_strip_folder.py checks its message).
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_a_stopped_run_is_finished_by_resume_as_if_never_stopped(
    tmp_path, explainer, reference, stop
):
    out = tmp_path / "strips"
    command = generate_command(explainer, out)
    process = start(command, tmp_path / "stopped.txt")
    with _killed_at_exit(process):
        wait_for_strips(out, process, 24)
        process.send_signal(stop)
        process.wait(timeout=WAIT_S)
    err = (tmp_path / "stopped.txt").read_text()
    assert not (out / "strips.json").exists()
    journaled = {
        json.loads(line)["id"]
        for path in (out / JOURNAL).glob("done-*.jsonl")
        for line in path.read_text().splitlines()
    }
    assert 0 < len(journaled) < N_QUERIES
    if stop == signal.SIGKILL:
        assert process.returncode == -stop
        assert (out / LOCK_NAME).is_file()  # left behind, its lock dropped with the process
        resume = command[3:] + ["--resume"]
    else:
        assert process.returncode == 128 + stop, err[-2000:]
        written = f"{stop.name} stopped cfgen generate: {out} is incomplete ({len(journaled)} of "
        assert written + f"{N_QUERIES} strips written, no strips.json yet)" in err
        resume = shlex.split(err.rsplit("to resume: ", 1)[1].strip())[1:]
        assert resume == command[3:] + ["--resume"]
    inodes = {name: (out / "strips" / f"{name}.png").stat().st_ino for name in journaled}

    resumed = subprocess.run(
        [sys.executable, "-m", "cfgen.cli", *resume],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    if stop == signal.SIGKILL:
        note = f"note: {out} was locked by a run that is no longer running (cfgen generate, pid "
        assert note + f"{process.pid} on " in resumed.stderr
    # The strips written before the stop were not made again...
    assert {name: (out / "strips" / f"{name}.png").stat().st_ino for name in journaled} == inodes
    # ...and the folder is the one a run that was never stopped writes.
    assert folder_contents(out) == folder_contents(reference)
    assert records(out) == records(reference)
