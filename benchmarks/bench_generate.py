"""`cfgen generate` against the model alone, side by side in one run: wall time, ratio, memory.

    .venv/bin/python benchmarks/bench_generate.py [--checkpoint runs/demo/explainer-*/explainer.pt]
        [--n 10000 [1000 ...]] [--batch-size 64] [--cases synthetic:32 folder:32 synthetic:64]
        [--work /tmp/bench_generate]

For each case (input kind : image size):
- model only: in this process, the explainer's `exaggerate` over the same N queries in the
  same batches, images already in memory (nothing read, nothing written); measured before and
  after the command, the mean is the reference;
- command: `cfgen generate --input ... --out ...` as a child process, start to exit (Python
  and torch imports, model loading, reading, explaining, PNG strips, overview, strips.json),
  with its peak resident memory (RSS) from the kernel (`os.wait4`).
`synthetic` is `--input synthetic:test` (faces rendered batch by batch); `folder` is a folder of
N PNG faces at the explainer's size, written once (decoding is the command's). The ratio is
command / model only. Both use torch's default thread count (set OMP_NUM_THREADS to change it).
Several `--n` show whether the command's peak memory grows with the number of queries.

`--checkpoint` is used for the cases of its image size; other sizes get an explainer of the
same architecture as `configs/explainer/synthetic_smile.yaml` with random weights (and a random
small-CNN classifier): time and memory depend on the architecture and the image size, not on
the weights.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cfgen.data.inputs import open_input  # noqa: E402
from cfgen.explain.progressive import PLACEMENT_STEPS, ProgressiveExaggeration  # noqa: E402


def random_explainer(work: Path, size: int) -> Path:
    """An untrained explainer of the CPU default architecture at `size` px, and its classifier."""
    from cfgen.io import save_bundle
    from cfgen.models.classifiers import build_classifier
    from cfgen.train.explainer import ExplainerModule

    folder = work / f"random_{size}px"
    if (folder / "explainer.pt").is_file():
        return folder / "explainer.pt"
    model = yaml.safe_load((REPO / "configs/explainer/synthetic_smile.yaml").read_text())["model"]
    torch.manual_seed(0)
    classifier = build_classifier("small_cnn", 1, size, 3)
    config = {"arch": "small_cnn", "num_outputs": 1, "image_size": size, "in_channels": 3}
    config |= {"attribute_names": ["Smiling"], "target": "Smiling"}
    path = save_bundle(folder / "classifier.pt", "classifier", config, classifier.state_dict())
    widths = {
        network: {key: value for key, value in model[network].items() if key.endswith("width")}
        for network in ("generator", "discriminator")
    }
    return ExplainerModule(str(path), image_size=size, **widths).export(folder / "explainer.pt")


def image_folder(work: Path, n: int, size: int) -> Path:
    """`n` synthetic test faces as PNG files of `size` px (reused when already there)."""
    folder = work / f"faces_{size}px_{n}"
    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for batch in open_input("synthetic:test", n, size).batches(1000):
        pixels = ((batch.images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        for query_id, image in zip(batch.ids, pixels.permute(0, 2, 3, 1).numpy(), strict=True):
            Image.fromarray(np.ascontiguousarray(image)).save(folder / f"{query_id}.png")
    return folder


def model_seconds(checkpoint: Path, spec: str, n: int, batch_size: int, placement: int) -> float:
    """Wall seconds of `exaggerate` over the queries, loaded beforehand."""
    explainer = ProgressiveExaggeration.from_checkpoint(
        checkpoint, batch_size=batch_size, placement_steps=placement
    )
    generator = explainer.generator
    queries = open_input(spec, n, generator.image_size, generator.channels)
    batches = [batch.images for batch in queries.batches(batch_size)]
    explainer.exaggerate(batches[0])  # warm-up: allocator, kernels
    start = time.perf_counter()
    for images in batches:
        explainer.exaggerate(images)
    return time.perf_counter() - start


def command_run(checkpoint: Path, spec: str, n: int, batch_size: int, placement: int, out: Path):
    """Wall seconds and peak RSS (MiB) of one `cfgen generate` child process."""
    command = [sys.executable, "-m", "cfgen.cli", "generate", "--checkpoint", str(checkpoint)]
    command += ["--input", spec, "--n", str(n), "--batch-size", str(batch_size)]
    command += ["--placement-steps", str(placement)]
    command += ["--out", str(out)]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"cfgen generate failed: {child.stderr.read().decode()[-2000:]}")
    written = len(list((out / "strips").glob("*.png")))
    if written != n:
        raise SystemExit(f"cfgen generate wrote {written} strips, not {n}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="trained explainer.pt")
    parser.add_argument("--n", type=int, nargs="+", default=[10_000], help="queries per run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cases", nargs="+", default=["synthetic:32", "folder:32", "synthetic:64"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_generate"))
    parser.add_argument(
        "--placement-steps", type=int, default=PLACEMENT_STEPS,
        help="the explainer's placement bisections, in the model and the command alike",
    )  # fmt: skip
    args = parser.parse_args()
    trained = args.checkpoint or next(
        iter(sorted(glob.glob("runs/demo/explainer-*/explainer.pt"))), None
    )
    trained_size = None
    if trained is not None:
        trained = Path(trained)
        trained_size = ProgressiveExaggeration.from_checkpoint(trained).generator.image_size
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"placement_steps {args.placement_steps}, "
          f"load at start {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'case':<14} {'queries':>7} {'explainer':<9} {'model s':>14} {'command s':>10} "
          f"{'ratio':>6} {'ms/query':>9} {'peak RSS MiB':>13}")  # fmt: skip
    for case in args.cases:
        kind, size = case.split(":")[0], int(case.split(":")[1])
        if size == trained_size:
            checkpoint, which = trained, "trained"
        else:
            checkpoint, which = random_explainer(args.work, size), "random"
        for n in args.n:
            spec = (
                "synthetic:test" if kind == "synthetic" else str(image_folder(args.work, n, size))
            )
            placement = args.placement_steps
            before = model_seconds(checkpoint, spec, n, args.batch_size, placement)
            out = args.work / f"out_{kind}_{size}"
            shutil.rmtree(out, ignore_errors=True)  # the benchmark's own folder: a fresh one
            seconds, peak = command_run(checkpoint, spec, n, args.batch_size, placement, out)
            after = model_seconds(checkpoint, spec, n, args.batch_size, placement)
            model = (before + after) / 2
            model_text = f"{model:.1f} ({before:.0f}/{after:.0f})"
            row = f"{case:<14} {n:>7} {which:<9} {model_text:>14} {seconds:>10.1f}"
            print(
                f"{row} {seconds / model:>6.2f} {1000 * seconds / n:>9.2f} {peak:>13.0f}",
                flush=True,
            )
    print(f"load at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
