import pickle

import pytest
import torch

from cfgen.errors import CfgenError, CheckpointError
from cfgen.io import (
    atomic_write_json,
    load_bundle,
    prepare_output_dir,
    safe_child,
    safe_torch_load,
    save_bundle,
)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_bundle_round_trip(tmp_path):
    weights = {"layer.weight": torch.randn(3, 2)}
    save_bundle(tmp_path / "m.pt", "classifier", {"arch": "small_cnn"}, weights, note="x")
    bundle = load_bundle(tmp_path / "m.pt", "classifier")
    torch.testing.assert_close(bundle["state_dict"]["layer.weight"], weights["layer.weight"])
    assert bundle["config"] == {"arch": "small_cnn"}
    assert bundle["meta"] == {"note": "x"}


def test_bundle_of_other_kind_is_refused(tmp_path):
    save_bundle(tmp_path / "m.pt", "oracle", {}, {})
    with pytest.raises(CheckpointError, match="holds a 'oracle' model, expected 'classifier'"):
        load_bundle(tmp_path / "m.pt", "classifier")


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": _RunsCode()}))
    with pytest.raises(CheckpointError, match="would run code"):
        safe_torch_load(path)


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        safe_torch_load(tmp_path / "absent.pt")
    save_bundle(tmp_path / "whole.pt", "classifier", {}, {"w": torch.ones(3)})
    (tmp_path / "bad.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        safe_torch_load(tmp_path / "bad.pt")


@pytest.mark.parametrize("content", [b"hello\n", b"\x00\x01garbage", b"\x89PNG\r\n\x1a\n"])
def test_a_file_that_is_neither_a_zip_nor_a_pickle_is_not_a_checkpoint(tmp_path, content):
    (tmp_path / "notes.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"notes.pt is not a checkpoint: .* starts with b"):
        safe_torch_load(tmp_path / "notes.pt")


def test_a_legacy_pickle_torch_file_still_loads(tmp_path):
    weights = {"w": torch.arange(3.0)}
    torch.save(weights, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    torch.testing.assert_close(safe_torch_load(tmp_path / "old.pt")["w"], weights["w"])


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    atomic_write_json(tmp_path / "r.json", {"a": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert (tmp_path / "r.json").read_text() == '{\n  "a": 2\n}\n'


def test_output_dir_is_not_overwritten_silently(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("work")
    with pytest.raises(CfgenError, match="not empty"):
        prepare_output_dir(tmp_path / "out")
    prepare_output_dir(tmp_path / "out", overwrite=True)
    assert (tmp_path / "out" / "keep.txt").read_text() == "work"


def test_an_output_folder_below_a_file_is_refused_with_the_file_named(tmp_path):
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(CfgenError, match=r"notes.txt is a file, not a folder; choose another"):
        prepare_output_dir(tmp_path / "notes.txt" / "out")
    with pytest.raises(CfgenError, match="exists and is not a folder"):
        prepare_output_dir(tmp_path / "notes.txt")


@pytest.mark.parametrize("name", ["../escape.png", "/etc/passwd", "a/../../b.png", ""])
def test_unsafe_names_are_refused(tmp_path, name):
    with pytest.raises(CfgenError, match="unsafe file name"):
        safe_child(tmp_path, name)


def test_safe_child_accepts_nested_names(tmp_path):
    assert safe_child(tmp_path, "a/b.png") == (tmp_path / "a" / "b.png").resolve()
