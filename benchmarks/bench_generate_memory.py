"""Peak memory of `cfgen generate` over 1,000 vs 10,000 input images (it must not grow with N).

    .venv/bin/python benchmarks/bench_generate_memory.py [--sizes 1000 10000] [--batch-size 64]
        [--checkpoint runs/explainer/synthetic_smile/explainer.pt] [--work /tmp/bench_generate]

For each N, writes N PNG images into a folder (the streaming input: read, explained and written
one batch at a time) and runs `cfgen generate --input FOLDER` as a child process; its peak
resident set size (RSS) comes from `os.wait4`, i.e. from the kernel, for that child alone. A
64-image run gives the fixed cost (Python, torch, matplotlib, the models). Without
`--checkpoint`, a random-weight 16 px explainer and classifier are written first (the memory
profile depends on the image size and batch, not on the weights).
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def write_images(folder: Path, n: int, size: int) -> Path:
    """`n` random RGB PNGs of `size` pixels in `folder` (reused when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.png"))) == n:
        return folder
    rng = np.random.default_rng(0)
    for index in range(n):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{index:06d}.png")
    return folder


def run_generate(checkpoint: Path, images: Path, out: Path, batch_size: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `cfgen generate` child process."""
    command = [sys.executable, "-m", "cfgen.cli", "generate", "--checkpoint", str(checkpoint)]
    command += ["--input", str(images), "--out", str(out), "--overwrite"]
    command += ["--batch-size", str(batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"cfgen generate failed: {child.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports kilobytes


def tiny_checkpoint(work: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.model_files import write_model_pair  # the random-weight models of the tests

    return write_model_pair(work / "models")[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=16, help="of the PNGs written")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_generate"))
    args = parser.parse_args()
    checkpoint = args.checkpoint or tiny_checkpoint(args.work)
    load = os.getloadavg()[0]
    print(f"cfgen generate, batch {args.batch_size}, {args.image_size} px inputs, load {load:.1f}")
    print(f"{'inputs':>8} {'wall s':>8} {'ms/query':>9} {'peak RSS MiB':>13}")
    for n in [64, *args.sizes]:
        images = write_images(args.work / f"images_{n}", n, args.image_size)
        seconds, peak = run_generate(checkpoint, images, args.work / f"out_{n}", args.batch_size)
        print(f"{n:>8} {seconds:>8.1f} {1000 * seconds / n:>9.1f} {peak:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
