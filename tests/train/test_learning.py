"""The explainer learns: a tiny run of the real training command on a toy world with a known answer.

Toy world (16 px): a flat background colour, a 4x4 *region* and a 4x4 *distractor* patch, both
grey levels drawn independently. The black box is a fixed, exported analytic classifier that
reads only the region: f(x) = sigmoid(SCALE * mean of the region). So the explanation is known by
construction: moving f bin by bin means changing the region, and nothing else, the distractor
included, has any reason to change.

`cfgen explainer fit` runs in-process with the project's CPU configuration
(`configs/explainer/synthetic_smile.yaml`: the typed defaults plus its overrides, whatever the
default generator is), overriding only what a tiny run needs: data, image size, widths, steps,
logging. The exported `explainer.pt` is then scored on held-out queries against the same module
untrained (same seed, same hyper-parameters).
"""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import rankdata
from torch import nn

from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.io import load_bundle, safe_torch_load
from cfgen.train.explainer import ExplainerModule
from cfgen.train.explainer_cli import cli_main

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "explainer" / "synthetic_smile.yaml"
SIZE = 16
REGION = (slice(4, 8), slice(8, 12))  # rows, columns: all the classifier reads
DISTRACTOR = (slice(9, 13), slice(2, 6))  # varies like the region; read by nobody
SCALE = 20.0
N_IMAGES = (512, 32, 64)  # train, val, test
GENERATOR_STEPS = 300
SEED = 0


class RegionLogit(nn.Module):
    """Logit of the toy's black box: SCALE * mean of the region over all channels, (N, 1)."""

    def __init__(self) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, SIZE, SIZE)
        mask[..., REGION[0], REGION[1]] = 1.0
        self.register_buffer("mask", mask / (3 * mask.sum()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SCALE * (x * self.mask).sum(dim=(1, 2, 3)).unsqueeze(1)


def toy_images(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3, SIZE, SIZE) in [-1, 1]; region logits spread evenly over [-3.5, 3.5]."""
    images = (torch.rand(n, 3, 1, 1, generator=generator) * 1.2 - 0.6).expand(n, 3, SIZE, SIZE)
    images = images.clone()
    for rows, columns in (REGION, DISTRACTOR):
        level = (torch.rand(n, generator=generator) * 2 - 1) * 3.5 / SCALE
        images[:, :, rows, columns] = level[:, None, None, None]
    return images


def write_world(root: Path, seed: int) -> Path:
    """The toy world as a user's image folder: PNGs and `attributes.csv` with a split column."""
    generator = torch.Generator().manual_seed(seed)
    images = toy_images(sum(N_IMAGES), generator)
    pixels = ((images + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    labels = (RegionLogit()(images).squeeze(1) > 0).long().tolist()
    splits = np.repeat(["train", "val", "test"], N_IMAGES)
    root.mkdir(parents=True)
    with open(root / "attributes.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "split", "Bright"])
        for index, (image, split, label) in enumerate(zip(pixels, splits, labels, strict=True)):
            Image.fromarray(image).save(root / f"{index:04d}.png")
            writer.writerow([f"{index:04d}.png", split, label])
    return root


def write_classifier(path: Path) -> Path:
    """The analytic black box as a `torch.export` file, as a user would hand it over."""
    batch = torch.export.Dim("batch")
    example = (torch.zeros(2, 3, SIZE, SIZE),)
    program = torch.export.export(RegionLogit(), example, dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def train_toy(
    root: Path, seed: int = SEED, steps: int = GENERATOR_STEPS, options: tuple[str, ...] = ()
) -> Path:
    """World, classifier and a tiny `cfgen explainer fit` run under `root` (`steps` generator
    steps, `options` added to the command line: `benchmarks/bench_toy.py`); the run folder."""
    data = write_world(root / "data", seed)
    classifier = write_classifier(root / "classifier.pt2")
    run_dir = root / "run"
    argv = [
        "fit", "--config", str(CONFIG), "--seed_everything", str(seed),
        "--trainer.default_root_dir", str(run_dir), "--generator_steps", str(steps),
        "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--logger", "none",
        "--model.classifier", str(classifier),
        "--model.generator.width", "16", "--model.generator.max_width", "64",
        "--model.discriminator.width", "8", "--model.discriminator.max_width", "32",
        "--data.source", "folder", "--data.root", str(data), "--data.target", "Bright",
        "--data.image_size", str(SIZE), "--data.batch_size", "16",
        "--data.steps_per_epoch", "100",
        "--monitor.every_n_steps", str(10 * steps), "--monitor.n_queries", "8", *options,
    ]  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 16 px convolutions: a second thread mostly waits at barriers
    try:
        assert cli_main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return run_dir


def untrained_twin(run_dir: Path, seed: int = SEED) -> Path:
    """The same module before any step (same hyper-parameters and seed), exported the same way."""
    hparams = safe_torch_load(run_dir / "checkpoints" / "last.ckpt")["hyper_parameters"]
    hparams = {key: value for key, value in hparams.items() if not key.startswith("_")}
    torch.manual_seed(seed)
    # The classifier is an input, not a hyper-parameter: the checkpoint records it apart.
    classifier = run_dir.parent / "classifier.pt2"
    return ExplainerModule(str(classifier), **hparams).export(run_dir.parent / "untrained.pt")


def held_out_queries(root: Path) -> torch.Tensor:
    """The toy's test split, (N, 3, SIZE, SIZE) in [-1, 1], read back from its PNGs."""
    rows = list(csv.DictReader((root / "data" / "attributes.csv").read_text().splitlines()))
    files = [root / "data" / row["file"] for row in rows if row["split"] == "test"]
    pixels = np.stack([np.asarray(Image.open(file)) for file in files])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1


def spearman(values: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of each column of (S, N) with 0..S-1; ties share their mean rank, and
    a constant column (nothing progresses) counts 0."""
    ranks = torch.from_numpy(rankdata(values.double().numpy(), axis=0))
    steps = torch.arange(len(values), dtype=torch.double)[:, None]
    ranks, steps = ranks - ranks.mean(0), steps - steps.mean()
    scale = ranks.norm(dim=0) * steps.norm()
    return torch.where(scale > 0, (ranks * steps).sum(0) / scale.clamp_min(1e-12), 0.0)


def mass(change: torch.Tensor, where: tuple[slice, slice]) -> torch.Tensor:
    """Sum of a change map (N, H, W) inside a square, per query: (N,)."""
    return change[:, where[0], where[1]].sum(dim=(1, 2))


def figures(explainer_path: Path, queries: torch.Tensor) -> dict[str, float]:
    """Compatibility error, monotonicity and where the changes lie, computed here by hand.

    `region_share`: share of |x - x_far| (x_far: the strip's end across the decision) inside the
    region. `ends_region_over_distractor`: median over queries of the mass of |x_last - x_first|
    (what the exaggeration itself changes) inside the region over that inside the distractor.
    """
    explainer = ProgressiveExaggeration.from_checkpoint(explainer_path)
    strip = explainer.exaggerate(queries)
    centres = (strip.target_bins.double() + 0.5) / explainer.n_bins
    goes_up = (strip.query_posteriors < 0.5)[:, None, None, None]
    far = torch.where(goes_up, strip.images[-1], strip.images[0])
    change = (queries - far).abs().sum(dim=1)  # (N, H, W)
    ends = (strip.images[-1] - strip.images[0]).abs().sum(dim=1)
    ends_ratio = mass(ends, REGION) / mass(ends, DISTRACTOR).clamp_min(1e-6)
    return {
        "compat_mae": (strip.posteriors.double() - centres[:, None]).abs().mean().item(),
        "monotonicity": spearman(strip.posteriors).mean().item(),
        "region_share": (mass(change, REGION).sum() / change.sum()).item(),
        "ends_region_over_distractor": ends_ratio.median().item(),
    }


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("toy")
    return root, train_toy(root)


def shortfalls(trained: dict[str, float], untrained: dict[str, float]) -> list[str]:
    """The bars of a run that learned the toy world which `trained` misses, against `untrained`
    (the same module before any step); [] when it meets them all."""
    bars = {
        "compat_mae < 0.5 x untrained": trained["compat_mae"] < 0.5 * untrained["compat_mae"],
        "monotonicity > 0.8": trained["monotonicity"] > 0.8,
        # The region is 1/16 of the image: a change spread evenly puts 0.0625 of |x - x_far|
        # there, an untrained generator (which changes nothing with the bin) about 0.02. Measured
        # over seeds 0-3 with the official encoder-decoder (it also re-draws the rest):
        # 0.128-0.135.
        "region_share > 0.10": trained["region_share"] > 0.10,
        # What the exaggeration changes lies in the region, not in the distractor, which varies
        # the same way in the data (ratio 1 for a change that ignores which patch matters; 3.0-4.1
        # above).
        "ends_region_over_distractor > 2": trained["ends_region_over_distractor"] > 2.0,
    }
    return [bar for bar, met in bars.items() if not met]


def test_the_explainer_learns_the_toy_world(toy_run):
    root, run_dir = toy_run
    queries = held_out_queries(root)
    trained = figures(run_dir / "explainer.pt", queries)
    untrained = figures(untrained_twin(run_dir), queries)
    assert shortfalls(trained, untrained) == [], f"trained {trained}, untrained {untrained}"


def test_the_exported_explainer_is_the_ema_generator(toy_run):
    _, run_dir = toy_run
    exported = load_bundle(run_dir / "explainer.pt", "explainer")["state_dict"]
    weights = safe_torch_load(run_dir / "checkpoints" / "last.ckpt")["state_dict"]
    for name, value in exported.items():
        torch.testing.assert_close(value, weights[f"ema.module.{name}"], msg=name)
    raw = [(value - weights[f"generator.{name}"]).abs().max() for name, value in exported.items()]
    assert max(raw) > 1e-3  # ...and not the raw generator, which differs from the average
