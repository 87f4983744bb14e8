"""Options of a baseline, read from its factory's signature, and their validation.

A baseline's keyword arguments with their defaults are its options (configs and the CLI pass
them by name), so a misspelt option fails with the list of valid ones instead of a TypeError
from deep inside captum.
"""

import inspect
from collections.abc import Callable

from cfgen.errors import ConfigError


def factory_options(factory: Callable, skip: int = 1) -> dict[str, object]:
    """Keyword options of `factory` and their defaults, after its first `skip` parameters.

    `*args` / `**kwargs` parameters are not options and are left out.
    """
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    parameters = list(inspect.signature(factory).parameters.values())[skip:]
    return {p.name: p.default for p in parameters if p.kind not in variadic}


def check_options(name: str, valid: dict[str, object], options: dict) -> None:
    """Raise a `ConfigError` naming the `options` of `name` that are not in `valid`."""
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for {name!r}; valid options and defaults: {valid}"
        )
