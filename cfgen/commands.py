"""The table of `cfgen` commands: name -> the function that runs it, by module path.

Read by the `cfgen` entry point (`cfgen.cli`) and by the pipeline's stages (`cfgen.stages`), so
a stage runs exactly what a user would type. Modules are named, not imported: importing one
happens only when its command runs, which keeps `cfgen --help` instant. A command function takes
the argument list after the command name and returns an exit code (None means 0).

Config files: `--config configs/...` names a file of the repository's `configs/` folder, which
ships inside the package as `cfgen/configs` (a link to it in the repository). A file that is
not in the working folder is read from that built-in copy, so every documented command line,
and `cfgen demo`, runs from any folder once cfgen is installed.
"""

import importlib
import importlib.resources
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from cfgen.errors import ConfigError

Command = Callable[[list[str]], int | None]


class CommandSpec(NamedTuple):
    """`module.function` runs the command; `resume`: for a Lightning training command, the
    checkpoint in its run folder that `fit --ckpt_path` resumes an interrupted run from."""

    module: str
    function: str
    help: str
    resume: str | None = None


def training_command(module: str, help_text: str) -> CommandSpec:
    """A LightningCLI training command: `module.cli_main`, resumable from its `last.ckpt`."""
    return CommandSpec(module, "cli_main", help_text, resume="checkpoints/last.ckpt")


COMMANDS: dict[str, CommandSpec] = {
    "data": CommandSpec(
        "cfgen.data.cli", "main", "write the synthetic world or the digits to disk"
    ),
    "classifier": training_command(
        "cfgen.train.classifier_cli", "train / test a black-box classifier"
    ),
    "oracle": training_command("cfgen.train.oracle", "train an oracle: factors or attributes"),
    "explainer": training_command(
        "cfgen.train.explainer_cli", "train the Progressive Exaggeration GAN"
    ),
    "autoencoder": training_command(
        "cfgen.train.autoencoder", "train the latent-shift baseline's autoencoder"
    ),
    "generate": CommandSpec(
        "cfgen.explain.cli", "generate_main", "write exaggeration strips for images"
    ),
    "evaluate": CommandSpec(
        "cfgen.evaluate.cli", "main", "score explainers and baselines, write a report"
    ),
    "demo": CommandSpec("cfgen.pipeline", "main", "the main job on the built-in synthetic world"),
}


def load_command(name: str) -> Command:
    """The function behind `cfgen NAME`; an unknown name is a `ConfigError` listing the others."""
    if name not in COMMANDS:
        raise ConfigError(f"unknown cfgen command {name!r}; choose from {sorted(COMMANDS)}")
    spec = COMMANDS[name]
    return getattr(importlib.import_module(spec[0]), spec[1])


def builtin_config(path: str) -> Path | None:
    """cfgen's own copy of `configs/...` (e.g. `configs/pipeline/demo.yaml`), or None."""
    parts = PurePosixPath(path).parts
    if len(parts) < 2 or parts[0] != "configs":
        return None
    # cfgen installs as plain files (never zipped): the resource is a path on disk.
    resource = importlib.resources.files("cfgen").joinpath(*parts)
    return Path(str(resource)) if resource.is_file() else None


def resolve_config(path: str) -> str:
    """`path` itself if it exists from the working folder, else cfgen's built-in copy of it."""
    if Path(path).exists():
        return path
    builtin = builtin_config(path)
    return str(builtin) if builtin else path


def resolve_config_args(argv: Sequence[str]) -> list[str]:
    """`argv` with the file of each `--config FILE` or `--config=FILE` read by `resolve_config`."""
    resolved = list(argv)
    for index, arg in enumerate(resolved):
        if arg.startswith("--config="):
            resolved[index] = "--config=" + resolve_config(arg.removeprefix("--config="))
        elif index > 0 and resolved[index - 1] == "--config":
            resolved[index] = resolve_config(arg)
    return resolved
