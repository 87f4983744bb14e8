"""Faults: a training run killed with SIGKILL resumes and finishes; SIGTERM / SIGINT stop it with
a checkpoint and say how to resume; the demo killed in a training stage resumes that stage; a
kill during an atomic write never leaves a truncated file; a wandb that fails to start leaves the
run on a local logger.

Real subprocesses are killed here (no simulation): the point is what is on disk afterwards.
"""

import contextlib
import errno
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fsspec.implementations.local import LocalFileOpener

from cfgen import loggers
from cfgen.cli import main
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.io import safe_torch_load
from cfgen.models.blackbox import load_blackbox
from cfgen.train.classifier import BUNDLE_NAME
from cfgen.train.classifier_cli import cli_main
from tests.model_files import write_classifier_bundle
from tests.tiny_runs import tiny_classifier_args, tiny_explainer_args

ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
MAX_STEPS = {"classifier": 80, "explainer": 40}
# Seconds on a quiet machine; the margin is for a shared one (2 cores, many jobs).
WAIT_S = 600


def training_command(command: str, run_dir: Path, *extra: str) -> list[str]:
    """`cfgen classifier|explainer fit` of a tiny run (last.ckpt at every short epoch)."""
    if command == "classifier":
        args = tiny_classifier_args(run_dir, MAX_STEPS[command])
    else:
        classifier = write_classifier_bundle(run_dir.parent / "classifier.pt")
        args = tiny_explainer_args(run_dir, classifier, MAX_STEPS[command])
    return [sys.executable, "-m", "cfgen.cli", command, *args, *extra]


@contextlib.contextmanager
def _killed_at_exit(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """`process`, killed when the block ends if it still runs (a failed test leaves none)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = WAIT_S) -> None:
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
    with _killed_at_exit(process):
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
        timeout=WAIT_S,
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


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _strip_inodes(run_dir: Path, up_to_step: int) -> dict[str, int]:
    """Inode of each monitor strip of a generator step <= `up_to_step` (atomic writes replace
    the file: a strip written again gets a new inode)."""
    strips = sorted((run_dir / "strips").glob("step_*.png"))
    return {p.name: p.stat().st_ino for p in strips if int(p.stem[5:]) <= up_to_step}


def _generator_steps(global_step: int) -> int:
    return global_step // 6  # n_critic = 5: five discriminator steps, then one generator step


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_saves_a_last_checkpoint_and_the_printed_command_resumes(tmp_path, stop):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    # One long epoch: no epoch-end checkpoint, so any checkpoint is the one the signal wrote.
    long_epoch = ["--data.steps_per_epoch", "5000", "--trainer.max_steps", "30000"]
    log = tmp_path / "stderr.txt"
    with (
        log.open("w") as stderr,
        _killed_at_exit(
            subprocess.Popen(
                training_command("explainer", run_dir, *long_epoch),
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=stderr,  # a file, not a pipe: nothing blocks on a full pipe
                # As in a terminal, where Ctrl+C's SIGINT is not ignored. A job started in the
                # background by a non-interactive shell (nohup, `&`) inherits an ignored
                # SIGINT, which training rightly leaves ignored.
                preexec_fn=_default_sigint,
            )
        ) as process,
    ):
        _wait_for(run_dir / "strips" / "step_0000002.png", process)  # a few steps trained
        process.send_signal(stop)
        process.wait(timeout=120)  # the current batch ends, last.ckpt is written, it exits
    err = log.read_text()
    assert process.returncode == 128 + stop, err[-2000:]
    stopped_at = safe_torch_load(last)["global_step"]
    # Beside best.ckpt (the best validation so far), last.ckpt is the only checkpoint.
    assert sorted(path.name for path in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert f"{stop.name} stopped training at step {stopped_at}; its checkpoint is {last}" in err
    resume = shlex.split(err.rsplit("to resume: ", 1)[1].strip())
    assert resume[:2] == ["cfgen", "explainer"] and resume[-2:] == ["--ckpt_path", "last"]

    before = _strip_inodes(run_dir, _generator_steps(stopped_at))
    finish = ["--trainer.max_steps", str(stopped_at + 12)]  # two more generator steps
    resumed = subprocess.run(
        [sys.executable, "-m", "cfgen.cli", *resume[1:], *finish],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert safe_torch_load(last)["global_step"] == stopped_at + 12
    # Continued, not restarted: the strips of the steps before the stop were not made again.
    assert _strip_inodes(run_dir, _generator_steps(stopped_at)) == before


def _tiny_pipeline(path: Path, out: Path) -> Path:
    """A two-stage `cfgen demo --config` (classifier, then its explainer) on 16 px faces."""
    explainer = tiny_explainer_args("{out}", "{classifier}/classifier.pt", 60)
    stages = [
        {"name": "classifier", "command": "classifier", "args": tiny_classifier_args("{out}", 8)},
        {"name": "explainer", "command": "explainer", "args": explainer},
    ]
    config = {"out": str(out), "report_stage": "explainer", "stages": stages}
    path.write_text(json.dumps(config))  # YAML reads JSON
    return path


@pytest.mark.slow
def test_demo_killed_in_its_explainer_stage_resumes_that_stage_from_its_checkpoint(tmp_path):
    demo = [sys.executable, "-m", "cfgen.cli", "demo", "--config"]
    demo.append(str(_tiny_pipeline(tmp_path / "pipeline.yaml", tmp_path / "runs")))
    process = subprocess.Popen(demo, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    with _killed_at_exit(process):
        deadline = time.monotonic() + WAIT_S
        while not list((tmp_path / "runs").glob("explainer-*/checkpoints/last.ckpt")):
            assert process.poll() is None, "the demo ended before its explainer saved a checkpoint"
            assert time.monotonic() < deadline, f"no explainer checkpoint within {WAIT_S} s"
            time.sleep(0.02)
        time.sleep(random.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the demo finished before it could be killed"
    (last,) = (tmp_path / "runs").glob("explainer-*/checkpoints/last.ckpt")
    killed_at = safe_torch_load(last)["global_step"]
    assert 0 < killed_at < 60
    before = _strip_inodes(last.parents[1], _generator_steps(killed_at))

    again = subprocess.run(demo, env=ENV, capture_output=True, text=True, timeout=WAIT_S)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "stage classifier: reusing finished" in again.stdout
    resuming = f"stage explainer: resuming the interrupted run from {last} (step {killed_at})"
    assert resuming in again.stdout
    assert safe_torch_load(last)["global_step"] == 60
    assert (last.parents[1] / "DONE").is_file() and (last.parents[1] / "explainer.pt").is_file()
    # Strips written before the kill are not written again (the validation of the checkpoint's
    # last generator step may come after the checkpoint, so the resumed run may add that one).
    after = _strip_inodes(last.parents[1], _generator_steps(killed_at))
    assert {name: after.get(name) for name in before} == before


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
