"""Explainer throughput: training iterations (images/s) and strip generation (strips/s).

    .venv/bin/python benchmarks/bench_explainer.py                      # the CPU config's model
    .venv/bin/python benchmarks/bench_explainer.py --threads 1 --steps 10
    .venv/bin/python benchmarks/bench_explainer.py --config configs/explainer/celeba_smile_64.yaml

Times the module's own `training_step` (n_critic D steps, then one G step with the cycle pass)
on random images, with the configured classifier bundle when it exists (else a small CNN with
random weights: same cost). Prints wall time and CPU time per iteration: on a shared
machine the CPU time is the steadier figure.
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.io import save_bundle
from cfgen.models.classifiers import build_classifier
from cfgen.train.explainer import ExplainerModule


def classifier_file(path: str, image_size: int, folder: Path) -> str:
    """The configured classifier if present, else a random small CNN bundle of that size."""
    if Path(path).is_file():
        return path
    config = {"arch": "small_cnn", "num_outputs": 1, "image_size": image_size, "in_channels": 3}
    model = build_classifier(**config)
    return str(save_bundle(folder / "classifier.pt", "classifier", config, model.state_dict()))


def explainer_module(config_path: str, folder: Path) -> tuple[ExplainerModule, int]:
    config = yaml.safe_load(Path(config_path).read_text())
    model, data = dict(config.get("model", {})), config.get("data", {})
    size = int(data.get("image_size", 32))
    default = "runs/classifier/synthetic_smile/classifier.pt"
    model["classifier"] = classifier_file(model.get("classifier", default), size, folder)
    module = ExplainerModule(image_size=size, **model)
    module.classifier.check(torch.zeros(2, 3, size, size))
    # A bare single-process Trainer answers what the module asks it (global step, max steps for
    # the learning-rate schedule, the strategy's reduce of the finite-loss check); nothing is
    # fitted through it.
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    module.trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    optimizers = module.configure_optimizers()
    # Outside a Trainer: the module's hooks that need one are replaced by plain equivalents.
    module.optimizers = lambda: optimizers
    module.manual_backward = lambda loss: loss.backward()
    module.log_dict = lambda *args, **kwargs: None
    return module, int(data.get("batch_size", 32))


def timed(function, steps: int, warmup: int = 2) -> tuple[float, float]:
    for _ in range(warmup):
        function()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        function()
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/explainer/synthetic_smile.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queries", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        module, batch_size = explainer_module(args.config, Path(folder))
    size, n_critic = module.hparams.image_size, module.optimisation.n_critic
    batch = {"image": torch.rand(batch_size, 3, size, size) * 2 - 1}
    batch["posterior"] = torch.rand(batch_size)
    # One iteration = n_critic batches (n_critic D steps, the last with the G step).
    iteration = lambda: [module.training_step(batch, i) for i in range(n_critic)]  # noqa: E731
    wall, cpu = timed(iteration, args.steps)
    images = batch_size * n_critic
    print(f"config {args.config}: {size} px, batch {batch_size}, n_critic {n_critic}, "
          f"{args.threads} thread(s)")  # fmt: skip
    print(f"training: {wall:.3f} s/iteration wall ({images / wall:.0f} images/s), "
          f"{cpu:.3f} s CPU time")  # fmt: skip
    explainer = ProgressiveExaggeration(module.classifier, module.ema_generator)
    queries = torch.rand(args.queries, 3, size, size) * 2 - 1
    wall, cpu = timed(lambda: explainer.exaggerate(queries), 3, warmup=1)
    print(f"generation: {args.queries / wall:.0f} strips/s of {explainer.n_bins} frames, "
          f"placement_steps {explainer.placement_steps} "
          f"({wall:.2f} s per {args.queries} queries, {cpu:.2f} s CPU time)")  # fmt: skip


if __name__ == "__main__":
    main()
