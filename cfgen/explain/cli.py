"""`cfgen generate`: exaggeration strips for a folder of images or a built-in data set.

    cfgen generate --checkpoint runs/explainer/synthetic_smile/explainer.pt \\
        --input synthetic:test --n 64 --out runs/strips/synthetic_smile
    cfgen generate --checkpoint explainer.pt --input photos/ --out strips/ --batch-size 64

`--input` is an image folder (every .png/.jpg/... at its top level), an attribute folder (a
folder with `attributes.csv`) or `synthetic:SPLIT` (the built-in world; `--n` images). Images
are resized to the explainer's size. For every query it writes `strips/<id>.png` (the strip with
the classifier's posterior under each frame) and `gifs/<id>.gif`, then `overview.png` (the first
queries) and `strips.json` (query id, source, query posterior, target bins, achieved posteriors).
Queries are read, explained and written one batch at a time, so memory stays bounded for any
number of inputs; only the small per-query records are kept until `strips.json` is written.
`--devices N [--num-nodes M] [--strategy ddp]` spreads the batches over processes
(`cfgen.explain.distributed`).
"""

import argparse
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from rich.progress import Progress

from cfgen.errors import DataError
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.explain.strip import Strip
from cfgen.figures import strip_figure, to_rgb
from cfgen.io import atomic_write_bytes, atomic_write_json, prepare_output_dir, safe_child

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
GIF_SCALE = 4
OVERVIEW_QUERIES = 16

Batch = tuple[list[str], list[str], torch.Tensor]  # ids, sources, images (B, C, H, W)
Shard = tuple[int, int]  # (rank, world size): a process reads batches rank, rank + world, ...


def _check_unique(ids: list[str], sources: list[str]) -> None:
    """Two inputs with one id would write the same strip file: the first would be lost."""
    first: dict[str, str] = {}
    for query_id, source in zip(ids, sources, strict=True):
        if query_id in first:
            raise DataError(
                f"{first[query_id]} and {source} would both be written as strips/{query_id}.png "
                "(a query's id is its file name without suffix); rename one of them"
            )
        first[query_id] = source


def _batches_of(
    ids: list[str], sources: list[str], load, batch_size: int, shard: Shard = (0, 1)
) -> Iterator[Batch]:
    _check_unique(ids, sources)  # here, not lazily: before any output is written
    rank, world = shard
    return (
        (
            ids[start : start + batch_size],
            sources[start : start + batch_size],
            load(start, min(start + batch_size, len(ids))),
        )
        for start in range(rank * batch_size, len(ids), world * batch_size)
    )


def _synthetic(
    split: str, n: int, size: int, batch_size: int, shard: Shard
) -> tuple[int, Iterator[Batch]]:
    from cfgen.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(n, image_size=size, split=split)
    ids = [f"{split}_{index:06d}" for index in range(n)]
    sources = [f"synthetic:{split}[{index}]" for index in range(n)]
    return n, _batches_of(ids, sources, lambda a, b: faces.images[a:b], batch_size, shard)


def _attribute_folder(
    root: Path, size: int, batch_size: int, shard: Shard
) -> tuple[int, Iterator[Batch]]:
    from cfgen.data.folders import AttributeFolder

    folder = AttributeFolder(root, image_size=size)
    files = [Path(f) for f in folder.files]
    ids, sources = [f.stem for f in files], [str(f) for f in files]

    def load(a: int, b: int) -> torch.Tensor:
        return torch.stack([folder[i]["image"] for i in range(a, b)])

    return len(ids), _batches_of(ids, sources, load, batch_size, shard)


def _image_folder(
    root: Path, size: int, batch_size: int, shard: Shard
) -> tuple[int, Iterator[Batch]]:
    from cfgen.data.folders import load_image

    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(
            f"no images in {root} (looked for {sorted(IMAGE_SUFFIXES)} at its top level)"
        )
    ids, sources = [f.stem for f in files], [str(f) for f in files]

    def load(a: int, b: int) -> torch.Tensor:
        return torch.stack([load_image(files[i], size) for i in range(a, b)])

    return len(ids), _batches_of(ids, sources, load, batch_size, shard)


def open_input(
    spec: str, n: int, size: int, batch_size: int, shard: Shard = (0, 1)
) -> tuple[int, Iterator[Batch]]:
    """Number of queries and an iterator of their batches, for any `--input` form.

    With `shard=(rank, world)` only batches rank, rank + world, ... are read (and loaded).
    """
    if spec.startswith("synthetic:"):
        return _synthetic(spec.partition(":")[2] or "test", n, size, batch_size, shard)
    root = Path(spec)
    if not root.is_dir():
        raise DataError(
            f"--input {spec} is neither a folder nor 'synthetic:SPLIT' (e.g. synthetic:test)"
        )
    if (root / "attributes.csv").is_file():
        return _attribute_folder(root, size, batch_size, shard)
    return _image_folder(root, size, batch_size, shard)


def _match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Loaders give RGB; a grey-scale explainer gets their mean."""
    return images.mean(dim=1, keepdim=True) if channels == 1 else images


def gif_bytes(frames: np.ndarray, posteriors: np.ndarray) -> bytes:
    """Animated GIF of one strip, (S, C, H, W) in [-1, 1], step and posterior on each frame.

    The step number also keeps identical frames apart (GIF writers merge repeated frames).
    """
    pictures = []
    for step, (frame, posterior) in enumerate(zip(frames, posteriors, strict=True)):
        pixels = (to_rgb(frame) * 255).round().astype(np.uint8)
        picture = Image.fromarray(pixels).resize(
            (pixels.shape[1] * GIF_SCALE, pixels.shape[0] * GIF_SCALE), Image.Resampling.NEAREST
        )
        canvas = Image.new("RGB", (picture.width, picture.height + 16), "white")
        canvas.paste(picture)
        ImageDraw.Draw(canvas).text(
            (4, picture.height + 2), f"{step}: f={posterior:.2f}", fill="black"
        )
        pictures.append(canvas)
    buffer = io.BytesIO()
    pictures[0].save(
        buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=300, loop=0
    )
    return buffer.getvalue()


def _figure(queries: torch.Tensor, strip: Strip, title: str) -> bytes:
    """PNG of queries (N, C, H, W) and their strip: one row each, posterior under each frame."""
    return strip_figure(
        strip.images.cpu().numpy(),
        strip.posteriors.cpu().numpy(),
        queries.cpu().numpy(),
        strip.query_posteriors.cpu().numpy(),
        title,
    )


def write_batch(
    out: Path, ids: list[str], sources: list[str], queries: torch.Tensor, strip: Strip
) -> list[dict]:
    """Write each query's strip PNG and GIF; return their `strips.json` records."""
    images, posteriors = strip.images.cpu().numpy(), strip.posteriors.cpu().numpy()
    records = []
    for column, (query_id, source) in enumerate(zip(ids, sources, strict=True)):
        frames, achieved = images[:, column : column + 1], posteriors[:, column : column + 1]
        one = slice(column, column + 1)
        png = _figure(queries[one], strip.select(one), query_id)
        atomic_write_bytes(safe_child(out, f"strips/{query_id}.png"), png)
        atomic_write_bytes(
            safe_child(out, f"gifs/{query_id}.gif"), gif_bytes(frames[:, 0], achieved[:, 0])
        )
        records.append(
            {
                "id": query_id,
                "source": source,
                "query_posterior": float(strip.query_posteriors[column]),
                "target_bins": strip.target_bins.tolist(),
                "posteriors": [float(p) for p in achieved[:, 0]],
            }
        )
    return records


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cfgen generate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="explainer.pt (or a training .ckpt)")
    parser.add_argument(
        "--input", required=True, help="image folder, attribute folder or synthetic:SPLIT"
    )
    parser.add_argument(
        "--out", required=True, help="output folder (must be empty unless --overwrite)"
    )
    parser.add_argument("--n", type=int, default=64, help="queries drawn from synthetic:SPLIT")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--classifier", default=None, help="classifier file (default: the recorded one)"
    )
    parser.add_argument("--allow-classifier-mismatch", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        help="run Lightning's predict loop on this many devices per node (docs/DISTRIBUTED.md)",
    )
    parser.add_argument("--num-nodes", type=int, default=1, help="nodes, with --devices")
    parser.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    return parser


def generate_main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    explainer = ProgressiveExaggeration.from_checkpoint(
        args.checkpoint,
        classifier=args.classifier,
        allow_classifier_mismatch=args.allow_classifier_mismatch,
        batch_size=args.batch_size,
    ).to(args.device)
    size, channels = explainer.generator.image_size, explainer.generator.channels
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    if args.devices is not None or args.num_nodes > 1:
        from cfgen.explain.distributed import predict_strips

        written = predict_strips(explainer, out, args)
        if written is not None:  # rank 0
            print(f"{written} strips written to {out} (overview.png, strips.json, strips/, gifs/)")
        return 0
    total, batches = open_input(args.input, args.n, size, args.batch_size)
    records: list[dict] = []
    overview: list[tuple[torch.Tensor, Strip]] = []  # the first OVERVIEW_QUERIES queries
    with Progress() as progress:
        task = progress.add_task("exaggerating", total=total)
        for ids, sources, images in batches:
            images = _match_channels(images, channels).to(args.device)
            strip = explainer.exaggerate(images)
            records += write_batch(out, ids, sources, images, strip)
            if sum(len(queries) for queries, _ in overview) < OVERVIEW_QUERIES:
                first = slice(0, OVERVIEW_QUERIES)
                overview.append((images[first].cpu(), strip.select(first)))
            progress.advance(task, len(ids))
    first = slice(0, OVERVIEW_QUERIES)
    queries = torch.cat([queries for queries, _ in overview])[first]
    shown = Strip.concat([strip for _, strip in overview]).select(first)
    atomic_write_bytes(out / "overview.png", _figure(queries, shown, "overview"))
    atomic_write_json(out / "strips.json", {"checkpoint": str(args.checkpoint), "queries": records})
    print(f"{len(records)} strips written to {out} (overview.png, strips.json, strips/, gifs/)")
    return 0
