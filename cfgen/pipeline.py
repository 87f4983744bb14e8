"""`cfgen demo [--quick] [--out DIR]`: the whole job on the built-in synthetic world, or on your
images with `cfgen demo --data DIR --target NAME [--quick] [--out DIR]`.

Stages (from `configs/pipeline/demo.yaml`): the black-box classifier, a classifier trained on
confounded data (smiles go with glasses), the factor oracle, the PE explainer of each classifier,
strips for held-out queries (`cfgen generate`), and the evaluation suite with every baseline and
the bias experiment, which writes the HTML report. Each stage calls the `cfgen` command that a
user would type, in-process, with the repository's config files plus overrides, so the configs
stay the single source of truth. Stages are cached (`cfgen.stages`): a re-run reuses every
finished stage and redoes only what changed.

`--quick` adds `configs/pipeline/quick.yaml`: tiny data and few steps, a first look in about
three minutes whose figures are poor by design.

`--data DIR --target NAME` runs `configs/pipeline/folder.yaml` (`folder_quick.yaml` added with
`--quick`) on an attribute folder: images and `attributes.csv` with a file column, an optional
split column and attribute columns; NAME is a binary column or a class of a multi-class one
(`digit=8`). `{data}` and `{target}` in the stages' arguments are these two values.
"""

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from cfgen.commands import resolve_config
from cfgen.errors import ConfigError
from cfgen.stages import Stage, StageRunner

DEMO_CONFIG = "configs/pipeline/demo.yaml"
QUICK_CONFIG = "configs/pipeline/quick.yaml"
FOLDER_CONFIG = "configs/pipeline/folder.yaml"
FOLDER_QUICK_CONFIG = "configs/pipeline/folder_quick.yaml"


@dataclass
class PipelineConfig:
    """The demo's stages, in order, and where they run.

    stages: each a `cfgen` command with its arguments (`{out}` = the stage's folder, `{NAME}` =
    an earlier stage's folder). overrides: extra arguments appended to a stage's, by stage name
    (how `quick.yaml` shrinks the job without repeating it). report_stage: the stage whose
    `results.json` and `report.html` the final summary reads. note: printed before and after.
    """

    stages: list[Stage] = field(default_factory=list)
    out: str = "runs/demo"
    overrides: dict[str, list[str]] = field(default_factory=dict)
    report_stage: str = "evaluate"
    note: str = ""

    def resolved_stages(self) -> list[Stage]:
        """The stages with their overrides appended; unknown override names fail."""
        names = [stage.name for stage in self.stages]
        unknown = sorted(set(self.overrides) - set(names))
        if unknown:
            raise ConfigError(f"overrides for unknown stages {unknown}; the stages are {names}")
        return [
            Stage(s.name, s.command, [*s.args, *self.overrides.get(s.name, [])])
            for s in self.stages
        ]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="cfgen demo", description=__doc__.split("\n\n")[1])
    parser.add_argument("--config", action=ActionConfigFile, help="pipeline YAML (default: demo)")
    parser.add_argument(
        "--quick", action="store_true", help=f"tiny, fast settings ({QUICK_CONFIG})"
    )
    parser.add_argument("--data", type=str, help="an attribute folder to run on (not synthetic)")
    parser.add_argument("--target", type=str, help="with --data: e.g. Smiling or digit=8")
    parser.add_class_arguments(PipelineConfig, None)
    return parser


def _own_data(namespace) -> dict[str, str]:
    """`{data}` and `{target}` of a `--data` run (checked), or nothing for the synthetic demo."""
    if namespace.data is None:
        if namespace.target is not None:
            raise ConfigError("--target goes with --data DIR (the synthetic demo explains Smiling)")
        return {}
    if namespace.target is None:
        raise ConfigError(
            "cfgen demo --data needs --target NAME: a binary column of attributes.csv, or a "
            "class of a multi-class column such as digit=8"
        )
    if not (Path(namespace.data) / "attributes.csv").is_file():
        raise ConfigError(
            f"--data {namespace.data} is not an attribute folder: it needs attributes.csv (a "
            "file column, an optional split column, attribute columns) next to the images"
        )
    return {"data": str(Path(namespace.data).resolve()), "target": namespace.target}


def _filled(args: list[str], values: dict[str, str]) -> list[str]:
    for name, value in values.items():
        args = [arg.replace(f"{{{name}}}", value) for arg in args]
    return args


def parse_config(argv: Sequence[str]) -> PipelineConfig:
    """Default config files first (demo, then quick with `--quick`), then the user's options."""
    argv = list(argv)
    quick = "--quick" in argv
    own = any(arg == "--data" or arg.startswith("--data=") for arg in argv)
    base, small = (FOLDER_CONFIG, FOLDER_QUICK_CONFIG) if own else (DEMO_CONFIG, QUICK_CONFIG)
    defaults = [] if any(a.startswith("--config") for a in argv) else [base]
    if quick:
        defaults.append(small)
    config_args = [arg for path in defaults for arg in ("--config", resolve_config(path))]
    rest = [arg for arg in argv if arg != "--quick"]
    namespace = build_parser().parse_args(config_args + rest)
    values = _own_data(namespace)
    return PipelineConfig(
        stages=[
            Stage(stage.name, stage.command, _filled(list(stage.args), values))
            for stage in namespace.stages
        ],
        out=_filled([namespace.out], values)[0],
        overrides={name: _filled(list(args), values) for name, args in namespace.overrides.items()},
        report_stage=namespace.report_stage,
        note=namespace.note,
    )


def run_pipeline(config: PipelineConfig, runner: StageRunner | None = None) -> dict[str, Path]:
    """Run (or reuse) every stage in order; returns each stage's folder by name."""
    runner = runner or StageRunner(config.out)
    return {stage.name: runner.run(stage).folder for stage in config.resolved_stages()}


def main(argv: Sequence[str] | None = None) -> int:
    from cfgen.summary import print_summary

    config = parse_config(sys.argv[1:] if argv is None else argv)
    if config.note:
        print(config.note)
    start = time.perf_counter()
    folders = run_pipeline(config)
    print_summary(config, folders, time.perf_counter() - start)
    return 0
