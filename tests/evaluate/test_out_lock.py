"""`cfgen evaluate` holds its output folder for the whole run (`cfgen.folder_lock`): a second
evaluation into it while the first one runs is refused, naming the first; the lock is dropped
when the first one ends.

Two real processes: the first evaluation runs in a subprocess and waits in the middle of its run
(after its lock is taken, before its results are written) until the test lets it go on.
"""

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cfgen.errors import CfgenError
from cfgen.evaluate.suite import evaluate
from cfgen.folder_lock import LOCK_NAME
from tests.evaluate.test_suite import config, make_inputs

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
WAIT_S = 300  # seconds; a shared machine may be slow to import torch

# An evaluation (`tests.evaluate.test_suite`'s cheap inputs) into `tmp/eval`, which stops in
# the middle of its run: it touches `tmp/running`, then waits for `tmp/go`.
_FIRST = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path

    from cfgen.evaluate import suite
    from tests.evaluate.test_suite import config, make_inputs

    tmp = Path(sys.argv[1])
    run_suite = suite.run_suite

    def run_suite_when_let_go(*args):
        (tmp / "running").touch()
        while not (tmp / "go").exists():
            time.sleep(0.02)
        return run_suite(*args)

    suite.run_suite = run_suite_when_let_go
    suite.evaluate(config(tmp), make_inputs())
    """
)


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"{path} did not appear within {WAIT_S} s"
        time.sleep(0.02)


def test_a_second_evaluation_into_a_folder_being_evaluated_is_refused(tmp_path):
    out = tmp_path / "eval"
    first = subprocess.Popen(
        [sys.executable, "-c", _FIRST, str(tmp_path)],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(tmp_path / "running", first)
        assert [path.name for path in out.iterdir()] == [LOCK_NAME]
        owner = rf"\(cfgen evaluate, pid {first.pid} on .*, since .*\); wait for it to finish"
        refused = f"output folder {re.escape(str(out))} is being written by another run "
        with pytest.raises(CfgenError, match=refused):
            evaluate(config(tmp_path, overwrite=True), make_inputs())
        with pytest.raises(CfgenError, match=owner):
            evaluate(config(tmp_path), make_inputs())
        assert [path.name for path in out.iterdir()] == [LOCK_NAME]  # the second wrote nothing
        (tmp_path / "go").touch()
        _, err = first.communicate(timeout=WAIT_S)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err[-2000:]
    assert (out / "results.json").is_file() and (out / "report.html").is_file()
    assert not (out / LOCK_NAME).exists()  # released when the first one ended
    evaluate(config(tmp_path, overwrite=True), make_inputs())  # the folder is free again
