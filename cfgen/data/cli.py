"""`cfgen data synth|digits`: write a data set to disk as an attribute folder.

    cfgen data synth --out DIR --n 1000 --size 64 [--seed 0] [--split all]
                     [--confound-factor glasses --confound-strength 0.9] [--overwrite]
    cfgen data digits --out DIR [--size 32] [--seed 0] [--overwrite]

`digits` writes scikit-learn's handwritten digits (grey PNGs, a multi-class `digit` column, an
`id` column and a split column; `cfgen.data.digits`). `synth` writes the synthetic world.

The synthetic folder reads back with `AttributeFolder` (or `AttributeDataModule(source="folder")`):

    images/000000.png ...   the faces, 8-bit RGB
    attributes.csv          file, split, one 0/1 column per attribute
    factors.csv             file, split, the generative factors in [0, 1], the noise seed
    masks.npz               masks (N, R, H, W) uint8 in 0..255, region_names, files
    world.json              the options, to rebuild the same faces in memory

`--split all` writes 80% train, 10% val and 10% test faces, each split from its own index
range, exactly the faces `SyntheticFaces(n, split=...)` holds. Every file is written atomically.
"""

import argparse
import csv
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.progress import Progress

from cfgen.data.synthetic import (
    ATTRIBUTE_NAMES,
    FACTOR_NAMES,
    REGION_NAMES,
    SPLIT_OFFSETS,
    attributes_from_factors,
    check_options,
    draw_faces,
    render_faces,
)
from cfgen.errors import ConfigError
from cfgen.folder_lock import claimed_output_dir
from cfgen.io import atomic_write_bytes, atomic_write_json, atomic_write_text

SPLIT_SHARES = {"train": 0.8, "val": 0.1, "test": 0.1}
CHUNK = 256


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cfgen data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synth", help="write synthetic faces as an attribute folder")
    synth.add_argument("--out", required=True, help="output folder (must be empty)")
    synth.add_argument("--n", type=int, required=True, help="number of faces")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels (>= 16)")
    synth.add_argument("--seed", type=int, default=0)
    splits = [*SPLIT_OFFSETS, "all"]
    synth.add_argument("--split", choices=splits, default="all", help="all: 80/10/10")
    synth.add_argument("--confound-factor", default=None, help="e.g. glasses")
    synth.add_argument("--confound-strength", type=float, default=0.0)
    synth.add_argument("--target", default="Smiling", help="attribute the confounder follows")
    synth.add_argument("--overwrite", action="store_true", help="replace files in --out")
    digits = commands.add_parser("digits", help="write scikit-learn's handwritten digits")
    digits.add_argument("--out", required=True, help="output folder (must be empty)")
    digits.add_argument("--size", type=int, default=32, help="image side in pixels (>= 8)")
    digits.add_argument("--seed", type=int, default=0, help="seed of the 80/10/10 split")
    digits.add_argument("--overwrite", action="store_true", help="replace files in --out")
    return parser


def split_sizes(n: int, split: str) -> dict[str, int]:
    """Faces per split: all of `n` for one split; for `all`, 10% val, 10% test, the rest train."""
    if split != "all":
        return {split: n}
    val, test = int(n * SPLIT_SHARES["val"]), int(n * SPLIT_SHARES["test"])
    return {"train": n - val - test, "val": val, "test": test}


def _png(image: torch.Tensor) -> bytes:
    """PNG bytes of an image (3, H, W) in [-1, 1], rounded to 8 bits."""
    pixels = ((image + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _write_faces(
    out: Path, args: argparse.Namespace, progress: Progress, writers: ThreadPoolExecutor
) -> dict[str, list]:
    """Render and write every face; returns the CSV rows and the masks of all of them."""
    table: dict[str, list] = {"attributes": [], "factors": [], "masks": [], "files": []}
    pending = []
    sizes = split_sizes(args.n, args.split)
    task = progress.add_task("writing faces", total=sum(sizes.values()))
    for split, count in sizes.items():
        factors, seeds = draw_faces(
            count, args.seed, split, args.confound_factor, args.confound_strength, args.target
        )
        labels = attributes_from_factors(factors).long()
        for start in range(0, count, CHUNK):
            stop = min(start + CHUNK, count)
            images, masks = render_faces(factors[start:stop], args.size, seeds[start:stop])
            for row in range(start, stop):
                name = f"images/{len(table['files']):06d}.png"
                pending.append(
                    writers.submit(atomic_write_bytes, out / name, _png(images[row - start]))
                )
                table["files"].append(name)
                table["attributes"].append([name, split, *labels[row].tolist()])
                values = [f"{value:.9g}" for value in factors[row].tolist()]
                table["factors"].append([name, split, *values, int(seeds[row])])
            table["masks"].append((masks * 255).ceil_().to(torch.uint8).numpy())
            for done in pending:
                done.result()  # re-raises a failed write (e.g. a full disk) here
            pending.clear()
            progress.advance(task, stop - start)
    return table


def _check(args: argparse.Namespace) -> None:
    """Fail before anything is written."""
    if args.size < 16:
        raise ConfigError(f"--size must be at least 16 pixels, got {args.size}")
    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    for split in split_sizes(args.n, args.split):
        check_options(split, args.target, args.confound_factor, args.confound_strength)


def synth(args: argparse.Namespace) -> int:
    _check(args)
    with claimed_output_dir(args.out, "cfgen data synth", args.overwrite) as out:
        return _synth(out, args)


def _synth(out: Path, args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    # Each atomic write waits for its fsync; threads let those waits overlap.
    with Progress(console=console, transient=True) as progress, ThreadPoolExecutor(16) as pool:
        table = _write_faces(out, args, progress, pool)
    attribute_header = ["file", "split", *ATTRIBUTE_NAMES]
    atomic_write_text(out / "attributes.csv", csv_text(attribute_header, table["attributes"]))
    factor_header = ["file", "split", *FACTOR_NAMES, "noise_seed"]
    atomic_write_text(out / "factors.csv", csv_text(factor_header, table["factors"]))
    masks = np.concatenate(table["masks"])
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, masks=masks, region_names=np.array(REGION_NAMES), files=np.array(table["files"])
    )
    atomic_write_bytes(out / "masks.npz", buffer.getvalue())
    options = {key: value for key, value in vars(args).items() if key not in ("out", "overwrite")}
    atomic_write_json(
        out / "world.json", {**options, "split_sizes": split_sizes(args.n, args.split)}
    )
    console.print(f"wrote {len(table['files'])} faces of {args.size} px to {out}")
    return 0


def digits(args: argparse.Namespace) -> int:
    from cfgen.data.digits import HEADER, check_size, digit_rows

    check_size(args.size)
    rows, files = digit_rows(args.size, args.seed)  # fails (no scikit-learn) before writing
    with (
        claimed_output_dir(args.out, "cfgen data digits", args.overwrite) as out,
        ThreadPoolExecutor(16) as pool,  # overlaps the fsync of each atomic write
    ):
        for done in [pool.submit(atomic_write_bytes, out / name, data) for name, data in files]:
            done.result()
        atomic_write_text(out / "attributes.csv", csv_text(HEADER, rows))
    Console(stderr=True).print(f"wrote {len(rows)} digits of {args.size} px to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cfgen data`; returns the exit status."""
    args = _parser().parse_args(argv)
    return {"synth": synth, "digits": digits}[args.command](args)
