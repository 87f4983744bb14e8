"""Safe file I/O shared by every part of cfgen.

- Every output file is written atomically (temp file in the same folder, fsync, rename), so a
  kill never leaves a truncated file behind.
- Model files are loaded with `torch.load(weights_only=True)`: a pickle that would run code is
  refused with a clear message.
- Output folders are never overwritten silently, and names that come from data (CSV file
  columns, query ids) can never escape the folder they are written into.
"""

import errno
import hashlib
import io
import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch

from cfgen.errors import CfgenError, CheckpointError

PathLike = str | os.PathLike


def _atomic_write(
    path: PathLike, write: Callable[[Any], None], mode: str, fsync: bool = True
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        if error.errno == errno.ENOSPC:
            raise CfgenError(
                f"no space left on the device while writing {path}; free some disk space "
                "and run again (files written before are intact)"
            ) from error
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: PathLike, data: bytes, fsync: bool = True) -> Path:
    """Write `data` to `path` atomically; `fsync=False` skips flushing it to the disk (the file
    is still whole or absent after a crash of the process, not after a power cut)."""
    return _atomic_write(path, lambda handle: handle.write(data), "wb", fsync)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON to `path` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """`torch.save` to `path` atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def _unpickler_reason(error: pickle.UnpicklingError) -> str:
    """What torch's refusal names as the offending object, without its advice on loading the
    file unsafely (nor its terminal colour codes)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    detail = text.partition("WeightsUnpickler error:")[2].partition("Check the documentation")[0]
    lines = [line.strip() for line in detail.split(". Please")[0].splitlines() if line.strip()]
    return lines[0] if lines else "objects other than tensors and containers"


# How torch files begin: `torch.save` writes a zip archive; before torch 1.6 (and with
# `_use_new_zipfile_serialization=False`) a pickle stream, which opens with the PROTO opcode.
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"


def _check_torch_file(path: Path) -> None:
    """Refuse a file that is neither a torch zip archive nor a pickle (a text file, an image)
    before torch reads it: torch would report its first bytes as pickle opcodes."""
    with open(path, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if not head or head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PROTO):
        return  # an empty file is reported by torch.load as corrupt
    with open(path, "rb") as handle:
        start = handle.read(24)
    raise CheckpointError(
        f"{path} is not a checkpoint: a torch file is a zip archive or a pickle, this file "
        f"starts with {start!r}. Give a model file written by cfgen (explainer.pt, "
        "classifier.pt) or a training checkpoint (.ckpt)"
    )


def safe_torch_load(path: PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a torch file without executing code (`weights_only=True`).

    Raises `CheckpointError` naming the file when it is missing, corrupt, or holds objects
    that would need code to be run to load.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}; check the path")
    _check_torch_file(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects that would run code when unpickled "
            f"({_unpickler_reason(error)}). cfgen only loads plain tensors and containers; "
            "re-export the model with `cfgen.io.save_bundle`"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupt or not a torch file ({error})"
        ) from error


def _pickled_export_parts(path: Path) -> list[str]:
    """Entries of a torch.export archive that torch would unpickle with weights_only=False."""
    import zipfile

    found = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not name.endswith("_config.json") or "/data/" not in name:
                continue
            entries = json.loads(archive.read(name)).get("config", {})
            for key, meta in entries.items():
                opaque = str(meta.get("path_name", "")).startswith("opaque_obj_")
                if meta.get("use_pickle") or opaque:
                    found.append(f"{name}: {key}")
    return found


def safe_export_load(path: PathLike) -> torch.nn.Module:
    """The module of a `torch.export` archive (`.pt2`), loaded without unpickling code.

    torch reads weights and constants marked `use_pickle` (and opaque objects) with plain pickle,
    and falls back to `weights_only=False` for other artifacts: such entries are refused, and
    the load runs with `TORCH_FORCE_WEIGHTS_ONLY_LOAD=1` so that no fallback can unpickle code.
    """
    path = Path(path)
    pickled = _pickled_export_parts(path)
    if pickled:
        raise CheckpointError(
            f"refusing to load {path}: it stores {', '.join(pickled[:3])} as pickles, which "
            "would run code when unpickled. Re-export it with plain tensors, or share the "
            "classifier as a cfgen bundle (save_bundle) or TorchScript"
        )
    previous = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        return torch.export.load(str(path)).module()
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects that would run code when unpickled "
            f"({_unpickler_reason(error)})"
        ) from error
    finally:
        if previous is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = previous


def file_sha256(path: PathLike) -> str:
    """Content hash of a file, used to tie an explainer to the classifier it explains."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_bundle(path: PathLike, kind: str, config: dict, state_dict: dict, **meta: Any) -> Path:
    """Save a model as a safe bundle: `kind`, a JSON-able `config` to rebuild it, its weights.

    Bundles load with `weights_only=True`, so they can be shared without trusting the sender.
    """
    bundle = {"format": "cfgen-bundle", "version": 1, "kind": kind, "config": config}
    bundle["state_dict"] = {key: value.detach().cpu() for key, value in state_dict.items()}
    bundle["meta"] = meta
    return atomic_torch_save(bundle, path)


def load_bundle(path: PathLike, kind: str) -> dict:
    """Load a bundle saved by `save_bundle` and check that it holds a model of `kind`."""
    bundle = safe_torch_load(path)
    if not isinstance(bundle, dict) or bundle.get("format") != "cfgen-bundle":
        raise CheckpointError(
            f"{path} is not a cfgen model file; expected one written by cfgen (e.g. the "
            f"'{kind}.pt' in a run directory)"
        )
    if bundle.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {bundle.get('kind')!r} model, expected {kind!r}")
    return bundle


def prepare_output_dir(
    path: PathLike, overwrite: bool = False, ignore: Collection[str] = ()
) -> Path:
    """Create `path` for outputs; refuse a non-empty folder (entries named in `ignore` aside)
    unless `overwrite` is set."""
    path = make_output_dir(path)
    if not overwrite and any(entry.name not in ignore for entry in path.iterdir()):
        raise CfgenError(
            f"output folder {path} is not empty; choose another folder or pass --overwrite "
            "(existing files are then replaced one by one, never deleted)"
        )
    return path


def make_output_dir(path: PathLike) -> Path:
    """Create the output folder `path` (and its parents), with a clear error where a file is in
    the way or the file system refuses (no permission, read-only)."""
    path = Path(path)
    blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocking == path:
        raise CfgenError(f"output path {path} exists and is not a folder; choose another --out")
    if blocking is not None:
        raise CfgenError(
            f"cannot create output folder {path}: {blocking} is a file, not a folder; choose "
            "another --out"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CfgenError(
            f"cannot create output folder {path} ({error.strerror}); choose another --out"
        ) from error
    return path


def safe_child(root: PathLike, name: str) -> Path:
    """`root / name`, refusing names that are absolute or climb out of `root` (`../`)."""
    root = Path(root).resolve()
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise CfgenError(
            f"unsafe file name {name!r}: names must be relative and stay inside {root}"
        )
    child = (root / name).resolve()
    if not child.is_relative_to(root):
        raise CfgenError(f"unsafe file name {name!r}: it points outside {root}")
    return child
