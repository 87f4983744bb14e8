"""The classifier to explain, from wherever it is: a file, an import path or a model in memory.

    f = load_blackbox("runs/classifier/synthetic_smile/classifier.pt")      # a cfgen bundle
    f = load_blackbox("smile.torchscript.pt", output=1, activation="softmax")
    f = load_blackbox("model.pt2", output=0, activation="sigmoid")          # torch.export.save
    f = load_blackbox("mypkg.models:build", allow_import=True)   # runs your code: opt in
    f = as_blackbox(my_module, output=1, activation="softmax")   # a model held in memory

Each gives a `BlackBox` (`cfgen.models.blackbox_adapter`): the posterior of one output,
`(N, C, H, W) -> (N,)`. `output` is the explained output column, an index or (when the file
records names) a name; `activation` is how its scores become a posterior: sigmoid, softmax
over the columns, or none for a model that returns probabilities. A cfgen bundle records both;
any other classifier of several output columns must be given both (its black box refuses to run
otherwise), one of a single column reads as its sigmoid.
"""

import importlib
import importlib.util
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cfgen.errors import CheckpointError, ClassifierError, ConfigError
from cfgen.io import file_sha256, load_bundle, safe_export_load
from cfgen.models.blackbox_adapter import Activation, BlackBox
from cfgen.models.classifiers import build_classifier

__all__ = ["Activation", "BlackBox", "as_blackbox", "classifier_facts", "load_blackbox"]

Choice = int | str | None
# What `output` meant before it named the column: refused with the new way to say it.
FORMER_OUTPUT_WORDS = ("logits", "probabilities")


def archive_kind(path: Path) -> str:
    """ "export" (torch.export `.pt2`), "torchscript" or "bundle", from the archive's entries."""
    if not zipfile.is_zipfile(path):
        return "bundle"  # not a zip at all: load_bundle explains what it is not
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(name.endswith("/archive_format") for name in names):
        return "export"
    if any(name.endswith("constants.pkl") for name in names):
        return "torchscript"
    return "bundle"


def _resolve_output(output: Choice, names: list[str] | None, source: str) -> int | None:
    """The column index of `output`: an index, an attribute name, or None (not chosen)."""
    if output is None:
        return None
    if isinstance(output, int) or (isinstance(output, str) and output.isdigit()):
        return int(output)
    if output in FORMER_OUTPUT_WORDS and output not in (names or []):
        raise ConfigError(
            f"output={output!r}: `output` names the explained output column (an index or a "
            "name); for a model that returns probabilities give activation='none', for logits "
            "activation='sigmoid' or 'softmax'"
        )
    if not names:
        raise ClassifierError(
            f"output {output!r} is given by name but {source} has no attribute names; "
            "pass the output index instead (e.g. output=0)"
        )
    if output not in names:
        raise ClassifierError(f"output {output!r} is not an attribute of {source}: {names}")
    return names.index(output)


def _from_bundle(path: Path, output: Choice, activation: Activation | None) -> BlackBox:
    bundle = load_bundle(path, kind="classifier")
    config = bundle["config"]
    model = build_classifier(
        config["arch"], config["num_outputs"], config["image_size"], config["in_channels"]
    )
    try:
        model.load_state_dict(bundle["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match its own config {config}: {error}") from error
    names = config.get("attribute_names")
    index = _resolve_output(output if output is not None else config.get("target"), names, path)
    recorded = "none" if config.get("output") == "probabilities" else config.get("activation")
    box = BlackBox(
        model, index, activation=activation or recorded, in_channels=config["in_channels"]
    )
    box.attribute_names = names
    return box


def _from_torchscript(path: Path, output: Choice, activation: Activation | None) -> BlackBox:
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as error:
        raise CheckpointError(f"cannot load TorchScript file {path}: {error}") from error
    return BlackBox(model, _resolve_output(output, None, str(path)), activation=activation)


def _from_export(path: Path, output: Choice, activation: Activation | None) -> BlackBox:
    try:
        model = safe_export_load(path)  # refuses archives whose parts torch would unpickle
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"cannot load torch.export file {path}: {error}") from error
    return BlackBox(model, _resolve_output(output, None, str(path)), activation=activation)


def _from_import(
    spec: str, output: Choice, activation: Activation | None, allow_import: bool
) -> BlackBox:
    if not allow_import:
        raise ConfigError(
            f"loading classifier {spec!r} would import and run Python code; if you trust it, "
            "pass allow_import=True to load_blackbox (the command line only takes classifier files)"
        )
    module_name, _, function_name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(
            f"cannot import {spec!r} (expected 'package.module:function'): {error}"
        ) from error
    model = factory()
    if not isinstance(model, nn.Module):
        raise ClassifierError(f"{spec} returned a {type(model).__name__}; expected an nn.Module")
    return as_blackbox(model, output, activation, source=spec)


LOADERS: dict[str, Callable[..., BlackBox]] = {
    "bundle": _from_bundle,
    "torchscript": _from_torchscript,
    "export": _from_export,
}


def _import_spec(source: str) -> bool:
    """`package.module:function` (and not an existing file such as `C:/model.pt`)."""
    return ":" in source and not Path(source).exists()


def load_blackbox(
    source: str,
    output: Choice = None,
    activation: Activation | None = None,
    allow_import: bool = False,
    *,
    target: Choice = None,
) -> BlackBox:
    """Load the classifier to explain: a cfgen bundle, TorchScript, torch.export `.pt2`, or import.

    Args:
        source: the file, or `package.module:function` returning an nn.Module.
        output: the explained output column: an index, or an attribute name (bundles and
            import paths whose model has `attribute_names` know theirs). Default: the
            bundle's target, else the only column.
        activation: "sigmoid", "softmax" or "none" (the model returns probabilities).
            Default: what the bundle declares, else sigmoid for a model of one column.
        allow_import: import paths run code: only with this set.
        target: the former name of `output`.

    A classifier of several output columns with `output` or `activation` missing is refused
    on its first call, with a message naming the options.
    """
    output = _one_choice(output, target)
    if _import_spec(source):
        return _from_import(source, output, activation, allow_import)
    path = _existing_file(source)
    return LOADERS[archive_kind(path)](path, output, activation)


def _existing_file(source: str) -> Path:
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(
            f"classifier file not found: {path}; give a cfgen classifier.pt, a TorchScript file "
            "or 'package.module:function'"
        )
    return path


def _one_choice(output: Choice, target: Choice) -> Choice:
    if output is not None and target is not None and output != target:
        raise ConfigError(f"output={output!r} and target={target!r} disagree; give only output")
    return output if output is not None else target


def as_blackbox(
    classifier: str | Path | nn.Module | Callable[[torch.Tensor], torch.Tensor],
    output: Choice = None,
    activation: Activation | None = None,
    source: str | None = None,
) -> BlackBox:
    """Any classifier as the black box: a file or import path (`load_blackbox`, without
    running imports), a `BlackBox` as it is, or a model in memory (an nn.Module or any
    callable returning scores (N, K) or (N,)) read with `output` and `activation`. A black box
    given with a choice still open takes the one given here."""
    if isinstance(classifier, str | Path):
        return load_blackbox(str(classifier), output, activation)
    if isinstance(classifier, BlackBox):
        chosen = {"output": output, "activation": activation}
        own = {"output": classifier.target_index, "activation": classifier.activation}
        clash = {k: v for k, v in chosen.items() if v is not None and v != own[k] and own[k]}
        if clash:
            raise ConfigError(
                f"the black box already reads {own}; {clash} differs. Build it with the "
                "reading you want, or give the model itself"
            )
        if classifier.target_index is None and output is not None:
            classifier.target_index = _resolve_output(output, classifier.attribute_names, "it")
        classifier.activation = classifier.activation or activation
        return classifier
    if not callable(classifier):
        raise ConfigError(
            f"the classifier must be a file path, an nn.Module or a callable; got a "
            f"{type(classifier).__name__}"
        )
    names = getattr(classifier, "attribute_names", None)
    where = source or type(classifier).__name__
    box = BlackBox(classifier, _resolve_output(output, names, where), activation=activation)
    box.attribute_names = names
    return box


FACT_KEYS = ("target", "attribute_names", "image_size", "in_channels", "activation")


def classifier_facts(source: str) -> dict:
    """What a cfgen classifier bundle records about its data (`FACT_KEYS`): the explained
    target, its output names, image size and channels, and its activation. Empty for other
    classifiers (TorchScript, torch.export, import paths), which record none of it."""
    path = Path(source)
    if _import_spec(source) or not path.is_file() or archive_kind(path) != "bundle":
        return {}
    config = load_bundle(path, kind="classifier")["config"]
    return {key: config[key] for key in FACT_KEYS if key in config}


def classifier_fingerprint(source: str) -> str:
    """sha256 of the classifier `source`: the file, or for an import path its module file."""
    if _import_spec(source):
        module_spec = importlib.util.find_spec(source.partition(":")[0])
        if module_spec is None or not module_spec.origin:
            raise ConfigError(f"cannot find the module of {source!r} to fingerprint it")
        return file_sha256(module_spec.origin)
    return file_sha256(_existing_file(source))
