"""Benchmark: train the synthetic-world black boxes and measure what the explainer will face.

    .venv/bin/python benchmarks/bench_classifier.py [--out DIR] [--quick] [--reuse]

For the unbiased (`synthetic_smile.yaml`) and the confounded (`synthetic_smile_confounded.yaml`,
glasses agree with Smiling 90% of the time in training) configs, it runs `cfgen classifier fit`
(or, with `--reuse`, scores a `classifier.pt` already in `--out/NAME`) and prints: wall time
of the whole command (data rendering, training, testing), and test AUC / accuracy / ECE
recomputed here from the exported bundle on an independent test split.

Then it measures reliance on the confounder: every test face is re-rendered with its glasses
toggled (same factors and texture seed otherwise), and the mean |f(x) - f(x')| is printed for
both classifiers. The confounded classifier must move measurably more.
"""

import argparse
import time
from pathlib import Path

import torch
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_calibration_error,
)

from cfgen.data.synthetic import FACTOR_NAMES, SyntheticFaces, render_faces
from cfgen.models.blackbox import BlackBox, load_blackbox
from cfgen.train.classifier import BUNDLE_NAME, ECE_BINS
from cfgen.train.classifier_cli import cli_main

CONFIGS = {
    "unbiased": "configs/classifier/synthetic_smile.yaml",
    "confounded": "configs/classifier/synthetic_smile_confounded.yaml",
}
QUICK = ["--data.n_train", "512", "--data.n_val", "128", "--data.n_test", "128"]


def train(config: str, run_dir: Path, quick: bool) -> float:
    """Run `cfgen classifier fit`; returns its wall time in seconds."""
    argv = ["fit", "--config", config, "--trainer.default_root_dir", str(run_dir)]
    argv += ["--logger", "csv", "--trainer.enable_progress_bar", "false"]
    argv += QUICK + ["--trainer.max_epochs", "1"] if quick else []
    start = time.perf_counter()
    if cli_main(argv) != 0:
        raise SystemExit(f"training with {config} failed")
    return time.perf_counter() - start


@torch.no_grad()
def posteriors(box: BlackBox, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """(N, C, H, W) -> (N,) posteriors, in batches."""
    return torch.cat([box(images[i : i + batch]) for i in range(0, len(images), batch)])


def scores(box: BlackBox, test: SyntheticFaces) -> dict[str, float]:
    """Test AUC, accuracy and ECE of the box's target on `test`."""
    posterior = posteriors(box, test.images)
    labels = test.labels[:, box.target_index].long()
    return {
        "auc": binary_auroc(posterior, labels).item(),
        "acc": binary_accuracy(posterior, labels).item(),
        "ece": binary_calibration_error(posterior, labels, n_bins=ECE_BINS).item(),
    }


def glasses_toggled(test: SyntheticFaces) -> torch.Tensor:
    """The test faces re-rendered with glasses put on / taken off: (N, C, H, W)."""
    factors = test.factors.clone()
    column = FACTOR_NAMES.index("glasses")
    factors[:, column] = 1 - factors[:, column]
    images, _ = render_faces(factors, test.image_size, test.noise_seeds)
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/classifier"))
    parser.add_argument("--quick", action="store_true", help="tiny data, 1 epoch: a smoke run")
    parser.add_argument(
        "--reuse", action="store_true", help="score classifier.pt files already in --out"
    )
    args = parser.parse_args()
    n_test = 128 if args.quick else 2000
    test = SyntheticFaces(n_test, image_size=32, seed=1, split="test")
    toggled = glasses_toggled(test)
    rows = []
    for name, config in CONFIGS.items():
        bundle = args.out / name / BUNDLE_NAME
        reused = args.reuse and bundle.is_file()
        seconds = float("nan") if reused else train(config, args.out / name, args.quick)
        box = load_blackbox(str(bundle))
        reliance = (posteriors(box, test.images) - posteriors(box, toggled)).abs().mean().item()
        rows.append((name, seconds, scores(box, test), reliance))
    header = ("classifier", "wall s", "AUC", "acc", "ECE", "|dp| glasses")
    print("\n{:<11} {:>7} {:>7} {:>7} {:>7} {:>13}".format(*header))
    for name, seconds, figures, reliance in rows:
        print(
            f"{name:<11} {seconds:7.1f} {figures['auc']:7.4f} {figures['acc']:7.4f} "
            f"{figures['ece']:7.4f} {reliance:13.4f}"
        )
    print(f"(test: {n_test} faces, seed 1; torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
