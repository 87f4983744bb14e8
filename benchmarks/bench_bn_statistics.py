"""Which batch-norm statistics does a trained explainer render with? A diagnosis, no training.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_bn_statistics.py \
        --explainer runs/ablation_synth_2000/official/explainer.pt \
        --classifier runs/base/classifier/classifier.pt --oracle runs/base/oracle/oracle.pt \
        --judge runs/base/judge/classifier.pt --n_queries 300
    ... --folder runs/digits --n_queries 179 --n_real 180     # a folder of images

A generator with batch norm (`generator.norm: batch`, official) normalises with each batch's own
statistics in training and with running averages at inference. Training updates those averages
in three passes per step, each with statistics of its own: the edit (real queries at random
target bins), the cycle (generated images at the queries' bins) and the identity (real queries at
their own bins). This scores each explainer, with the project's evaluation
(`score_counterfactual`, the same metrics and queries as `bench_ablation.py`), three ways:
- `as trained`: the statistics the bundle holds: the running averages training left, for a run
  with `model.averaging.bn_statistics: running` or trained before that option existed;
- `edit pass`: what training exports by default (`model.averaging.bn_statistics: edit`,
  `cfgen.train.explainer_steps.standing_statistics`): the statistics recomputed (cumulative
  average) over the edit pass alone, in training mode, on 1,024 training images (the synthetic
  world's evaluation module has no training split: its 2,000 reference images are used) at
  random target bins;
- `all passes`: the same over the three passes of a training step, as training averages them.
The explainer's own weights are not changed; a generator with group norm has nothing to
recompute. Prints one row per explainer and way; `--out` writes them as JSON, `--strips DIR`
the strips of the first six queries as `DIR/<run>_<way>.png`.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from cfgen.bins import posterior_to_bin
from cfgen.evaluate.build import take
from cfgen.evaluate.methods import score_counterfactual
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.figures import strip_figure
from cfgen.train.explainer_steps import standing_statistics

sys.path.insert(0, str(Path(__file__).parent))
from bench_ablation import COLUMNS, METRICS, add_scoring_arguments, scoring_context  # noqa: E402

WAYS = ("as trained", "edit pass", "all passes")
BATCH = 32  # the CPU config's training batch


@torch.no_grad()
def recompute(generator: nn.Module, classifier, images: torch.Tensor, way: str) -> None:
    """Replace the running statistics of `generator`'s batch norms by those of `way`: `edit
    pass` is what training's export does (`standing_statistics`, target bins drawn as the module
    draws them); `all passes` adds the cycle and identity passes after each edit."""
    draws = torch.Generator().manual_seed(0)
    batches = []
    for chunk in images.split(BATCH):
        own = posterior_to_bin(classifier(chunk), generator.n_bins)
        batches.append((chunk, own, torch.randint(generator.n_bins, own.shape, generator=draws)))
    if way == "edit pass":
        standing_statistics(generator, batches)
    else:  # the same cumulative average (update_bn) over the three passes of each batch
        update_bn([[batch] for batch in batches], _AllPasses(generator).train(generator.training))


class _AllPasses(nn.Module):
    """`generator` on one `(images, source_bin, target_bin)` batch as a training step renders it:
    the edit, the cycle of its images and the identity (one input, as `update_bn` calls it)."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, own, target = batch
        fakes = self.generator.render(images, target, own).image
        self.generator.render(fakes, own)  # the cycle
        return self.generator.render(images, own).image  # the identity


def write_strip(folder: Path, path: str, way: str, strip, queries: torch.Tensor) -> None:
    shown = strip.select(slice(0, 6))
    png = strip_figure(
        shown.images.numpy(),
        shown.posteriors.numpy(),
        queries[:6].numpy(),
        shown.query_posteriors.numpy(),
        f"{Path(path).parent.name}, BN statistics: {way}",
    )
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{Path(path).parent.parent.name}_{Path(path).parent.name}_{way.replace(' ', '_')}.png"
    (folder / name).write_bytes(png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--explainer", nargs="+", required=True)
    add_scoring_arguments(parser, n_queries=300)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--strips", type=Path)
    args = parser.parse_args()
    module, context = scoring_context(args)
    classifier = context.classifier
    images, _ = take(module.train_dataset, 1024)
    if len(images) < 1024 and context.real_images is not None:
        images = context.real_images[:1024]
    print(f"statistics recomputed on {len(images)} images", flush=True)
    results = {}
    for path in args.explainer:
        for way in WAYS:
            # Frames as drawn: the statistics change the generator, placement would hide it.
            explainer = ProgressiveExaggeration.from_checkpoint(path, placement_steps=0)
            if way != "as trained":
                recompute(explainer.generator, classifier, images, way)
            entry, strip = score_counterfactual(explainer, context, METRICS)
            if args.strips is not None:
                write_strip(args.strips, path, way, strip, context.queries)
            metrics = entry["metrics"]
            row = {
                name: metrics[group][key]
                for name, (group, key) in COLUMNS.items()
                if key in metrics.get(group, {})
            }
            results[f"{path} | {way}"] = row
            print(path, way, {name: round(value, 3) for name, value in row.items()}, flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
