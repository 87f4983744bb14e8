"""Strip files: one PNG per query, written by a small thread pool while the model runs on.

    with StripWriter(out, gif=False) as writer:
        for batch in batches:
            writer.submit(batch, explainer.exaggerate(batch.images))   # returns at once
    records = writer.records()                                         # for strips.json

`strips/<id>.png` is the query, then its frame at each bin, at the images' own resolution (one
pixel per pixel), each with the classifier's posterior printed under it; a grey line separates
the query from its strip. One-channel images give grey PNGs. `--gif` adds `gifs/<id>.gif`, the
frames enlarged 4x with the step and posterior on each. Strips are laid out with torchvision's
`make_grid` for a whole batch at once, labels are drawn once per distinct text with PIL and
pasted; encoding and writing happen in worker threads (PIL and the file system release the
GIL). At most `pending` batches wait for a worker: `submit` blocks beyond that, so memory stays
bounded however many queries there are.
"""

import io
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from cfgen.data.inputs import QueryBatch
from cfgen.explain.strip import Strip
from cfgen.io import atomic_write_bytes, safe_child

PADDING = 2  # pixels between frames (make_grid's padding)
GIF_SCALE = 4
SEPARATOR = 128  # grey of the line between the query and its strip
LABEL_TEMPLATE = "0.00"  # the widest label of a posterior


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    """PIL's built-in bitmap font: crisp at small sizes, the same on every machine."""
    return ImageFont.load_default_imagefont()


@lru_cache(maxsize=4096)
def label(text: str, width: int) -> torch.Tensor:
    """Black `text` centred on a white band of `width` pixels: (height, width) uint8."""
    left, _, right, _ = _font().getbbox(text)
    band = Image.new("L", (width, _font().getbbox(LABEL_TEMPLATE)[3] + 1), 255)
    ImageDraw.Draw(band).text(((width - right - left) // 2, 0), text, fill=0, font=_font())
    return torch.from_numpy(np.array(band))


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 0..255 (rounded: 8-bit inputs come back exactly)."""
    return ((images.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def _picture(pixels: torch.Tensor) -> Image.Image:
    """(C, H, W) uint8 -> a PIL image: grey ("L") for one channel, else RGB."""
    array = pixels.permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array[..., 0] if array.shape[2] == 1 else array))


def strip_pictures(queries: torch.Tensor, strip: Strip) -> list[Image.Image]:
    """One picture per query: the query (N, C, H, W), then its S frames, posterior under each."""
    frames = to_uint8(torch.cat([queries.unsqueeze(0).cpu(), strip.images.cpu()]))
    steps, n, channels, _, width = frames.shape  # steps: S + 1 with the query
    cell = max(width, _font().getbbox(LABEL_TEMPLATE)[2] + 4)  # keeps labels apart
    left = (cell - width) // 2
    frames = torch.nn.functional.pad(frames, (left, cell - width - left), value=255)
    posteriors = torch.cat([strip.query_posteriors.unsqueeze(0), strip.posteriors]).cpu()
    labels = torch.stack(
        [torch.stack([label(f"{p:.2f}", cell) for p in row]) for row in posteriors.tolist()]
    )  # (S + 1, N, label height, cell)
    cells = torch.cat([frames, labels.unsqueeze(2).expand(-1, -1, channels, -1, -1)], dim=3)
    grid = make_grid(
        cells.transpose(0, 1).flatten(0, 1), nrow=steps, padding=PADDING, pad_value=255
    )
    grid = grid[:channels]  # make_grid turns one channel into three
    grid[:, :, PADDING + cell + PADDING // 2] = SEPARATOR
    row = cells.shape[3] + PADDING  # one query per row of the grid
    return [_picture(grid[:, query * row : (query + 1) * row + PADDING]) for query in range(n)]


def gif_bytes(frames: torch.Tensor, posteriors: torch.Tensor) -> bytes:
    """Animated GIF of one strip (S, C, H, W) in [-1, 1], step and posterior on each frame.

    The step number also keeps identical frames apart (GIF writers merge repeated frames).
    """
    pictures = []
    for step, (frame, posterior) in enumerate(
        zip(to_uint8(frames), posteriors.tolist(), strict=True)
    ):
        picture = _picture(frame)
        picture = picture.resize(
            (picture.width * GIF_SCALE, picture.height * GIF_SCALE), Image.Resampling.NEAREST
        )
        canvas = Image.new(picture.mode, (picture.width, picture.height + 16), "white")
        canvas.paste(picture)
        ImageDraw.Draw(canvas).text(
            (4, picture.height + 2), f"{step}: f={posterior:.2f}", fill="black", font=_font()
        )
        pictures.append(canvas)
    buffer = io.BytesIO()
    pictures[0].save(
        buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=300, loop=0
    )
    return buffer.getvalue()


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def write_strips(out: Path, batch: QueryBatch, strip: Strip, gif: bool = False) -> list[dict]:
    """Write each query's strip PNG (and GIF); return their `strips.json` records."""
    pictures = strip_pictures(batch.images, strip)
    records = []
    for column, (query_id, source) in enumerate(zip(batch.ids, batch.sources, strict=True)):
        # No fsync per strip (it would cost more than the model); strips.json, written last, is.
        path = safe_child(out, f"strips/{query_id}.png")
        atomic_write_bytes(path, _png(pictures[column]), fsync=False)
        if gif:
            frames = gif_bytes(strip.images[:, column], strip.posteriors[:, column])
            atomic_write_bytes(safe_child(out, f"gifs/{query_id}.gif"), frames, fsync=False)
        records.append(
            {
                "id": query_id,
                "source": source,
                "query_posterior": float(strip.query_posteriors[column]),
                "target_bins": strip.target_bins.tolist(),
                "posteriors": strip.posteriors[:, column].tolist(),
            }
        )
    return records


def strip_to_cpu(strip: Strip) -> Strip:
    return Strip(*(getattr(strip, name).cpu() for name in Strip.__dataclass_fields__))


class StripWriter:
    """Writes the strips of submitted batches from `workers` threads; `submit` blocks while
    `pending` batches wait for a worker and raises the error of a failed one (a full disk).
    `on_written(records)` is called from the worker once a batch's files are all written."""

    def __init__(
        self,
        out: Path,
        gif: bool = False,
        workers: int = 2,
        pending: int = 4,
        on_written: Callable[[list[dict]], None] | None = None,
    ) -> None:
        self.out, self.gif, self.on_written = out, gif, on_written
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="cfgen-writer")
        self._slots = threading.BoundedSemaphore(pending)
        self._futures: list[Future] = []
        self._unchecked: deque[Future] = deque()

    def submit(self, batch: QueryBatch, strip: Strip) -> Future:
        """Queue `batch` and its `strip` for writing; the future holds their records."""
        batch = QueryBatch(batch.ids, batch.sources, batch.images.cpu())
        strip = strip_to_cpu(strip)
        self._slots.acquire()
        try:
            self._raise_failure()
            future = self._pool.submit(self._write, batch, strip)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)
        self._unchecked.append(future)
        return future

    def _write(self, batch: QueryBatch, strip: Strip) -> list[dict]:
        records = write_strips(self.out, batch, strip, self.gif)
        if self.on_written is not None:
            self.on_written(records)
        return records

    def _raise_failure(self) -> None:
        while self._unchecked and self._unchecked[0].done():
            error = self._unchecked.popleft().exception()
            if error is not None:
                raise error

    def records(self) -> list[dict]:
        """Every record, in submission order, once all are written (raises a worker's error)."""
        return [record for future in self._futures for record in future.result()]

    def close(self, cancel: bool = False) -> None:
        """Wait for the workers (dropping batches not started yet when `cancel`)."""
        self._pool.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> "StripWriter":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(cancel=error is not None)
