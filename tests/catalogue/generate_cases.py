"""Catalogue cases of `cfgen generate`'s output folder: one run writes it at a time, a run
stopped half-way is finished by `--resume`, `--overwrite` starts it again, and what cannot be
`--out` or `--batch-size`."""

import json
import time

import pytest

from cfgen.cli import main
from cfgen.data.inputs import open_input
from cfgen.explain.generate import generate_strips
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.explain.strip_folder import JOURNAL
from cfgen.folder_lock import LOCK_NAME
from tests.catalogue.command_cases import locked
from tests.catalogue.workspace import Case, Workspace, below_a_file, explainer, generate
from tests.data.fakes import random_pixels, write_png
from tests.model_files import IMAGE_SIZE

QUERIES = ("--n", "6", "--batch-size", "2")  # three batches


def strips_run(ws: Workspace, *extra) -> list[str]:
    """`cfgen generate` of 6 synthetic queries into `strips/`."""
    return [str(arg) for arg in generate(ws, "synthetic:test", *QUERIES, *extra)]


def stop_at_second_batch(patch: pytest.MonkeyPatch) -> None:
    """Ctrl+C while the second batch is explained (once the writer has had time for the
    first)."""
    exaggerate = ProgressiveExaggeration.exaggerate
    calls = []

    def exaggerate_until_stopped(self, *args, **kwargs):
        calls.append(len(calls))
        if len(calls) == 2:
            time.sleep(0.3)
            raise KeyboardInterrupt
        return exaggerate(self, *args, **kwargs)

    patch.setattr(ProgressiveExaggeration, "exaggerate", exaggerate_until_stopped)


def interrupted(ws: Workspace) -> list[str]:
    stop_at_second_batch(ws.monkeypatch)
    return strips_run(ws)


def after_a_stop(ws: Workspace, *extra) -> list[str]:
    """`strips/` left by a run stopped at its second batch; the command line run again."""
    with pytest.MonkeyPatch.context() as patch:
        stop_at_second_batch(patch)
        assert main(strips_run(ws)) == 130
    return strips_run(ws, *extra)


def after_a_finished_run(ws: Workspace, *extra) -> list[str]:
    assert main(strips_run(ws)) == 0
    return strips_run(ws, *extra)


def listed(out) -> list[str]:
    return [record["id"] for record in json.loads((out / "strips.json").read_text())["queries"]]


def resume_makes_only_the_missing_strips(ws: Workspace) -> None:
    out = ws.root / "strips"
    argv = after_a_stop(ws, "--resume")
    before = {path.name: path.stat().st_ino for path in (out / "strips").iterdir()}
    assert len(before) in (2, 4), sorted(before)  # whole batches only
    assert main(argv) == 0
    after = {path.name: path.stat().st_ino for path in (out / "strips").iterdir()}
    assert {name: after[name] for name in before} == before  # not written again
    assert listed(out) == [f"test_{index:06d}" for index in range(6)]
    assert sorted(after) == [f"{name}.png" for name in listed(out)]
    assert not (out / JOURNAL).exists() and not (out / LOCK_NAME).exists()


def overwrite_deletes_the_earlier_strips(ws: Workspace) -> None:
    out = ws.root / "strips"
    assert main(strips_run(ws)) == 0
    (out / "notes.txt").write_text("the user's")
    assert main([str(arg) for arg in generate(ws, "synthetic:val", "--n", "2", "--overwrite")]) == 0
    assert sorted(path.name for path in (out / "strips").iterdir()) == [
        "val_000000.png",
        "val_000001.png",
    ]
    assert listed(out) == ["val_000000", "val_000001"]
    assert (out / "notes.txt").read_text() == "the user's"


def left_by_a_dead_run(ws: Workspace) -> list[str]:
    """`strips/` holding the lock file of a run killed before it wrote anything."""
    out = ws.root / "strips"
    out.mkdir()
    owner = {"command": "cfgen generate", "pid": 4242, "host": "node7", "started": 0}
    (out / LOCK_NAME).write_text(json.dumps(owner))
    return strips_run(ws)


def photos(ws: Workspace) -> str:
    folder = ws.root / "photos"
    write_png(folder / "face.png", random_pixels(0, IMAGE_SIZE, IMAGE_SIZE))
    return str(folder)


GENERATE_CASES = [
    Case("cli-generate-concurrent-run",
         argv=lambda ws: locked(ws, "strips", "cfgen generate") and strips_run(ws)),
    Case("cli-generate-stale-lock", argv=left_by_a_dead_run, exit_code=0),
    Case("cli-generate-interrupted", argv=interrupted, exit_code=130),
    Case("cli-generate-unfinished-folder", argv=after_a_stop),
    Case("cli-generate-resume", accepted=resume_makes_only_the_missing_strips),
    Case("cli-generate-resume-other-settings",
         argv=lambda ws: after_a_stop(ws, "--resume", "--placement-steps", "0")),
    Case("cli-generate-resume-finished",
         argv=lambda ws: after_a_finished_run(ws, "--resume")),
    Case("cli-generate-overwrite", accepted=overwrite_deletes_the_earlier_strips),
    Case("cli-generate-overwrite-and-resume",
         argv=lambda ws: strips_run(ws, "--overwrite", "--resume")),
    Case("cli-generate-batch-size-zero",
         argv=lambda ws: strips_run(ws, "--batch-size", "0")),
    Case("cli-generate-batch-size-negative",
         argv=lambda ws: strips_run(ws, "--batch-size", "-2")),
    Case("cli-generate-out-below-a-file",
         argv=lambda ws: ["generate", "--checkpoint", ws.explainer, "--input", "synthetic:test",
                          "--out", below_a_file(ws)]),
    Case("cli-generate-out-is-input",
         argv=lambda ws: ["generate", "--checkpoint", ws.explainer, "--input", photos(ws),
                          "--out", ws.root / "photos"]),
    Case("cli-generate-api-batch-size",
         call=lambda ws: generate_strips(explainer(ws), open_input("synthetic:test", 2, 16),
                                         ws.root / "strips", batch_size=0)),
]  # fmt: skip
