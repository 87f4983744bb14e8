"""Training compute of the latent shift's autoencoder against the PE explainer it is compared with.

    .venv/bin/python benchmarks/bench_matched_autoencoder.py \
        --explainer configs/explainer/synthetic_smile.yaml \
        --autoencoder configs/autoencoder/synthetic.yaml

Counts, with `torch.utils.flop_counter.FlopCounterMode` (as `bench_flops.py` counts), the FLOPs
of one explainer training iteration of the config (n_critic discriminator steps and one
generator step, its batch size, random images) times its generator steps, and the FLOPs of one
autoencoder training step (forward and backward of the L1 reconstruction, the config's batch
size), and prints the autoencoder's optimiser steps that spend the same compute: what
`configs/autoencoder/*.yaml`'s `trainer.max_steps` is set from, so that the latent-shift
baseline is not compared at a tenth of PE's training.
"""

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from bench_explainer import explainer_module
from bench_flops import _batch, count_flops
from torch.utils.flop_counter import FlopCounterMode

from cfgen.models.autoencoder import Autoencoder


def explainer_flops(config: str) -> tuple[float, int]:
    """FLOPs of one training iteration of the explainer config, and its generator steps."""
    with tempfile.TemporaryDirectory() as folder:
        module, batch_size = explainer_module(config, Path(folder))
        n_critic = module.optimisation.n_critic
        size = module.hparams.image_size
        total = sum(count_flops(module, _batch(size, batch_size), i) for i in range(n_critic))
    steps = int(yaml.safe_load(Path(config).read_text()).get("generator_steps", 0))
    return float(total), steps


def autoencoder_flops(config: str) -> tuple[float, dict]:
    """FLOPs of one training step of the autoencoder config, and its model options."""
    options = yaml.safe_load(Path(config).read_text())
    model = {
        k: v
        for k, v in options.get("model", {}).items()
        if k not in ("code_noise", "lr", "weight_decay")
    }
    data = options.get("data", {})
    size, batch = int(data.get("image_size", 32)), int(data.get("batch_size", 128))
    network = Autoencoder(image_size=size, channels=3, **model)
    images = torch.rand(batch, 3, size, size) * 2 - 1
    with FlopCounterMode(display=False) as counter:
        F.l1_loss(network(images), images).backward()
    return float(counter.get_total_flops()), model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--explainer", default="configs/explainer/synthetic_smile.yaml")
    parser.add_argument("--autoencoder", default="configs/autoencoder/synthetic.yaml")
    args = parser.parse_args()
    per_iteration, steps = explainer_flops(args.explainer)
    per_step, model = autoencoder_flops(args.autoencoder)
    total = per_iteration * steps
    print(f"explainer {args.explainer}: {per_iteration / 1e9:.1f} GFLOP per iteration x {steps} "
          f"generator steps = {total / 1e12:.2f} TFLOP")  # fmt: skip
    print(f"autoencoder {args.autoencoder} {model}: {per_step / 1e9:.2f} GFLOP per step")
    print(f"matched compute: {total / per_step:.0f} autoencoder steps")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
