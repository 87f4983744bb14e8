"""How explainer training and generation cost grow with image size and data set size.

    .venv/bin/python benchmarks/bench_scaling.py                # 32/64/128 px, 2k vs 20k faces
    .venv/bin/python benchmarks/bench_scaling.py --quick        # 32/64 px, 500 vs 5k faces

Image size: the CPU config's model (`configs/explainer/synthetic_smile.yaml`, widths 16→128)
at 32, 64 and 128 px (the depth grows with the size: one more level per doubling), batch 32.
Training is timed over a few iterations and extrapolated to an epoch of the config's
`steps_per_epoch` iterations (250 x 32 images). Generation peak memory: a fresh child process per
size makes 10-bin strips of 64 random queries (`generator_strip`, batches of 64) and reports its
peak RSS (`ru_maxrss`) before and after.

Data set size: `ExplainerDataModule` on the synthetic world with n_train N and 10 N: data
set-up (rendering the faces + one classifier pass for the posteriors) is timed; an epoch that
visits every image once (N / 32 iterations) is the loader's time over those batches plus the
32 px training step measured above times N / 32 (extrapolated, not trained).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from bench_explainer import classifier_file, explainer_module, timed

from cfgen.explain.rendering import generator_strip
from cfgen.models.classifiers import build_classifier
from cfgen.models.generator import Generator
from cfgen.train.explainer_data import ExplainerDataModule

CONFIG = "configs/explainer/synthetic_smile.yaml"
BATCH = 32


def _sized_config(size: int, folder: Path) -> str:
    """The CPU config with `data.image_size` set to `size`, written into `folder`."""
    config = yaml.safe_load(Path(CONFIG).read_text())
    config["data"]["image_size"] = size
    # A file that does not exist: `explainer_module` then makes a random classifier of this size.
    config["model"]["classifier"] = str(folder / f"absent_{size}.pt")
    path = folder / f"explainer_{size}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def train_step_seconds(size: int, steps: int, folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one training iteration (D + G step) at `size` px, batch 32."""
    module, batch_size = explainer_module(_sized_config(size, folder), folder)
    batch = {
        "image": torch.rand(batch_size, 3, size, size) * 2 - 1,
        "posterior": torch.rand(batch_size),
    }
    step = module.optimisation.n_critic - 1
    return timed(lambda: module.training_step(batch, step), steps, warmup=1)


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM). Not `ru_maxrss`: that one keeps the peak of
    the parent process across fork + exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def generation_child(size: int, queries: int) -> None:
    """In a fresh process: peak RSS (MiB) before and after making 10-bin strips."""
    config = yaml.safe_load(Path(CONFIG).read_text())["model"]
    widths = config["generator"]
    generator = Generator(size, 3, 10, widths["width"], widths["max_width"])
    classifier = build_classifier("small_cnn", num_outputs=1, image_size=size, in_channels=3)
    classifier = classifier.eval()
    posterior = lambda y: classifier(y).squeeze(1).sigmoid()  # noqa: E731
    x = torch.rand(queries, 3, size, size) * 2 - 1
    generator_strip(generator.eval(), posterior, x[:2], 10, 64)  # warm-up (one-off set-up)
    before = peak_rss_mib()
    start = time.perf_counter()
    strip = generator_strip(generator, posterior, x, 10, 64)
    seconds = time.perf_counter() - start
    after = peak_rss_mib()
    mib = strip.images.numel() * 4 / 2**20
    print(f"{before:.0f} {after:.0f} {seconds:.3f} {mib:.1f}")


def generation_memory(size: int, queries: int, threads: int) -> list[float]:
    """Peak RSS before / after, seconds and strip MiB, from a child process."""
    command = [sys.executable, __file__, "--child", str(size), "--queries", str(queries)]
    command += ["--threads", str(threads)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [float(value) for value in output.split()[-4:]]


def image_sizes(sizes: list[int], steps: int, threads: int) -> float:
    """Prints the image-size table; returns the 32 px iteration's wall seconds."""
    print(f"{'size':>5} {'s/iter wall':>11} {'CPU s':>6} {'epoch (250 it)':>15} "
          f"{'gen s/strip':>11} {'RSS before':>10} {'peak RSS':>9} {'strips MiB':>10}")  # fmt: skip
    first = None
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            wall, cpu = train_step_seconds(size, steps, Path(folder))
            first = first or wall
            before, after, seconds, mib = generation_memory(size, 64, threads)
            print(f"{size:>5} {wall:>11.3f} {cpu:>6.3f} {250 * wall / 60:>11.1f} min "
                  f"{seconds / 64:>11.4f} {before:>7.0f} MiB {after:>5.0f} MiB "
                  f"{mib:>10.1f}")  # fmt: skip
    return first


def data_sizes(sizes: list[int], step_seconds: float, classifier: str) -> None:
    """Prints set-up time and a full-pass epoch estimate for each training set size."""
    print(f"{'n_train':>8} {'set-up s':>9} {'loader s/epoch':>15} {'epoch (full pass)':>18}")
    for n in sizes:
        data = ExplainerDataModule(
            classifier=classifier, n_train=n, n_val=64, n_test=64, batch_size=BATCH,
            steps_per_epoch=n // BATCH,
        )  # fmt: skip
        start = time.perf_counter()
        data.setup("fit")
        loader = data.train_dataloader()  # computes f(x) of every training image
        setup = time.perf_counter() - start
        start = time.perf_counter()
        for _ in loader:
            pass
        loading = time.perf_counter() - start
        epoch = loading + (n // BATCH) * step_seconds
        print(f"{n:>8} {setup:>9.1f} {loading:>15.2f} {epoch / 60:>14.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="32/64 px, 500 vs 5,000 faces")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--queries", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--classifier", default="runs/classifier/synthetic_smile/classifier.pt")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        generation_child(args.child, args.queries)
        return
    print(f"{args.threads} thread(s), batch {BATCH}, model {CONFIG} (widths 16->128)")
    sizes, counts = ([32, 64], [500, 5000]) if args.quick else ([32, 64, 128], [2000, 20000])
    step_seconds = image_sizes(sizes, 1 if args.quick else args.steps, args.threads)
    with tempfile.TemporaryDirectory() as folder:
        data_sizes(counts, step_seconds, classifier_file(args.classifier, 32, Path(folder)))


if __name__ == "__main__":
    main()
