"""Model FLOPs per explainer training iteration against this machine's measured matmul peak.

    .venv/bin/python benchmarks/bench_flops.py                  # 32 px timed, 64/128 px counted
    .venv/bin/python benchmarks/bench_flops.py --quick          # 32 px only, few steps
    .venv/bin/python benchmarks/bench_flops.py --no-compile     # skip the torch.compile probe

FLOPs come from `torch.utils.flop_counter.FlopCounterMode` over the module's own
`training_step` on a generator turn: one D step (real + fake scores, backward) and one G step
(fake, cycle pass, adversarial / classifier / reconstruction / identity terms, backward), batch
32 of random images. A full iteration adds n_critic - 1 D-only steps (the 32 px CPU config has
n_critic 1; the 64/128 px configs keep the official 5), counted the same way. The peak is the
best of several large fp32 matmuls (2,048^2) in the same process with the same threads; a
3x3 convolution's rate is printed beside it (oneDNN's Winograd convolutions beat the matmul
in model FLOPs). Utilisation = counted FLOPs / (measured seconds x rate). The torch.compile
probe compiles the generator's encode and decode (the G step's convolutions) and times the
same step.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from bench_explainer import explainer_module, timed
from torch.utils.flop_counter import FlopCounterMode

CONFIGS = {
    32: "configs/explainer/synthetic_smile.yaml",
    64: "configs/explainer/celeba_smile_64.yaml",
    128: "configs/explainer/celeba_smile_128.yaml",
}


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of `size`^2 matmuls (2 size^3 FLOPs each) on this process's threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up: first call pays for thread-pool start-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def conv3x3_rate(repeats: int = 5) -> float:
    """Best model-GFLOP/s of a 3x3 convolution (32 x 256 ch x 16^2, channels-last).

    oneDNN may run 3x3 convolutions as Winograd, which does fewer multiplications than the
    direct convolution's count: this rate can exceed the matmul peak; it is the ceiling for
    model FLOPs of this network's convolutions on this machine.
    """
    x = torch.randn(32, 256, 16, 16).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3).contiguous(memory_format=torch.channels_last)
    torch.nn.functional.conv2d(x, w, padding=1)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.nn.functional.conv2d(x, w, padding=1)
        best = min(best, time.perf_counter() - start)
    return 2 * 32 * 16 * 16 * 256 * 256 * 9 / best / 1e9


def _batch(size: int, batch_size: int) -> dict[str, torch.Tensor]:
    return {
        "image": torch.rand(batch_size, 3, size, size) * 2 - 1,
        "posterior": torch.rand(batch_size),
    }


def count_flops(module, batch: dict, batch_idx: int) -> int:
    """FLOPs of one `training_step(batch, batch_idx)` (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        module.training_step(batch, batch_idx)
    return counter.get_total_flops()


def _per_config(size: int, folder: Path) -> tuple:
    module, batch_size = explainer_module(CONFIGS[size], folder)
    n_critic = module.optimisation.n_critic
    batch = _batch(size, batch_size)
    d_and_g = count_flops(module, batch, n_critic - 1)
    d_only = count_flops(module, batch, 0) if n_critic > 1 else 0
    return module, batch, n_critic, d_and_g, d_and_g + (n_critic - 1) * d_only


def _compile_probe(module, batch: dict, steps: int, eager: float) -> None:
    """Time the same D+G step with the generator's encode/decode under torch.compile."""
    generator, step = module.generator, module.optimisation.n_critic - 1
    generator.encode = torch.compile(generator.encode)
    generator.decode = torch.compile(generator.decode)
    start = time.perf_counter()
    module.training_step(batch, step)  # first call compiles
    compile_s = time.perf_counter() - start
    wall, cpu = timed(lambda: module.training_step(batch, step), steps)
    print(f"torch.compile (generator encode/decode): compile {compile_s:.1f} s, then "
          f"{wall:.3f} s/step wall, {cpu:.3f} s CPU (eager {eager:.3f} s wall): "
          f"{eager / wall:.2f}x")  # fmt: skip


def _time_step(module, batch: dict, flops: int, steps: int, rates: tuple[float, float]) -> float:
    """Wall seconds of the D+G step; prints the achieved rate against both ceilings."""
    step = module.optimisation.n_critic - 1
    wall, cpu = timed(lambda: module.training_step(batch, step), steps)
    achieved = flops / wall / 1e9
    print(f"  timed: {wall:.3f} s/step wall, {cpu:.3f} s CPU -> {achieved:.1f} GFLOP/s = "
          f"{100 * achieved / rates[0]:.0f}% of the matmul peak, "
          f"{100 * achieved / rates[1]:.0f}% of the 3x3 conv rate")  # fmt: skip
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="32 px only, 2 steps, no compile")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    sizes = [32] if args.quick else [32, 64, 128]
    steps = 2 if args.quick else args.steps
    torch.set_num_threads(args.threads)
    rates = matmul_peak(), conv3x3_rate()
    print(f"{args.threads} thread(s): fp32 matmul peak {rates[0]:.1f} GFLOP/s (2048^2, best of "
          f"5); 3x3 conv {rates[1]:.1f} model-GFLOP/s")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            module, batch, n_critic, d_and_g, iteration = _per_config(size, Path(folder))
            print(f"{size} px ({CONFIGS[size]}): D+G step {d_and_g / 1e9:.2f} GFLOP, "
                  f"iteration (n_critic {n_critic}) {iteration / 1e9:.2f} GFLOP")  # fmt: skip
            if size != 32:
                continue  # 64/128 px configs are GPU configs: counted, not timed on the CPU
            wall = _time_step(module, batch, d_and_g, steps, rates)
            if not (args.quick or args.no_compile):
                _compile_probe(module, batch, steps, wall)


if __name__ == "__main__":
    main()
