"""One writer per output folder: a lock file held with the operating system's file lock.

    with FolderLock(out, "cfgen generate") as lock:   # CfgenError if another run holds it
        if lock.taken_over:                            # a lock file left by a run that died
            print(lock.note())
        ...                                            # write into `out`

The lock file, `.cfgen.lock` in the folder, records the owner (pid, host, command, start time)
for the message another writer gets. The lock itself is `flock` on that file, which the
operating system drops when its process ends, however it ends (SIGKILL, a crash): a lock file
whose lock nobody holds was left by a run that died, and is taken over with a note naming that
run. Unlike a pid check, this also holds for a pid since reused by another process, and for an
owner on another host of a file system that supports `flock` (NFS does). The file is removed
when the lock is released. Where there is no `flock` (Windows) the lock file is created
exclusively instead, and one left by a dead run must be deleted by hand (the message says so).

Checking that a folder is empty happens once the lock is held (`claimed_output_dir`), so two
runs started at the same moment cannot both find the folder empty and write into it: the
second one is refused.

    with claimed_output_dir("out", "cfgen data synth", overwrite=False) as out:
        ...                                            # `out` is empty (but for the lock)
"""

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cfgen.errors import CfgenError
from cfgen.io import PathLike, make_output_dir, prepare_output_dir

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = ".cfgen.lock"


def _open_locked(path: Path) -> int | None:
    """The lock file, open and exclusively locked without waiting; None if another holds it."""
    if fcntl is None:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _owner_of(path: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read_owner(fd)
    finally:
        os.close(fd)


def _read_owner(fd: int) -> dict[str, Any] | None:
    """The owner's record in the lock file, or None when it is empty or being written."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", errors="replace")
    try:
        owner = json.loads(text)
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def describe(owner: dict[str, Any] | None) -> str:
    """`cfgen generate, pid 123 on host, since 2025-01-01 12:00:00`, from the owner's record."""
    if owner is None:
        return "a run that is just starting"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    return f"{owner.get('command')}, pid {owner.get('pid')} on {owner.get('host')}, since {since}"


class FolderLock:
    """The exclusive right to write into `folder` (which must exist) for this process.

    `command` names the writer in the messages others get. `taken_over` is the record of the
    dead run whose lock file was found, else None.
    """

    def __init__(self, folder: Path, command: str) -> None:
        self.folder, self.command = Path(folder), command
        self.path = self.folder / LOCK_NAME
        self.taken_over: dict[str, Any] | None = None
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        """Lock the folder; a `CfgenError` naming the owner if another process holds it."""
        while True:
            fd = _open_locked(self.path)
            if fd is None:
                stale = "" if fcntl else f" (if that run is gone, delete {self.path})"
                raise CfgenError(
                    f"output folder {self.folder} is being written by another run "
                    f"({describe(_owner_of(self.path))}); wait for it to finish, or choose "
                    f"another --out{stale}"
                )
            # A releasing owner removes the file before unlocking it: a lock taken on the
            # removed file (another writer may have made a new one) protects nothing.
            if self._is_current(fd):
                break
            os.close(fd)
        self.taken_over = _read_owner(fd)
        record = {
            "command": self.command,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode("utf-8"))
        self._fd = fd
        return self

    def _is_current(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def note(self) -> str:
        """What the user is told when a dead run's lock was taken over."""
        return (
            f"note: {self.folder} was locked by a run that is no longer running "
            f"({describe(self.taken_over)}); this run takes it over"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        if fcntl is None:  # Windows deletes no open file; the file itself is the lock
            os.close(self._fd)
            self.path.unlink(missing_ok=True)
        else:
            self.path.unlink(missing_ok=True)  # while still locked: see `acquire`
            os.close(self._fd)  # closing the file drops its lock
        self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@contextlib.contextmanager
def claimed_output_dir(out: PathLike, command: str, overwrite: bool = False) -> Iterator[Path]:
    """The output folder `out`, created, locked for this run and empty unless `overwrite`
    (`cfgen.io.prepare_output_dir`); the lock is released at the end of the block."""
    path = make_output_dir(out)
    with FolderLock(path, command) as lock:
        if lock.taken_over:
            print(lock.note(), file=sys.stderr)
        yield prepare_output_dir(path, overwrite, ignore={LOCK_NAME})
