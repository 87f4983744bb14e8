"""The black box `f`: any classifier, seen as one differentiable posterior `(N, C, H, W) -> (N,)`.

    f = load_blackbox("runs/classifier/synthetic_smile/classifier.pt", target="Smiling")
    f = load_blackbox("model.torchscript.pt", target=3, output="probabilities")
    f = load_blackbox("model.pt2", target=0)                     # torch.export.save
    f = load_blackbox("mypkg.models:build", allow_import=True)   # runs your code: opt in
    f = BlackBox(my_module, target_index=0, output="logits", activation="softmax")

The adapter is frozen and always in eval mode (Lightning cannot switch it back to training), and
checks the classifier's output once, on its first call, so that a mis-declared classifier fails
with a message saying what it returned and what to declare, instead of silently producing
meaningless explanations.
"""

import importlib
import importlib.util
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from cfgen.errors import CheckpointError, ClassifierError, ConfigError, DataError
from cfgen.io import file_sha256, load_bundle, safe_export_load
from cfgen.models.classifiers import build_classifier

Output = Literal["logits", "probabilities"]
Activation = Literal["sigmoid", "softmax"]

# Scores (N, K) -> probabilities (N, K); only applied when the classifier returns logits.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "softmax": lambda scores: scores.softmax(dim=1),
}
OUTPUTS = ("logits", "probabilities")


class BlackBox(nn.Module):
    """A frozen classifier returning the posterior of one class: `(N, C, H, W) -> (N,)` in [0, 1].

    Args:
        model: maps images `(N, C, H, W)` to scores `(N, K)` or `(N,)`.
        target_index: which of the K outputs is the explained class.
        output: whether the model returns "logits" or "probabilities".
        activation: how logits become probabilities: "sigmoid" (multi-label, one score per
            class) or "softmax" (over the K outputs). Ignored for "probabilities".
        in_channels: expected image channels, checked on every call when known.
    """

    def __init__(
        self,
        model: nn.Module,
        target_index: int = 0,
        output: Output = "logits",
        activation: Activation = "sigmoid",
        in_channels: int | None = None,
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ConfigError(f"output={output!r} is not one of {list(OUTPUTS)}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
        self.model = model
        self.target_index = int(target_index)
        self.output = output
        self.activation = activation
        self.in_channels = in_channels
        # Names of the K outputs when known (bundles record them), for messages and reports.
        self.attribute_names: list[str] | None = None
        self.checked = False
        self.requires_grad_(False)
        self.train(False)

    @property
    def target_name(self) -> str | None:
        """Name of the explained output, when the classifier's attribute names are known."""
        names = self.attribute_names
        return names[self.target_index] if names and self.target_index < len(names) else None

    def train(self, mode: bool = True) -> "BlackBox":
        """Always eval mode: batch-norm statistics and dropout of the black box never change."""
        # Set the flags directly: torch.export modules raise on train()/eval() calls.
        for module in self.modules():
            module.training = False
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in [-1, 1] -> (N,) posterior of the target class, differentiable."""
        self._check_input(images)
        scores = self.model(images)
        if not self.checked:
            self._check_scores(images, scores)
            self.checked = True
        scores = scores.reshape(len(images), -1)
        if self.output == "logits":
            scores = ACTIVATIONS[self.activation](scores)
        return scores[:, self.target_index]

    def check(self, example: torch.Tensor) -> None:
        """Run the output checks now on `example` `(N, C, H, W)` instead of on first use."""
        self.checked = False
        with torch.no_grad():
            self(example)

    def _check_input(self, images: torch.Tensor) -> None:
        if images.ndim != 4:
            raise ClassifierError(
                f"the black box takes images (N, C, H, W); got a tensor of shape "
                f"{tuple(images.shape)}"
            )
        if self.in_channels is not None and images.shape[1] != self.in_channels:
            raise ClassifierError(
                f"the classifier expects {self.in_channels}-channel images; got "
                f"{images.shape[1]} channels (shape {tuple(images.shape)})"
            )
        # Checked on every call, not only the first: a NaN would otherwise flow silently into
        # posteriors, strips and metrics.
        if not bool(torch.isfinite(images).all()):
            raise DataError(
                f"the images given to the classifier contain NaN or inf (shape "
                f"{tuple(images.shape)}); clean the queries, or, if they were generated, the "
                "explainer's weights are broken"
            )

    def _check_scores(self, images: torch.Tensor, scores: torch.Tensor) -> None:
        """Check shape, target index, finiteness and range of the classifier's raw output."""
        if not isinstance(scores, torch.Tensor):
            raise ClassifierError(
                f"the classifier returned a {type(scores).__name__}; expected a tensor of scores "
                "(N, K) or (N,). Wrap the model so that forward returns that tensor"
            )
        batch = len(images)
        if scores.ndim not in (1, 2) or scores.shape[0] != batch:
            raise ClassifierError(
                f"the classifier returned shape {tuple(scores.shape)} for {batch} images; "
                f"expected ({batch}, K) or ({batch},)"
            )
        num_outputs = 1 if scores.ndim == 1 else scores.shape[1]
        if not 0 <= self.target_index < num_outputs:
            raise ClassifierError(
                f"target_index={self.target_index} is out of range: the classifier has "
                f"{num_outputs} output(s), so use an index in [0, {num_outputs - 1}]"
            )
        if self.output == "logits" and self.activation == "softmax" and num_outputs < 2:
            raise ClassifierError(
                "activation='softmax' needs at least 2 outputs but the classifier has 1; "
                "declare activation='sigmoid'"
            )
        if not torch.isfinite(scores).all():
            raise ClassifierError(
                f"the classifier returned non-finite values (NaN or inf) for input of shape "
                f"{tuple(images.shape)}; check its weights and that images are in [-1, 1]"
            )
        low, high = scores.min().item(), scores.max().item()
        if self.output == "probabilities" and (low < 0 or high > 1):
            raise ClassifierError(
                f"classifier returned values in [{low:.3g}, {high:.3g}] but "
                "output='probabilities' was declared; declare output='logits'"
            )


def _archive_kind(path: Path) -> str:
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


def _resolve_target(target: str | int | None, names: list[str] | None, source: str) -> int:
    """The output index of `target`: an index, an attribute name, or None for the default."""
    if target is None:
        return 0
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    if not names:
        raise ClassifierError(
            f"target {target!r} is given by name but {source} has no attribute names; "
            "pass the output index instead (e.g. target=0)"
        )
    if target not in names:
        raise ClassifierError(f"target {target!r} is not an attribute of {source}: {names}")
    return names.index(target)


def _from_bundle(path: Path, target, output, activation) -> BlackBox:
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
    index = _resolve_target(target if target is not None else config.get("target"), names, path)
    box = BlackBox(
        model,
        index,
        output or config.get("output", "logits"),
        activation or config.get("activation", "sigmoid"),
        in_channels=config["in_channels"],
    )
    box.attribute_names = names
    return box


def _from_torchscript(path: Path, target, output, activation) -> BlackBox:
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as error:
        raise CheckpointError(f"cannot load TorchScript file {path}: {error}") from error
    index = _resolve_target(target, None, str(path))
    return BlackBox(model, index, output or "logits", activation or "sigmoid")


def _from_export(path: Path, target, output, activation) -> BlackBox:
    try:
        model = safe_export_load(path)  # refuses archives whose parts torch would unpickle
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"cannot load torch.export file {path}: {error}") from error
    index = _resolve_target(target, None, str(path))
    return BlackBox(model, index, output or "logits", activation or "sigmoid")


def _from_import(spec: str, target, output, activation, allow_import: bool) -> BlackBox:
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
    index = _resolve_target(target, getattr(model, "attribute_names", None), spec)
    return BlackBox(model, index, output or "logits", activation or "sigmoid")


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
    target: str | int | None = None,
    output: Output | None = None,
    activation: Activation | None = None,
    allow_import: bool = False,
) -> BlackBox:
    """Load the classifier to explain: a cfgen bundle, TorchScript, torch.export `.pt2`, or import.

    `target` picks the explained output: an index, or an attribute name (bundles know theirs);
    by default the bundle's `target`, else output 0. `output`/`activation` default to what the
    bundle declares, else "logits" + "sigmoid". Import paths run code: only with `allow_import`.
    """
    if _import_spec(source):
        return _from_import(source, target, output, activation, allow_import)
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(
            f"classifier file not found: {path}; give a cfgen classifier.pt, a TorchScript file "
            "or 'package.module:function'"
        )
    return LOADERS[_archive_kind(path)](path, target, output, activation)


FACT_KEYS = ("target", "attribute_names", "image_size", "in_channels", "activation")


def classifier_facts(source: str) -> dict:
    """What a cfgen classifier bundle records about its data (`FACT_KEYS`): the explained
    target, its output names, image size and channels, and its activation. Empty for other
    classifiers (TorchScript, torch.export, import paths), which record none of it."""
    path = Path(source)
    if _import_spec(source) or not path.is_file() or _archive_kind(path) != "bundle":
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
    if not Path(source).is_file():
        raise CheckpointError(f"classifier file not found: {source}")
    return file_sha256(source)
