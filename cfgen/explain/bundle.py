"""Explainer files: what rebuilds a trained explainer, and the classifier it was trained for.

Two kinds of file hold an explainer: the bundle training exports (`explainer.pt`, written by
`cfgen.io.save_bundle`) and a training checkpoint (`last.ckpt`, `best.ckpt`), whose EMA
generator is read as the bundle would hold it. Both give the same config, made in one place
(`explainer_config`, from the training module's hyper-parameters): the generator's keyword
arguments (`GeneratorOptions.generator_config`), its bins and image shape, the bin target, and
the record of the classifier (`cfgen.models.blackbox_record`).

`explained_classifier` gives the black box an explainer is used with: by default the recorded
one, read as recorded; another is refused unless asked for (`allow_mismatch`).
"""

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cfgen.errors import CheckpointError, ClassifierMismatchError
from cfgen.io import PathLike, load_bundle, safe_torch_load
from cfgen.models.blackbox import Activation, as_blackbox, classifier_fingerprint, load_blackbox
from cfgen.models.blackbox_record import classifier_record, record_difference
from cfgen.models.generator import GeneratorOptions

EXPLAINER_KIND = "explainer"
EMA_PREFIXES = ("ema.module.", "ema_generator.")
# The generator's options in checkpoints written before they were grouped (`generator:`).
LEGACY_GENERATOR_KEYS = {
    "generator_width": "width",
    "generator_max_width": "max_width",
    "generator_skips": "skips",
    "generator_output": "output",
    "edit_downsample": "edit_downsample",
    "mask_downsample": "mask_downsample",
    "generator_norm": "norm",
}


def generator_options(hparams: Mapping[str, Any]) -> GeneratorOptions:
    """The generator's options in a training module's hyper-parameters (grouped, or the flat
    keys of older checkpoints, whose missing options are the official generator's)."""
    if "generator" in hparams:
        return GeneratorOptions(**hparams["generator"])
    flat = {new: hparams[old] for old, new in LEGACY_GENERATOR_KEYS.items() if old in hparams}
    return GeneratorOptions(**flat)


def explainer_config(hparams: Mapping[str, Any], classifier: dict) -> dict:
    """An explainer bundle's config from the training module's hyper-parameters and the
    record of its classifier: what `ProgressiveExaggeration.from_checkpoint` rebuilds it from."""
    size, channels, n_bins = hparams["image_size"], hparams["channels"], hparams["n_bins"]
    return {
        "generator": generator_options(hparams).generator_config(size, channels, n_bins),
        "n_bins": n_bins,
        "image_size": size,
        "channels": channels,
        "bin_target_kind": hparams["bin_target_kind"],
        "classifier": classifier,
    }


def _bundle_from_lightning(checkpoint: dict, path: Path) -> dict:
    """The explainer bundle held in a training checkpoint (`last.ckpt`): its EMA generator."""
    weights = checkpoint.get("state_dict", {})
    # `ema.module.` since the EMA is an `AveragedModel`; `ema_generator.` in earlier checkpoints.
    prefix = next((p for p in EMA_PREFIXES if any(k.startswith(p) for k in weights)), None)
    if prefix is None or "cfgen_classifier" not in checkpoint:
        raise CheckpointError(f"{path} is a Lightning checkpoint but not of a cfgen explainer")
    state = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    config = explainer_config(
        checkpoint.get("hyper_parameters", {}), checkpoint["cfgen_classifier"]
    )
    return {"config": config, "state_dict": state}


def load_explainer_bundle(path: PathLike) -> dict:
    """An explainer bundle (`explainer.pt`) or the EMA generator of a training `.ckpt`."""
    path = Path(path)
    if path.suffix == ".ckpt":
        return _bundle_from_lightning(safe_torch_load(path), path)
    return load_bundle(path, EXPLAINER_KIND)


def explained_classifier(
    recorded: dict,
    path: Path,
    classifier: str | Path | Callable | None = None,
    output: int | str | None = None,
    activation: Activation | None = None,
    allow_mismatch: bool = False,
) -> Callable:
    """The black box the explainer at `path` works with: `classifier` (a file, or a model in
    memory), else the `recorded` one; read with `output` and `activation`, else as recorded.

    A file is checked against the record (sha256 and reading), a module against a record of
    a module in memory (its weights); a mismatch is refused unless `allow_mismatch`. A model
    given for a file's record is taken as given.
    """
    if isinstance(output, str) and output.isdigit():  # an index from the command line
        output = int(output)
    output = output if output is not None else recorded.get("output")
    activation = activation or recorded.get("activation")
    if classifier is None:
        classifier = _recorded_source(recorded, path)
    if isinstance(classifier, str | Path):  # checked before it is loaded
        source = str(classifier)
        current = {"path": source, "sha256": classifier_fingerprint(source)}
        _check_same(
            recorded, current | {"output": output, "activation": activation}, path, allow_mismatch
        )
        return load_blackbox(source, output, activation)
    box = as_blackbox(classifier, output, activation)
    if recorded.get("in_memory") and recorded.get("sha256"):
        _check_same(recorded, classifier_record(None, box), path, allow_mismatch)
    return box


def _recorded_source(recorded: dict, path: Path) -> str:
    if recorded.get("in_memory"):
        raise CheckpointError(
            f"{path} was trained with a classifier given in memory ({recorded.get('type')}); "
            "pass it: ProgressiveExaggeration.from_checkpoint(path, classifier=model)"
        )
    source = recorded.get("path")
    if not source or not Path(source).is_file():
        raise CheckpointError(
            f"the classifier explained by {path} ({source}) is not found; pass the classifier "
            "explicitly (classifier=..., CLI: --classifier PATH)"
        )
    return source


def _check_same(recorded: dict, current: dict, path: Path, allow_mismatch: bool) -> None:
    difference = record_difference(recorded, current)
    if allow_mismatch or difference is None:
        return
    if current.get("path") and recorded.get("sha256") != current.get("sha256"):
        raise ClassifierMismatchError(
            f"{current['path']} is not the classifier {path} was trained to explain (sha256 "
            f"differs from the recorded {str(recorded.get('sha256'))[:12]}…, trained for "
            f"{recorded.get('path')})"
        )
    raise ClassifierMismatchError(
        f"the classifier is not the one {path} was trained to explain ({difference})"
    )
