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
"""

import argparse
from collections.abc import Sequence

from rich.progress import Progress

from cfgen.data.inputs import open_input
from cfgen.explain.generate import generate_strips
from cfgen.explain.progressive import PLACEMENT_STEPS, ProgressiveExaggeration
from cfgen.io import prepare_output_dir


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
        placement_steps=args.placement_steps,
        classifier_output=args.classifier_output,
        classifier_activation=args.classifier_activation,
    ).to(args.device)
    size, channels = explainer.generator.image_size, explainer.generator.channels
    queries = open_input(args.input, args.n, size, channels)  # bad input fails before any write
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    if args.devices is not None or args.num_nodes > 1:
        from cfgen.explain.distributed import predict_strips

        written = predict_strips(explainer, out, args)
    else:
        with Progress() as progress:
            task = progress.add_task("exaggerating", total=len(queries))
            written = generate_strips(
                explainer,
                queries,
                out,
                args.batch_size,
                checkpoint=str(args.checkpoint),
                gif=args.gif,
                on_batch=lambda n: progress.advance(task, n),
            )
    if written is not None:  # None: not rank 0 of several processes
        files = "overview.png, strips.json, strips/" + (", gifs/" if args.gif else "")
        print(f"{written} strips written to {out} ({files})")
    return 0
