"""Cached pipeline stages: each runs one `cfgen` command in-process, in a folder keyed by a hash.

A stage is a `cfgen` command name and its arguments, which may name other stages' folders:

    Stage("explainer", "explainer", ["fit", "--config", "configs/explainer/synthetic_smile.yaml",
          "--trainer.default_root_dir", "{out}", "--classifier", "{classifier}/classifier.pt"])

`{out}` is the stage's own folder, `{NAME}` the folder of an earlier stage NAME. The folder is
`<root>/<name>-<key>`, key = hash of (the resolved arguments, the contents of every config file
they name, the cfgen version, the DONE records of the stages it reads). A stage is finished when
its folder holds `DONE`, written atomically after the command succeeded; a re-run reuses it. A
change of config, code version or upstream result gives a new key and so a fresh run, and a
folder without `DONE` (a run that was interrupted or failed) is run again.
"""

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cfgen
from cfgen.commands import COMMANDS, Command, load_command, resolve_config, resolve_config_args
from cfgen.errors import CfgenError, CheckpointError, ConfigError, RunInterrupted
from cfgen.io import atomic_write_json, safe_torch_load

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")


@dataclass
class Stage:
    """One step of a pipeline: `cfgen COMMAND ARGS...`, with `{out}` / `{stage}` placeholders."""

    name: str
    command: str
    args: list[str] = field(default_factory=list)

    def needs(self) -> list[str]:
        """Names of the earlier stages whose folders the arguments read."""
        found = (PLACEHOLDER.findall(arg) for arg in self.args)
        return sorted({name for names in found for name in names} - {"out"})


@dataclass
class StageResult:
    name: str
    folder: Path
    reused: bool
    seconds: float


def config_digests(args: list[str]) -> dict[str, str]:
    """sha256 of every config file named in `args` (name as written -> digest)."""
    digests = {}
    for arg in args:
        path = Path(resolve_config(arg))
        if arg.endswith(CONFIG_SUFFIXES) and path.is_file():
            digests[arg] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def stage_key(args: list[str], upstream: Mapping[str, str]) -> str:
    """Hash of a stage's resolved `args`, its config files, cfgen's version and `upstream` DONEs."""
    payload = {
        "args": args,
        "configs": config_digests(args),
        "cfgen": cfgen.__version__,
        "upstream": dict(sorted(upstream.items())),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _fill(args: list[str], folders: Mapping[str, str]) -> list[str]:
    return [PLACEHOLDER.sub(lambda m: folders[m.group(1)], arg) for arg in args]


class StageRunner:
    """Runs stages in order under `root`, reusing every stage whose folder holds `DONE`."""

    def __init__(
        self,
        root: str | Path,
        commands: Callable[[str], Command] = load_command,
        log: Callable[[str], None] = print,
    ) -> None:
        self.root = Path(root)
        self.commands, self.log = commands, log
        self.finished: dict[str, Path] = {}

    def _upstream(self, stage: Stage) -> dict[str, str]:
        missing = [name for name in stage.needs() if name not in self.finished]
        if missing:
            raise ConfigError(
                f"stage {stage.name!r} reads {missing}, which are not earlier stages; "
                "order the stages so that each comes after the stages it reads"
            )
        return {name: (self.finished[name] / "DONE").read_text() for name in stage.needs()}

    def folder(self, stage: Stage) -> tuple[Path, list[str]]:
        """The stage's folder and its resolved argv (placeholders filled)."""
        upstream = self._upstream(stage)
        folders = {name: str(self.finished[name]) for name in stage.needs()}
        key_args = _fill(stage.args, {**folders, "out": "{out}"})
        folder = self.root / f"{stage.name}-{stage_key(key_args, upstream)}"
        return folder, _fill(stage.args, {**folders, "out": str(folder)})

    def run(self, stage: Stage) -> StageResult:
        """Reuse the stage if finished, else run its command and mark it DONE."""
        folder, argv = self.folder(stage)
        done = folder / "DONE"
        if done.is_file():
            self.log(f"stage {stage.name}: reusing finished {folder}")
            self.finished[stage.name] = folder
            return StageResult(stage.name, folder, reused=True, seconds=0.0)
        self.log(f"stage {stage.name}: cfgen {stage.command} {' '.join(argv)}")
        resume = self._resume_args(stage, folder)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            code = self.commands(stage.command)(resolve_config_args([*argv, *resume]))
        except (RunInterrupted, KeyboardInterrupt) as stop:
            raise self._interrupted(stage, folder, stop) from stop
        seconds = time.perf_counter() - start
        if code:
            raise CfgenError(
                f"stage {stage.name} failed (exit code {code}); {folder} is kept without DONE "
                "and runs again next time"
            )
        record = {"stage": stage.name, "command": stage.command, "argv": argv, "seconds": seconds}
        record["resumed"] = bool(resume)
        record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        atomic_write_json(done, record)  # last: a folder with DONE is complete
        self.finished[stage.name] = folder
        self.log(f"stage {stage.name}: done in {seconds:.0f} s")
        return StageResult(stage.name, folder, reused=False, seconds=seconds)

    def _resume_args(self, stage: Stage, folder: Path) -> list[str]:
        """`--ckpt_path` of the checkpoint an interrupted training stage left, else nothing.

        Same folder means same arguments, configs, code version and upstream results, so the
        run can go on where it stopped.
        """
        spec = COMMANDS.get(stage.command)
        resume = getattr(spec, "resume", None)
        checkpoint = folder / resume if resume else None
        if checkpoint is None or stage.args[:1] != ["fit"] or not checkpoint.is_file():
            return []
        try:
            step = safe_torch_load(checkpoint).get("global_step")
        except CheckpointError as error:
            raise CheckpointError(
                f"stage {stage.name} was interrupted and its checkpoint cannot be read ({error}); "
                f"delete {folder} to run the stage from the start"
            ) from error
        self.log(
            f"stage {stage.name}: resuming the interrupted run from {checkpoint} (step {step}); "
            "its arguments, configs and inputs are unchanged"
        )
        return ["--ckpt_path", str(checkpoint)]

    def _interrupted(
        self, stage: Stage, folder: Path, stop: RunInterrupted | KeyboardInterrupt
    ) -> RunInterrupted:
        cause = str(stop) if isinstance(stop, RunInterrupted) else "SIGINT"
        resumes = getattr(COMMANDS.get(stage.command), "resume", None) and stage.args[:1] == ["fit"]
        then = "resumes from its last checkpoint" if resumes else "runs again"
        return RunInterrupted(
            f"stage {stage.name} interrupted ({cause}); finished stages are kept and "
            f"{folder} {then} when the same command runs again",
            exit_code=getattr(stop, "exit_code", 130),
        )
