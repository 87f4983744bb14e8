"""`cfgen demo [--quick] [--out DIR]`: the whole job on the built-in synthetic world.

Stages (from `configs/pipeline/demo.yaml`): the black-box classifier, a classifier trained on
confounded data (smiles go with glasses), the factor oracle, the PE explainer of each classifier,
strips for held-out queries (`cfgen generate`), and the evaluation suite with every baseline and
the bias experiment, which writes the HTML report. Each stage calls the `cfgen` command that a
user would type, in-process, with the repository's config files plus overrides, so the configs
stay the single source of truth. Stages are cached (`cfgen.stages`): a re-run reuses every
finished stage and redoes only what changed.

`--quick` adds `configs/pipeline/quick.yaml`: tiny data and few steps, a first look in about
three minutes whose figures are poor by design.
"""

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from cfgen.errors import ConfigError
from cfgen.stages import Stage, StageRunner, resolve_path_arg

DEMO_CONFIG = "configs/pipeline/demo.yaml"
QUICK_CONFIG = "configs/pipeline/quick.yaml"


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
    parser.add_class_arguments(PipelineConfig, None)
    return parser


def parse_config(argv: Sequence[str]) -> PipelineConfig:
    """Default config files first (demo, then quick with `--quick`), then the user's options."""
    argv = list(argv)
    quick = "--quick" in argv
    defaults = [] if any(a.startswith("--config") for a in argv) else [DEMO_CONFIG]
    if quick:
        defaults.append(QUICK_CONFIG)
    config_args = [arg for path in defaults for arg in ("--config", resolve_path_arg(path))]
    rest = [arg for arg in argv if arg != "--quick"]
    namespace = build_parser().parse_args(config_args + rest)
    return PipelineConfig(
        stages=[Stage(**vars(stage)) for stage in namespace.stages],
        out=namespace.out,
        overrides=dict(namespace.overrides),
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
