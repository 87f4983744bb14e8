"""The table of `cfgen` commands: name -> the function that runs it, by module path.

Read by the `cfgen` entry point (`cfgen.cli`) and by the pipeline's stages (`cfgen.stages`), so
a stage runs exactly what a user would type. Modules are named, not imported: importing one
happens only when its command runs, which keeps `cfgen --help` instant. A command function takes
the argument list after the command name and returns an exit code (None means 0).
"""

import importlib
from collections.abc import Callable
from typing import NamedTuple

from cfgen.errors import ConfigError

Command = Callable[[list[str]], int | None]


class CommandSpec(NamedTuple):
    module: str
    function: str
    help: str


COMMANDS: dict[str, CommandSpec] = {
    "data": CommandSpec(
        "cfgen.data.cli", "main", "write the synthetic world or the digits to disk"
    ),
    "classifier": CommandSpec(
        "cfgen.train.classifier", "cli_main", "train / test a black-box classifier"
    ),
    "oracle": CommandSpec(
        "cfgen.train.oracle", "cli_main", "train an oracle: factors or attributes"
    ),
    "explainer": CommandSpec(
        "cfgen.train.explainer", "cli_main", "train the Progressive Exaggeration GAN"
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
    module, function, _ = COMMANDS[name]
    return getattr(importlib.import_module(module), function)
