import json
from pathlib import Path

import pytest
import torch

from cfgen.errors import CfgenError, ConfigError, RunInterrupted
from cfgen.stages import Stage, StageRunner


class FakeCommands:
    """Stand-in `cfgen` commands: record each call and write a file into `--out`."""

    def __init__(self, exit_code: int = 0) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.exit_code = exit_code

    def __call__(self, name: str):
        def command(argv: list[str]) -> int:
            self.calls.append((name, argv))
            out = argv[argv.index("--out") + 1]
            with open(f"{out}/result.txt", "w") as handle:
                handle.write(name)
            return self.exit_code

        return command


def stages(config_path) -> list[Stage]:
    return [
        Stage("train", "classifier", ["fit", "--config", str(config_path), "--out", "{out}"]),
        Stage("report", "evaluate", ["--model", "{train}/result.txt", "--out", "{out}"]),
    ]


def run_all(root, config_path, commands) -> list:
    runner = StageRunner(root, commands=commands, log=lambda message: None)
    return [runner.run(stage) for stage in stages(config_path)]


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("lr: 0.1\n")
    return path


def test_first_run_runs_every_stage_and_marks_it_done(tmp_path, config_path):
    commands = FakeCommands()
    results = run_all(tmp_path / "runs", config_path, commands)
    assert [r.reused for r in results] == [False, False]
    assert [name for name, _ in commands.calls] == ["classifier", "evaluate"]
    train, report = (r.folder for r in results)
    assert commands.calls[1][1][1] == f"{train}/result.txt"  # the upstream folder is passed on
    assert json.loads((report / "DONE").read_text())["stage"] == "report"


def test_rerun_reuses_finished_stages(tmp_path, config_path):
    first = run_all(tmp_path / "runs", config_path, FakeCommands())
    commands = FakeCommands()
    second = run_all(tmp_path / "runs", config_path, commands)
    assert commands.calls == []
    assert [r.reused for r in second] == [True, True]
    assert [r.folder for r in second] == [r.folder for r in first]


def test_changed_config_reruns_the_stage_and_everything_after_it(tmp_path, config_path):
    first = run_all(tmp_path / "runs", config_path, FakeCommands())
    config_path.write_text("lr: 0.2\n")
    commands = FakeCommands()
    second = run_all(tmp_path / "runs", config_path, commands)
    assert [name for name, _ in commands.calls] == ["classifier", "evaluate"]
    assert all(a.folder != b.folder for a, b in zip(first, second, strict=True))


def test_stage_without_done_runs_again_and_downstream_follows(tmp_path, config_path):
    first = run_all(tmp_path / "runs", config_path, FakeCommands())
    (first[0].folder / "DONE").unlink()  # as if the run had been interrupted
    commands = FakeCommands()
    second = run_all(tmp_path / "runs", config_path, commands)
    assert [name for name, _ in commands.calls] == ["classifier", "evaluate"]
    assert second[0].folder == first[0].folder  # same inputs: same folder, redone in place
    assert second[1].folder != first[1].folder  # new upstream result: downstream is redone


def test_failed_stage_is_not_marked_done(tmp_path, config_path):
    with pytest.raises(CfgenError, match="stage train failed .exit code 3."):
        run_all(tmp_path / "runs", config_path, FakeCommands(exit_code=3))
    (folder,) = (tmp_path / "runs").iterdir()
    assert (folder / "result.txt").is_file() and not (folder / "DONE").exists()


def test_reading_a_later_stage_is_a_config_error(tmp_path):
    runner = StageRunner(tmp_path, commands=FakeCommands(), log=lambda message: None)
    with pytest.raises(ConfigError, match=r"reads \['train'\]"):
        runner.run(Stage("report", "evaluate", ["--model", "{train}/x", "--out", "{out}"]))


class InterruptedOnce(FakeCommands):
    """Fake commands whose first call leaves `checkpoints/last.ckpt` at step 7 and is stopped."""

    def __call__(self, name: str):
        command = super().__call__(name)

        def stopped_once(argv: list[str]) -> int:
            if self.calls:
                return command(argv)
            self.calls.append((name, argv))
            last = Path(argv[argv.index("--out") + 1]) / "checkpoints" / "last.ckpt"
            last.parent.mkdir(parents=True)
            torch.save({"global_step": 7}, last)
            raise RunInterrupted("SIGTERM stopped training at step 7", ("--ckpt_path", "last"))

        return stopped_once


def test_an_interrupted_training_stage_resumes_from_its_checkpoint(tmp_path, config_path):
    commands, logs = InterruptedOnce(), []
    runner = StageRunner(tmp_path / "runs", commands=commands, log=logs.append)
    stage = stages(config_path)[0]  # `cfgen classifier fit ...`: a training command
    with pytest.raises(RunInterrupted, match="stage train interrupted .SIGTERM stopped training"):
        runner.run(stage)
    (folder,) = (tmp_path / "runs").iterdir()
    assert not (folder / "DONE").exists()

    result = StageRunner(tmp_path / "runs", commands=commands, log=logs.append).run(stage)
    last = folder / "checkpoints" / "last.ckpt"
    assert result.folder == folder
    assert commands.calls[1][1] == [*commands.calls[0][1], "--ckpt_path", str(last)]
    assert f"stage train: resuming the interrupted run from {last} (step 7)" in logs[-2]
    assert json.loads((folder / "DONE").read_text())["resumed"] is True


def test_an_interrupted_stage_that_cannot_resume_runs_again(tmp_path, config_path):
    commands = InterruptedOnce()
    runner = StageRunner(tmp_path / "runs", commands=commands, log=lambda message: None)
    stage = Stage("report", "evaluate", ["--out", "{out}"])  # not a training command
    with pytest.raises(RunInterrupted, match="runs again when the same command runs again"):
        runner.run(stage)
    runner.run(stage)
    assert commands.calls[1][1] == commands.calls[0][1]  # the same command, from the start
