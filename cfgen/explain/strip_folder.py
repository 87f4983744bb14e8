"""The output folder of `cfgen generate`: one run writes it at a time, a run stopped half-way
is finished by a rerun, and it never mixes the strips of two runs.

    with StripFolder.claim(out, run, overwrite=False, resume=False) as folder:
        todo = queries.without(folder.done)        # every query, unless resuming
        StripWriter(out, on_written=folder.record)  # journals each strip once written whole
        records = folder.in_order(new_records, queries.ids)
        ... strips.json ...
        folder.complete()                           # the journal goes

While a run writes, the folder holds, besides its strips:

    .cfgen.lock                   the writer's lock (`cfgen.folder_lock`): a second run that
                                  claims the folder is refused with the first one's pid and host
    .cfgen-generate/run.json      what the run makes (`run`: explainer, classifier, queries and
                                  options, as the caller describes them)
    .cfgen-generate/done-*.jsonl  the `strips.json` record of each strip whose files are written

`strips.json` is written last, then `.cfgen-generate/` is removed. A folder with a journal and no
`strips.json` holds an unfinished run. `resume=True` (`--resume`) goes on with it if it makes the
same thing (`run` equal): only the strips its journal does not list are made (a strip written
but not yet listed is made again; each file is written atomically, so none is half-written).
`overwrite=True` first deletes what an earlier run wrote (strips/, gifs/, overview.png,
strips.json, the journal); other files in the folder are kept.
"""

import contextlib
import json
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from cfgen.errors import CfgenError, ConfigError
from cfgen.folder_lock import LOCK_NAME, FolderLock
from cfgen.io import PathLike, atomic_write_json, make_output_dir

JOURNAL = ".cfgen-generate"
RUN_FILE = "run.json"
OUTPUT_FOLDERS = ("strips", "gifs")
SUMMARY_FILES = ("overview.png", "strips.json")


def _journal_records(journal: Path) -> dict[str, dict]:
    """Every record of the journal by query id; a line cut by a kill is left out."""
    records = {}
    for path in sorted(journal.glob("done-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            records[record["id"]] = record
    return records


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 20 else text[:16] + "…"


def _clear(out: Path) -> None:
    """Delete what a run of `cfgen generate` writes into `out` (nothing else)."""
    for name in (*OUTPUT_FOLDERS, JOURNAL):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in SUMMARY_FILES:
        (out / name).unlink(missing_ok=True)
        for temporary in out.glob(f".{name}.*.tmp"):  # left by a kill during its write
            temporary.unlink(missing_ok=True)


class StripFolder:
    """A claimed output folder; `done`: the records of the strips an earlier run wrote, by id."""

    def __init__(self, path: Path, done: dict[str, dict]) -> None:
        self.path = path
        self.done = done
        self._journal: TextIO | None = None
        self._journal_lock = threading.Lock()

    @classmethod
    @contextlib.contextmanager
    def claim(
        cls, out: PathLike, run: dict, overwrite: bool = False, resume: bool = False
    ) -> Iterator["StripFolder"]:
        """Lock `out` (created if needed) for this run, check what it holds, yield the folder.

        `run` (JSON-able) says what the run makes; a run resumed must make the same.
        """
        if overwrite and resume:
            raise ConfigError(
                "--overwrite starts the folder again and --resume finishes it: pass one of them"
            )
        path = make_output_dir(out)
        with FolderLock(path, "cfgen generate") as lock:
            if lock.taken_over:
                print(lock.note(), file=sys.stderr)
            folder = cls(path, _prepare(path, run, overwrite, resume))
            try:
                yield folder
            finally:
                folder._close_journal()

    def record(self, records: Sequence[dict]) -> None:
        """Journal the records of strips whose files are written (from any writer thread)."""
        lines = "".join(json.dumps(record) + "\n" for record in records)
        with self._journal_lock:
            if self._journal is None:
                name = f"done-{uuid.uuid4().hex[:12]}.jsonl"
                self._journal = open(self.path / JOURNAL / name, "a", encoding="utf-8")  # noqa: SIM115
            self._journal.write(lines)
            self._journal.flush()

    def in_order(self, records: Sequence[dict], ids: Sequence[str]) -> list[dict]:
        """The records of this run and of the earlier one, in the order of the queries `ids`."""
        by_id = {**self.done, **{record["id"]: record for record in records}}
        return [by_id[query_id] for query_id in ids if query_id in by_id]

    def complete(self) -> None:
        """`strips.json` is written: the journal is not needed any more."""
        self._close_journal()
        shutil.rmtree(self.path / JOURNAL, ignore_errors=True)

    def _close_journal(self) -> None:
        with self._journal_lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None


def journaled(out: PathLike, resume: bool) -> StripFolder:
    """The folder another process claimed, for a process that writes strips into it too: the
    records of its earlier run when resuming (no lock, nothing checked or cleared)."""
    path = Path(out)
    unfinished = resume and unfinished_count(path) is not None
    return StripFolder(path, _resumed(path, None) if unfinished else {})


def unfinished_count(out: PathLike) -> tuple[int, int] | None:
    """(strips written, strips to write) of the unfinished run in `out`, or None if none."""
    journal = Path(out) / JOURNAL
    if (Path(out) / "strips.json").is_file() or not (journal / RUN_FILE).is_file():
        return None
    total = json.loads((journal / RUN_FILE).read_text()).get("n_queries", 0)
    return len(_journal_records(journal)), total


def _prepare(out: Path, run: dict, overwrite: bool, resume: bool) -> dict[str, dict]:
    """Make `out` ready for `run`; return the records of strips already written for it."""
    if overwrite:
        _clear(out)
        return _start(out, run)
    unfinished = unfinished_count(out)
    if unfinished is not None:
        if not resume:
            written, total = unfinished
            raise CfgenError(
                f"output folder {out} holds an unfinished run of cfgen generate ({written} of "
                f"{total} strips written); finish it with --resume, or pass --overwrite to "
                "start again"
            )
        return _resumed(out, run)
    if resume and (out / "strips.json").is_file():
        raise CfgenError(
            f"output folder {out} holds a finished run (strips.json): nothing to resume; choose "
            "another --out, or pass --overwrite to make it again"
        )
    if any(entry.name != LOCK_NAME for entry in out.iterdir()):
        raise CfgenError(
            f"output folder {out} is not empty; choose another folder or pass --overwrite (the "
            "strips, GIFs, overview and strips.json of an earlier run there are then deleted; "
            "other files are kept)"
        )
    return _start(out, run)


def _start(out: Path, run: dict) -> dict[str, dict]:
    (out / JOURNAL).mkdir(exist_ok=True)
    atomic_write_json(out / JOURNAL / RUN_FILE, run)
    return {}


def _resumed(out: Path, run: dict | None) -> dict[str, dict]:
    """The journal's records of strips still on disk, if the unfinished run made `run` (None:
    whatever it made)."""
    earlier = json.loads((out / JOURNAL / RUN_FILE).read_text())
    now = earlier if run is None else run
    changed = sorted(key for key in {*earlier, *now} if earlier.get(key) != now.get(key))
    if changed:
        differences = "; ".join(
            f"{key} {_short(earlier.get(key))} there, {_short(now.get(key))} now" for key in changed
        )
        raise CfgenError(
            f"cannot resume {out}: its unfinished run makes other strips ({differences}); "
            "resume with the command line that started it, or pass --overwrite to start again"
        )
    records = _journal_records(out / JOURNAL)
    gifs = bool(earlier.get("gif"))
    return {
        query_id: record
        for query_id, record in records.items()
        if (out / "strips" / f"{query_id}.png").is_file()
        and (not gifs or (out / "gifs" / f"{query_id}.gif").is_file())
    }
