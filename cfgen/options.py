"""Typed option groups: frozen dataclasses whose fields document and check themselves.

A group is a dataclass with a Google-style docstring (`Args:` names every field): the command
line (jsonargparse, through LightningCLI) turns it into `--model.GROUP.FIELD` options whose
`--help` is that text, and refuses a value outside a field's `Literal` choices. From Python the
same group is built directly or from a dict (`as_group`), and `check_choices` gives a value
outside a `Literal` a `ConfigError` that names the option and its choices, as the command line
does.

    @dataclass(frozen=True)
    class Averaging:
        '''...
        Args:
            bn_statistics: where the rendering generator's statistics come from.
        '''
        bn_statistics: Literal["edit", "running"] = "edit"

        def __post_init__(self) -> None:
            check_choices(self, "averaging")
"""

import dataclasses
import typing
from typing import Any, Literal, TypeVar

from cfgen.errors import ConfigError

Group = TypeVar("Group")


def check_choices(options: Any, group: str) -> None:
    """Refuse a field of the dataclass `options` whose value is not one of its `Literal`
    choices (each item, for a `list` of `Literal`): a `ConfigError` naming `group.field`."""
    hints = typing.get_type_hints(type(options))
    for field in dataclasses.fields(options):
        hint, value = hints[field.name], getattr(options, field.name)
        if typing.get_origin(hint) is list:
            hint, values = typing.get_args(hint)[0], list(value)
        else:
            values = [value]
        if typing.get_origin(hint) is not Literal:
            continue
        choices = typing.get_args(hint)
        wrong = [item for item in values if item not in choices]
        if wrong:
            raise ConfigError(
                f"unknown {group}.{field.name} {wrong[0]!r}; choose one of {list(choices)}"
            )


def as_group(value: Any, group_type: type[Group], group: str) -> Group:
    """`value` as the option group `group_type`: an instance as it is, a dict (e.g. the
    hyper-parameters of a checkpoint) as its fields, None as the defaults; a key that is not a
    field is a `ConfigError` naming it."""
    if value is None:
        return group_type()
    if isinstance(value, group_type):
        return value
    if isinstance(value, dict):
        known = {field.name for field in dataclasses.fields(group_type)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {unknown} in {group}; choose from {sorted(known)}"
            )
        return group_type(**value)
    raise ConfigError(
        f"{group} must be a {group_type.__name__} or a dict of its fields, got "
        f"{type(value).__name__}"
    )


def as_dict(options: Any) -> dict[str, Any]:
    """The fields of a group as a plain dict (what checkpoints and bundles store)."""
    return dataclasses.asdict(options)
