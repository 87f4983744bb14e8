"""Every script of examples/ runs, at the tiny size of its --quick option, from any folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# What each example leaves in its --out folder.
WRITES = {
    "explain_your_classifier.py": [
        "explainer.pt",
        "counterfactuals/strips.json",
        "report/report.html",
    ],
    "strips_from_a_bundle.py": [
        "strips/strips.json",
        "strips/overview.png",
        "work/explainer/explainer.pt",
    ],
    "captum_beside_pe.py": ["report/report.html", "report/results.json"],
}
# Examples whose --quick trains the same tiny classifier and explainer first (`out/work`): they
# run in one --out folder, so the second reuses the first one's files.
SHARE_WORK = {"strips_from_a_bundle.py", "captum_beside_pe.py"}


def test_every_example_is_run_here():
    scripts = {path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("_")}
    assert scripts == set(WRITES)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One --out folder for the examples that train the same tiny files first (`work/`)."""
    return tmp_path_factory.mktemp("examples") / "out"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(WRITES))
def test_example_runs_quick(script, tmp_path, shared):
    out = shared if script in SHARE_WORK else tmp_path / "out"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    for name in WRITES[script]:
        assert (out / name).is_file(), name
