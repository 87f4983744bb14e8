"""What an explainer records about the classifier it explains, and the check that one is it.

An explainer is tied to one classifier read one way: its training checkpoint and its bundle
record, in `classifier_record`,

- where it came from: `path` (a file or an import path) with the file's `sha256`, or, for a
  classifier given in memory, `in_memory: true`, its `type` and, for an nn.Module, the
  `sha256` of its weights (`weights_fingerprint`; a plain function has none);
- how its posterior is read: the explained `output` (index, and `output_name` when known) and
  the `activation`.

`record_difference` compares two records: what resuming a training run or loading an explainer
with another classifier checks, as far as the records allow (a function in memory can only be
checked by its reading).
"""

import hashlib
from collections.abc import Callable

import torch
from torch import nn

from cfgen.models.blackbox import classifier_fingerprint
from cfgen.models.blackbox_adapter import BlackBox

READING_KEYS = ("output", "activation")


def weights_fingerprint(module: nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and values, in order)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _model_of(classifier: Callable) -> Callable:
    """The model behind a `BlackBox`, or the classifier itself."""
    return classifier.model if isinstance(classifier, BlackBox) else classifier


def classifier_record(source: str | None, black_box: BlackBox) -> dict:
    """The record of `black_box`, loaded from `source` (a file or import path) or, when
    `source` is None, given in memory. Its reading is the black box's (choose it, or call the
    black box once, first)."""
    record: dict = dict(black_box.reading())
    if source is not None:
        return record | {"path": source, "sha256": classifier_fingerprint(source)}
    model = _model_of(black_box)
    fingerprint = weights_fingerprint(model) if isinstance(model, nn.Module) else None
    kind = type(model)
    return record | {
        "path": None,
        "sha256": fingerprint,
        "in_memory": True,
        "type": f"{kind.__module__}.{kind.__qualname__}",
    }


def _describe(record: dict) -> str:
    if record.get("in_memory"):
        where = f"a {record.get('type')} given in memory"
    else:
        where = str(record.get("path"))
    sha = record.get("sha256")
    return where + (f" (sha256 {sha[:12]}…)" if sha else "")


def record_difference(recorded: dict, current: dict) -> str | None:
    """What differs between the `recorded` classifier and the `current` one, or None when they
    are the same as far as both records tell. A record without a reading (explainers trained
    before it was recorded) is compared by identity only."""
    different = []
    same_kind = bool(recorded.get("in_memory")) == bool(current.get("in_memory"))
    if not same_kind or recorded.get("sha256") != current.get("sha256"):
        different.append(f"{_describe(recorded)}, now {_describe(current)}")
    for key in READING_KEYS:
        value = current.get(key)
        named = key == "output" and value is not None and value == recorded.get("output_name")
        if key in recorded and recorded[key] != value and not named:
            different.append(f"{key} {recorded[key]!r}, now {value!r}")
    return "; ".join(different) or None
