"""What a `--ckpt_path` must be for a training command to resume from it, checked before
Lightning reads it.

Lightning resumes differently by how the checkpoint is named: `--ckpt_path last` (a keyword)
builds the model from the command line's settings and loads the weights into it, so a changed
width fails on the weights (`CfgenCLI._checkpoint_mismatch` names it); an explicit file has its
saved settings applied over the command line's (`LightningCLI._parse_ckpt_path`), so a setting
changed on the command line would be dropped without a word. `fit` refuses that; `validate` and
`test`, which are meant to read a checkpoint as it was trained, say which settings it overrode.
"""

import dataclasses
import inspect
import sys
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from cfgen.errors import CheckpointError, ConfigError


def public(hparams: Any) -> dict:
    """Hyper-parameters without Lightning's private entries (`_instantiator`)."""
    return {key: value for key, value in dict(hparams).items() if not key.startswith("_")}


def flat(hparams: Any) -> dict:
    """`public` hyper-parameters with option groups (dicts, dataclasses, namespaces) flattened
    to dotted keys (`generator.width`), so that a difference names the one setting that
    changed."""
    if isinstance(hparams, Namespace):
        hparams = hparams.as_dict()
    flattened = {}
    for key, value in public(hparams).items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Namespace):
            value = value.as_dict()
        if isinstance(value, dict):
            flattened.update({f"{key}.{inner}": item for inner, item in flat(value).items()})
        else:
            flattened[key] = value
    return flattened


def _comparable(value: Any) -> Any:
    """A setting as a plain value: YAML and torch.save disagree on tuples and paths."""
    if isinstance(value, tuple | list):
        return [_comparable(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def require_training_checkpoint(path: str, loaded: Any, model_class: type) -> None:
    """Refuse a torch file Lightning cannot resume from (it would fail with a KeyError), and
    the checkpoint of another kind of model (Lightning would apply its hyper-parameters to this
    command's model, and fail on the first one that is not an argument of it)."""
    if not (
        isinstance(loaded, dict) and {"state_dict", "pytorch-lightning_version"} <= set(loaded)
    ):
        kind = "a cfgen model bundle" if isinstance(loaded, dict) and "format" in loaded else "it"
        raise CheckpointError(
            f"{path} is not a training checkpoint: {kind} holds no Lightning training state. "
            "--ckpt_path takes a checkpoint a training run wrote (checkpoints/last.ckpt in its "
            "run folder, or --ckpt_path last)"
        )
    parameters = inspect.signature(model_class.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    foreign = sorted(set(public(loaded.get("hyper_parameters", {}))) - set(parameters))
    if foreign:
        raise CheckpointError(
            f"{path} is the checkpoint of another kind of model: its settings {foreign[:4]} are "
            f"not {model_class.__name__}'s. Resume it with the command that trained it, or leave "
            "out --ckpt_path"
        )


def changes(section: str, saved: dict, given: dict) -> list[str]:
    """Each setting of two `flat` dicts that both hold with other values, as
    `<section>.<key> is <saved> in the checkpoint, <given> here`."""
    return [
        f"{section}.{key} is {saved[key]!r} in the checkpoint, {given[key]!r} here"
        for key in sorted(set(saved) & set(given))
        if _comparable(saved[key]) != _comparable(given[key])
    ]


def overridden_settings(loaded: dict, model_config: Any) -> list[str]:
    """The model settings of the command line that the checkpoint's saved ones replace."""
    return changes("model", flat(loaded.get("hyper_parameters", {})), flat(model_config or {}))


def require_same_settings(path: str, loaded: dict, model_config: Any, subcommand: str) -> None:
    """An explicit `--ckpt_path FILE` whose saved settings differ from the command line's:
    `fit` refuses (the run would go on with the checkpoint's, the change dropped); `validate` /
    `test` go on with the checkpoint's and say so on stderr."""
    changed = overridden_settings(loaded, model_config)
    if not changed:
        return
    shown = "; ".join(changed[:4]) + (f" (and {len(changed) - 4} more)" if len(changed) > 4 else "")
    if subcommand != "fit":
        print(f"note: {path} is read with its own settings, not these: {shown}", file=sys.stderr)
        return
    raise ConfigError(
        f"cannot resume from {path} with other settings: {shown}. A checkpoint file given by "
        "its path resumes with the settings saved in it; give the run's own (--config "
        "RUN/config.yaml), or start a new run in another --trainer.default_root_dir without "
        "--ckpt_path"
    )
