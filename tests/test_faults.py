"""Faults: a training run killed with SIGKILL resumes and finishes; a kill during an atomic write
never leaves a truncated file; a wandb that fails to start leaves the run on a local logger.

Real subprocesses are killed here (no simulation): the point is what is on disk afterwards.
"""

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from fsspec.implementations.local import LocalFileOpener

from cfgen import loggers
from cfgen.cli import main
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.io import safe_torch_load
from cfgen.models.blackbox import load_blackbox
from cfgen.train.classifier import BUNDLE_NAME, cli_main
from tests.model_files import write_classifier_bundle
from tests.tiny_runs import tiny_classifier_args, tiny_explainer_args

ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
MAX_STEPS = {"classifier": 80, "explainer": 40}


def training_command(command: str, run_dir: Path, *extra: str) -> list[str]:
    """`cfgen classifier|explainer fit` of a tiny run (last.ckpt at every short epoch)."""
    if command == "classifier":
        args = tiny_classifier_args(run_dir, MAX_STEPS[command])
    else:
        classifier = write_classifier_bundle(run_dir.parent / "classifier.pt")
        args = tiny_explainer_args(run_dir, classifier, MAX_STEPS[command])
    return [sys.executable, "-m", "cfgen.cli", command, *args, *extra]


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"training ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["classifier", "explainer"])
def test_training_killed_at_a_random_step_resumes_from_last_ckpt_and_finishes(tmp_path, command):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        training_command(command, run_dir),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    _wait_for(last, process)
    time.sleep(random.uniform(0.0, 0.5))  # a few more epochs: the kill lands anywhere
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run_dir / f"{command}.pt").exists()
    killed_at = safe_torch_load(last)["global_step"]  # complete, loadable, not truncated
    assert 0 < killed_at < MAX_STEPS[command]

    resumed = subprocess.run(
        training_command(command, run_dir, "--ckpt_path", "last"),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert safe_torch_load(last)["global_step"] == MAX_STEPS[command]
    bundle = run_dir / f"{command}.pt"
    if command == "classifier":
        posterior = load_blackbox(str(bundle))(torch.zeros(2, 3, 16, 16))
    else:
        strip = ProgressiveExaggeration.from_checkpoint(bundle).exaggerate(
            torch.zeros(2, 3, 16, 16)
        )
        posterior = strip.query_posteriors
    assert posterior.shape == (2,)


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from cfgen.io import atomic_write_bytes

    out, size = Path(sys.argv[1]), int(sys.argv[2])
    for index in range(10_000):
        # Every file is `size` copies of one byte: complete files are easy to recognise.
        atomic_write_bytes(out / f"file_{index}.bin", bytes([index % 251]) * size)
        atomic_write_bytes(out / "same.bin", bytes([index % 251]) * size)
        print(index, flush=True)
    """
)


def test_a_kill_during_atomic_writes_never_leaves_a_truncated_file(tmp_path):
    size = 4 << 20  # 4 MiB: the kill very likely lands inside a write
    out = tmp_path / "out"
    out.mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(out), str(size)],
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    for _ in range(random.randint(3, 8)):  # let it finish a few files first
        assert writer.stdout.readline(), "the writer died before being killed"
    time.sleep(random.uniform(0.0, 0.05))
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)

    visible = sorted(path for path in out.iterdir() if not path.name.startswith("."))
    assert len(visible) >= 4
    for path in visible:
        data = path.read_bytes()
        assert len(data) == size, f"{path.name} is truncated ({len(data)} of {size} bytes)"
        assert data == data[:1] * size, f"{path.name} mixes two versions"


def test_wandb_failing_at_init_leaves_the_run_on_a_csv_logger(tmp_path, monkeypatch, caplog):
    def broken_wandb(*args, **kwargs):
        raise RuntimeError("wandb service could not start")

    monkeypatch.setitem(loggers.LOGGERS, "wandb", broken_wandb)
    run_dir = tmp_path / "run"
    args = tiny_classifier_args(run_dir, max_steps=2)
    args[args.index("--logger") + 1] = "wandb"
    assert cli_main(args) == 0
    assert "wandb could not start (RuntimeError: wandb service could not start)" in caplog.text
    assert "metrics.csv instead" in caplog.text
    assert (run_dir / "metrics.csv").is_file()
    assert (run_dir / BUNDLE_NAME).is_file()


def test_disk_full_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, capsys):
    # Lightning writes checkpoints through an fsspec transaction: a temp file committed (moved)
    # into place. Commits after the first epoch fail as a full disk would.
    commit = LocalFileOpener.commit
    calls = []

    def commit_until_disk_full(self):
        calls.append(self.path)
        if len(calls) > 2:  # epoch 1 writes epoch=0-step=4.ckpt, then last.ckpt
            raise OSError(errno.ENOSPC, "No space left on device")
        commit(self)

    monkeypatch.setattr(LocalFileOpener, "commit", commit_until_disk_full)
    run_dir = tmp_path / "run"
    argv = ["classifier", *tiny_classifier_args(run_dir, max_steps=40)]
    argv[argv.index("--logger") + 1] = "none"
    assert main(argv) == 2
    assert "error: no space left on the device" in capsys.readouterr().err
    assert safe_torch_load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 4
