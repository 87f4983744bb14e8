"""Query inputs of `cfgen generate`: an image folder, an attribute folder or the synthetic world.

    queries = open_input("photos/", n=0, image_size=32)        # every image at the top level
    queries = open_input("synthetic:test", n=10_000, image_size=32)
    for batch in prefetched(queries.batches(64)):              # read in a background thread
        batch.ids, batch.sources, batch.images                 # images (B, C, H, W) in [-1, 1]

Only the ids and sources of all queries are held; images are read (decoded, or rendered for
the synthetic world) one batch at a time, so memory stays bounded for any number of queries.
A query's id is its file name without suffix (`<split>_<index>` for the synthetic world): the
name of its strip file, so two inputs with one id are refused before anything is read.
"""

import queue
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from cfgen.data.columns import read_csv, require_columns
from cfgen.data.folders import resolve_files
from cfgen.data.images import load_image
from cfgen.data.render import render_faces
from cfgen.data.synthetic import draw_faces
from cfgen.errors import ConfigError, DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}

Shard = tuple[int, int]  # (rank, world size): a process reads batches rank, rank + world, ...


class QueryBatch(NamedTuple):
    """Consecutive queries: their ids, sources (file or `synthetic:SPLIT[i]`), images."""

    ids: list[str]
    sources: list[str]
    images: Tensor  # (B, C, H, W) in [-1, 1]


def check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size!r}")


@dataclass(frozen=True)
class QueryInput:
    """Every query's id and source, and `load(start, stop)`: the images of queries start..stop-1.

    `load` returns (stop - start, C, H, W) in [-1, 1] with the channels asked of `open_input`.
    """

    ids: list[str]
    sources: list[str]
    load: Callable[[int, int], Tensor]

    def __post_init__(self) -> None:
        first: dict[str, str] = {}
        for query_id, source in zip(self.ids, self.sources, strict=True):
            if query_id in first:
                raise DataError(
                    f"{first[query_id]} and {source} would both be written as "
                    f"strips/{query_id}.png (a query's id is its file name without suffix); "
                    "rename one of them"
                )
            first[query_id] = source

    def __len__(self) -> int:
        return len(self.ids)

    def batches(self, batch_size: int, shard: Shard = (0, 1)) -> Iterator[QueryBatch]:
        """Batches of `batch_size` queries in input order; with `shard=(rank, world)` only
        batches rank, rank + world, ... (the others are not read)."""
        check_batch_size(batch_size)  # now, not at the first batch
        return self._batches(batch_size, *shard)

    def _batches(self, batch_size: int, rank: int, world: int) -> Iterator[QueryBatch]:
        for start in range(rank * batch_size, len(self), world * batch_size):
            stop = min(start + batch_size, len(self))
            yield QueryBatch(self.ids[start:stop], self.sources[start:stop], self.load(start, stop))

    def without(self, done: Collection[str]) -> "QueryInput":
        """The queries whose id is not in `done`, in the same order (what is left to do)."""
        kept = [position for position, query_id in enumerate(self.ids) if query_id not in done]
        load = self.load

        def load_kept(start: int, stop: int) -> Tensor:
            chosen = kept[start:stop]
            # Consecutive positions are loaded together (a rendered or read batch, not one each).
            runs = [[chosen[0]]] if chosen else []
            for position in chosen[1:]:
                if position == runs[-1][-1] + 1:
                    runs[-1].append(position)
                else:
                    runs.append([position])
            return torch.cat([load(run[0], run[-1] + 1) for run in runs])

        ids, sources = [self.ids[p] for p in kept], [self.sources[p] for p in kept]
        return QueryInput(ids, sources, load_kept)


def _synthetic(split: str, n: int, image_size: int, channels: int) -> QueryInput:
    if n < 1:
        raise ConfigError(
            f"n must be at least 1: the number of queries drawn from synthetic:{split} (--n on "
            f"the command line), got {n}"
        )
    factors, noise_seeds = draw_faces(n, split=split)  # what SyntheticFaces(n, split=) renders

    def load(start: int, stop: int) -> Tensor:
        images, _ = render_faces(factors[start:stop], image_size, noise_seeds[start:stop])
        return images.mean(dim=1, keepdim=True) if channels == 1 else images  # faces are RGB

    ids = [f"{split}_{index:06d}" for index in range(n)]
    return QueryInput(ids, [f"synthetic:{split}[{index}]" for index in range(n)], load)


def _files(files: list[Path], image_size: int, channels: int) -> QueryInput:
    def load(start: int, stop: int) -> Tensor:
        return torch.stack(
            [load_image(files[i], image_size, channels=channels) for i in range(start, stop)]
        )

    return QueryInput([f.stem for f in files], [str(f) for f in files], load)


def _image_files(root: Path) -> list[Path]:
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(
            f"no images in {root} (looked for {sorted(IMAGE_SUFFIXES)} at its top level)"
        )
    return files


def _listed_files(csv: Path) -> list[Path]:
    """The files of an attribute folder's CSV, in row order (labels are not needed here)."""
    header, rows = read_csv(csv)
    require_columns(header, ["file"], csv)
    return resolve_files(csv.parent, [row["file"] for row in rows], str(csv))


def open_input(spec: str, n: int, image_size: int, channels: int = 3) -> QueryInput:
    """The queries of any `--input` form, images resized to `image_size` with `channels`
    (files are read as the explainer's data loaders read them: grey files as three equal
    channels for an RGB explainer, colour files as their luminance for a grey one).

    `spec`: an image folder (every image at its top level, in name order), an attribute folder
    (a folder with `attributes.csv`: its rows, in order) or `synthetic:SPLIT` (`n` faces).
    """
    if spec.startswith("synthetic:"):
        return _synthetic(spec.partition(":")[2] or "test", n, image_size, channels)
    root = Path(spec)
    if not root.is_dir():
        raise DataError(
            f"--input {spec} is neither a folder nor 'synthetic:SPLIT' (e.g. synthetic:test)"
        )
    if (root / "attributes.csv").is_file():
        return _files(_listed_files(root / "attributes.csv"), image_size, channels)
    return _files(_image_files(root), image_size, channels)


def prefetched(items: Iterable, depth: int = 2) -> Iterator:
    """`items`, produced by a background thread up to `depth` ahead (decoding overlaps the model).

    An error raised while producing is raised here, at the item it stopped at. Closing the
    iterator early (or an error in the consumer) stops the thread.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            put((done, error))
            return
        put((done, None))

    thread = threading.Thread(target=produce, name="cfgen-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()
