"""`cfgen generate`: exaggeration strips for a folder of images or a built-in data set.

    cfgen generate --checkpoint runs/explainer/synthetic_smile/explainer.pt \\
        --input synthetic:test --n 64 --out runs/strips/synthetic_smile
    cfgen generate --checkpoint explainer.pt --input photos/ --out strips/ --batch-size 64

`--input` is an image folder (every .png/.jpg/... at its top level), an attribute folder (a
folder with `attributes.csv`) or `synthetic:SPLIT` (the built-in world; `--n` images). Images
are resized to the explainer's size (and averaged to one channel for a grey explainer). For
every query it writes `strips/<id>.png` (the query, then its frame at each bin, the classifier's
posterior under each; grey for one-channel images) and, with `--gif`, `gifs/<id>.gif`; then
`overview.png` (the first queries) and `strips.json` (query id, source, query posterior, target
bins, achieved posteriors). Queries are read, explained and written one batch at a time, the
writing in background threads, so memory stays bounded for any number of inputs
(`cfgen.explain.generate`). `--devices N [--num-nodes M] [--strategy ddp]` spreads the batches
over processes (`cfgen.explain.distributed`).

`--out` is claimed for the run (`cfgen.explain.strip_folder`): a second run into it is refused
while the first writes. A run stopped half-way (Ctrl+C, SIGTERM, a kill) leaves the strips it
wrote and says how to finish: the same command with `--resume` makes only the missing strips.
`--overwrite` deletes the strips of an earlier run there first.
"""

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from rich.progress import Progress

from cfgen.data.inputs import open_input
from cfgen.errors import ClassifierMismatchError, ConfigError, RunInterrupted
from cfgen.explain.generate import generate_strips
from cfgen.explain.progressive import PLACEMENT_STEPS, ProgressiveExaggeration
from cfgen.explain.strip_folder import unfinished_count


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
        "--placement-steps",
        type=int,
        default=PLACEMENT_STEPS,
        help="bisections that place a frame the generator draws outside its bin, reading f "
        f"(default {PLACEMENT_STEPS}; 0: every frame as drawn, one generator pass per bin)",
    )
    parser.add_argument("--gif", action="store_true", help="also write gifs/<id>.gif per query")
    parser.add_argument(
        "--classifier", default=None, help="classifier file (default: the recorded one)"
    )
    parser.add_argument(
        "--classifier-output",
        default=None,
        help="the classifier's explained output column, an index or a name (default: as "
        "recorded at training)",
    )
    parser.add_argument(
        "--classifier-activation",
        choices=["sigmoid", "softmax", "none"],
        default=None,
        help="how the classifier's scores become a posterior (default: as recorded at training)",
    )
    parser.add_argument("--allow-classifier-mismatch", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--overwrite", action="store_true", help="delete an earlier run's strips in --out first"
    )
    parser.add_argument(
        "--resume", action="store_true", help="finish the run that was stopped in --out"
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        help="run Lightning's predict loop on this many devices per node (docs/DISTRIBUTED.md)",
    )
    parser.add_argument("--num-nodes", type=int, default=1, help="nodes, with --devices")
    parser.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    return parser


# Device type -> how many torch finds (cuda: torch.cuda.device_count is 0 without a driver).
DEVICE_CHECKS = {
    "cpu": lambda: 1,
    "cuda": lambda: torch.cuda.device_count() if torch.cuda.is_available() else 0,
    "mps": lambda: int(torch.backends.mps.is_available()),
}


def device_of(name: str) -> torch.device:
    """The torch device `--device` names, refused when it is unknown or absent here."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in DEVICE_CHECKS:
        raise ConfigError(f"unknown --device {name!r}; use cpu, cuda, cuda:N or mps")
    count = DEVICE_CHECKS[device.type]()
    if count == 0 or (device.index or 0) >= count:
        found = f"{count} {device.type} device(s)" if count else f"no {device.type} device"
        raise ConfigError(f"--device {name}: torch finds {found} on this machine; use --device cpu")
    return device


def _check(args: argparse.Namespace) -> None:
    """Refuse what cannot work before anything is loaded or written."""
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.overwrite and args.resume:
        raise ConfigError(
            "--overwrite starts the folder again and --resume finishes it: pass one of them"
        )
    device_of(args.device)
    if not args.input.startswith("synthetic:"):
        source, out = Path(args.input).resolve(), Path(args.out).resolve()
        if source == out or any(source.is_relative_to(out / name) for name in ("strips", "gifs")):
            raise ConfigError(
                f"--out {args.out} writes into the --input folder {args.input}: its strips and "
                "overview would become queries of the next run (and --overwrite would delete "
                "them); choose an --out outside --input"
            )


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a scheduler, `kill`) stops the run as Ctrl+C does: the strips written so far
    are kept and the stop is reported."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(out: str, stop: KeyboardInterrupt) -> RunInterrupted:
    """How far the stopped run got, and how to finish it."""
    name = "SIGTERM" if stop.args == ("SIGTERM",) else "SIGINT"
    exit_code = 128 + signal.Signals[name].value
    unfinished = unfinished_count(out)
    if unfinished is None:  # stopped before the folder was claimed
        return RunInterrupted(
            f"{name} stopped cfgen generate before it wrote into {out}", (), exit_code
        )
    return RunInterrupted(
        f"{name} stopped cfgen generate: {out} is incomplete ({unfinished[0]} of {unfinished[1]} "
        "strips written, no strips.json yet); the same command with --resume makes only the "
        "strips that are missing",
        resume_args=("--resume",),
        exit_code=exit_code,
        drop_args=("--overwrite",),
    )


def _explainer(args: argparse.Namespace) -> ProgressiveExaggeration:
    try:
        explainer = ProgressiveExaggeration.from_checkpoint(
            args.checkpoint,
            classifier=args.classifier,
            allow_classifier_mismatch=args.allow_classifier_mismatch,
            batch_size=args.batch_size,
            placement_steps=args.placement_steps,
            classifier_output=args.classifier_output,
            classifier_activation=args.classifier_activation,
        )
    except ClassifierMismatchError as error:
        raise error.with_option("--allow-classifier-mismatch") from None
    return explainer.to(args.device)


def generate_main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    _check(args)
    explainer = _explainer(args)
    size, channels = explainer.generator.image_size, explainer.generator.channels
    queries = open_input(args.input, args.n, size, channels)  # bad input fails before any write
    with sigterm_interrupts():
        try:
            written = _generate(explainer, queries, args)
        except KeyboardInterrupt as stop:
            raise _interrupted(args.out, stop) from None
    if written is not None:  # None: not rank 0 of several processes
        files = "overview.png, strips.json, strips/" + (", gifs/" if args.gif else "")
        print(f"{written} strips written to {args.out} ({files})")
    return 0


def _generate(explainer: ProgressiveExaggeration, queries, args: argparse.Namespace) -> int | None:
    if args.devices is not None or args.num_nodes > 1:
        from cfgen.explain.distributed import predict_strips

        return predict_strips(explainer, args)
    progress = Progress()
    task = progress.add_task("exaggerating", total=len(queries))

    def advance(n: int) -> None:
        progress.start()  # at the first batch: a folder refused shows no bar (no-op later)
        progress.advance(task, n)

    try:
        return generate_strips(
            explainer,
            queries,
            Path(args.out),
            args.batch_size,
            checkpoint=str(args.checkpoint),
            gif=args.gif,
            on_batch=advance,
            overwrite=args.overwrite,
            resume=args.resume,
        )
    finally:
        progress.stop()
