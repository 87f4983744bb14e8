"""The output folder of `cfgen generate`: the journal a stopped run leaves, and how `--resume`
reads it (in-process; real processes are stopped in tests/test_generate_faults.py)."""

import json
import os
import shlex
import signal
import time

import pytest

from cfgen.cli import main
from cfgen.explain.cli import generate_main
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.explain.strip_folder import JOURNAL, RUN_FILE, StripFolder, journaled
from tests.model_files import write_explainer_bundle, write_model_pair

ARGS = ["--input", "synthetic:test", "--n", "6", "--batch-size", "2"]


@pytest.fixture
def explainer(tmp_path):
    return write_model_pair(tmp_path / "models")[1]


def run(explainer, out, *extra) -> int:
    return generate_main(["--checkpoint", str(explainer), *ARGS, "--out", str(out), *extra])


def stopped_run(explainer, out, monkeypatch, at_batch: int = 3) -> None:
    """A run stopped by Ctrl+C at batch `at_batch` (the writer given time for the others)."""
    exaggerate = ProgressiveExaggeration.exaggerate
    calls = []

    def until_stopped(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at_batch:
            time.sleep(0.5)  # for the writer's threads to take the batches submitted
            raise KeyboardInterrupt
        return exaggerate(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(ProgressiveExaggeration, "exaggerate", until_stopped)
        with pytest.raises(Exception, match="is incomplete"):
            run(explainer, out)


def journal_ids(out) -> list[str]:
    lines = [
        line for p in (out / JOURNAL).glob("done-*.jsonl") for line in p.read_text().splitlines()
    ]
    return sorted(json.loads(line)["id"] for line in lines)


def written(out) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_the_journal_lists_whole_batches_and_resume_ends_as_an_unstopped_run(
    explainer, tmp_path, monkeypatch
):
    assert run(explainer, tmp_path / "whole") == 0
    out = tmp_path / "stopped"
    stopped_run(explainer, out, monkeypatch)
    assert journal_ids(out) in ([f"test_{i:06d}" for i in range(n)] for n in (2, 4))  # batches
    assert json.loads((out / JOURNAL / RUN_FILE).read_text())["n_queries"] == 6
    assert run(explainer, out, "--resume") == 0
    assert written(out) == written(tmp_path / "whole")


def test_a_torn_journal_line_or_a_missing_strip_file_is_made_again(
    explainer, tmp_path, monkeypatch
):
    out = tmp_path / "stopped"
    stopped_run(explainer, out, monkeypatch)
    listed = journal_ids(out)
    (journal,) = (out / JOURNAL).glob("done-*.jsonl")
    with journal.open("a") as handle:
        handle.write('{"id": "test_000005", "sour')  # a kill in the middle of a line
    (out / "strips" / "test_000001.png").unlink()  # a strip the user deleted
    folder = journaled(out, resume=True)
    assert sorted(folder.done) == [name for name in listed if name != "test_000001"]
    assert run(explainer, out, "--resume") == 0
    assert sorted(p.name for p in (out / "strips").iterdir()) == [
        f"test_{i:06d}.png" for i in range(6)
    ]


def test_resume_with_another_explainer_is_refused_naming_what_differs(
    explainer, tmp_path, monkeypatch
):
    out = tmp_path / "stopped"
    stopped_run(explainer, out, monkeypatch)
    other = write_explainer_bundle(
        tmp_path / "other.pt", explainer.parent / "classifier.pt", seed=1
    )
    with pytest.raises(
        Exception, match=r"its unfinished run makes other strips \(generator_sha256 "
    ):
        run(other, out, "--resume")


def test_the_predict_loop_finishes_a_folder_the_streaming_path_left(
    explainer, tmp_path, monkeypatch
):
    assert run(explainer, tmp_path / "whole") == 0
    out = tmp_path / "stopped"
    stopped_run(explainer, out, monkeypatch, at_batch=2)  # before the overview was drawn
    assert not (out / "overview.png").exists()
    assert run(explainer, out, "--resume", "--devices", "1") == 0
    assert written(out) == written(tmp_path / "whole")


def test_sigterm_stops_a_run_as_ctrl_c_does_with_its_own_exit_code(explainer, tmp_path, capsys):
    exaggerate = ProgressiveExaggeration.exaggerate

    def terminated(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread, which runs this
        return exaggerate(self, *args, **kwargs)

    argv = ["--checkpoint", str(explainer), *ARGS, "--out", str(tmp_path / "out")]
    before = signal.getsignal(signal.SIGTERM)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ProgressiveExaggeration, "exaggerate", terminated)
        assert main(["generate", *argv]) == 143
    err = capsys.readouterr().err
    assert f"SIGTERM stopped cfgen generate: {tmp_path / 'out'} is incomplete (" in err
    assert shlex.split(err.rsplit("to resume: ", 1)[1]) == ["cfgen", "generate", *argv, "--resume"]
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back


def test_ctrl_c_before_the_folder_is_claimed_says_nothing_was_written(explainer, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    argv = ["--checkpoint", str(explainer), *ARGS, "--out", str(tmp_path / "out")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StripFolder, "claim", interrupted)
        assert main(["generate", *argv]) == 130
    err = capsys.readouterr().err
    assert f"SIGINT stopped cfgen generate before it wrote into {tmp_path / 'out'}\n" in err
    assert err.rstrip().endswith(shlex.join(["cfgen", "generate", *argv]))


def test_overwrite_and_resume_exclude_each_other_in_the_api_too(tmp_path):
    with (
        pytest.raises(Exception, match="pass one of them"),
        StripFolder.claim(tmp_path / "out", {}, overwrite=True, resume=True),
    ):
        pass
