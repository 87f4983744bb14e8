import json
import os

import pytest

from cfgen import folder_lock
from cfgen.errors import CfgenError
from cfgen.folder_lock import LOCK_NAME, FolderLock, claimed_output_dir


def test_a_locked_folder_is_refused_naming_its_owner_and_free_again_once_released(tmp_path):
    with FolderLock(tmp_path, "cfgen generate") as lock:
        owner = json.loads((tmp_path / LOCK_NAME).read_text())
        assert (owner["command"], owner["pid"]) == ("cfgen generate", os.getpid())
        assert lock.taken_over is None
        with pytest.raises(
            CfgenError,
            match=rf"being written by another run \(cfgen generate, pid {os.getpid()} on ",
        ):
            FolderLock(tmp_path, "cfgen data synth").acquire()
    assert not (tmp_path / LOCK_NAME).exists()
    with FolderLock(tmp_path, "cfgen data synth") as again:
        assert again.taken_over is None


def test_a_lock_file_nobody_holds_is_taken_over_with_a_note(tmp_path):
    dead = {"command": "cfgen generate", "pid": 4242, "host": "node7", "started": 0}
    (tmp_path / LOCK_NAME).write_text(json.dumps(dead))
    with FolderLock(tmp_path, "cfgen generate") as lock:
        assert lock.taken_over == dead
        assert lock.note().startswith(f"note: {tmp_path} was locked by a run that is no longer ")
        assert "(cfgen generate, pid 4242 on node7, since " in lock.note()
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_lock_taken_on_a_file_its_owner_removed_is_taken_again(tmp_path, monkeypatch):
    # The releasing owner removes the file, then unlocks it: a writer that opened it before the
    # removal locks a file no one else sees, and must lock the one now in place instead.
    opened = []
    open_locked = folder_lock._open_locked

    def open_then_lose_the_race(path):
        fd = open_locked(path)
        if not opened:
            os.unlink(path)  # as the previous owner's release would
        opened.append(fd)
        return fd

    monkeypatch.setattr(folder_lock, "_open_locked", open_then_lose_the_race)
    with FolderLock(tmp_path, "cfgen generate") as lock:
        assert len(opened) == 2 and lock._is_current(opened[1])
        assert (tmp_path / LOCK_NAME).is_file()


def test_without_flock_the_lock_file_is_created_exclusively(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_lock, "fcntl", None)  # as on Windows
    with (
        FolderLock(tmp_path, "cfgen generate"),
        pytest.raises(CfgenError, match=rf"if that run is gone, delete {tmp_path / LOCK_NAME}"),
    ):
        FolderLock(tmp_path, "cfgen generate").acquire()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_claimed_output_folder_must_be_empty_but_for_its_lock(tmp_path):
    out = tmp_path / "out"
    with claimed_output_dir(out, "cfgen data synth") as folder:
        assert folder == out and [p.name for p in out.iterdir()] == [LOCK_NAME]
        (out / "faces.csv").write_text("written")
    refused = pytest.raises(CfgenError, match="is not empty; choose another folder or pass")
    with refused, claimed_output_dir(out, "cfgen data synth"):
        pass
    with claimed_output_dir(out, "cfgen data synth", overwrite=True):
        assert (out / "faces.csv").read_text() == "written"
    assert sorted(p.name for p in out.iterdir()) == ["faces.csv"]
