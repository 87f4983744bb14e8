"""Throughput of the synthetic-face renderer (images and region masks), in faces per second.

    .venv/bin/python benchmarks/bench_render.py [--size 64] [--threads 2] [--seconds 5]

Renders batches of `--batch` faces with random factors and grain for `--seconds` after one
warm-up call, and prints the best of `--repeats` rounds (the machine may be shared, and the best
round is the least disturbed one), together with the machine load.
"""

import argparse
import os
import time

import torch

from cfgen.data.render import FACTOR_NAMES, render_faces


def faces_per_second(size: int, batch: int, seconds: float, device: str) -> float:
    factors = torch.rand(batch, len(FACTOR_NAMES), device=device)
    factors[:, FACTOR_NAMES.index("glasses")] = factors[:, 0].round()
    noise_seeds = torch.arange(batch, device=device)
    render_faces(factors, size, noise_seeds)  # warm-up: texture bank, allocator
    rendered, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images, _ = render_faces(factors, size, noise_seeds)
        rendered += batch
    if device != "cpu":
        torch.cuda.synchronize()
    return rendered / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rounds = [
        faces_per_second(args.size, args.batch, args.seconds, args.device)
        for _ in range(args.repeats)
    ]
    load = os.getloadavg()[0]
    print(
        f"render_faces at {args.size} px on {args.device}, {args.threads} torch threads: "
        f"{max(rounds):,.0f} faces/s (images + masks; rounds: "
        f"{', '.join(f'{r:,.0f}' for r in rounds)}; 1-min load average {load:.1f})"
    )


if __name__ == "__main__":
    main()
