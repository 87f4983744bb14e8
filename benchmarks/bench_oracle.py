"""Train the factor oracle and check it against interventions on the synthetic world.

    .venv/bin/python benchmarks/bench_oracle.py [--oracle runs/oracle/synthetic/oracle.pt]

Without `--oracle` it runs `cfgen oracle fit --config configs/oracle/synthetic.yaml` into a
temporary folder and reports its wall and CPU time. Then, on held-out test faces:

- per-factor MAE of the oracle against the true factors;
- interventions, known by construction: every test face re-rendered with one factor changed
  (glasses toggled, smile set to its opposite end). `factor_drift` must show the changed factor
  moving by about the size of the change and every foreign factor staying near 0;
- FID in the oracle's feature space (the default realism features): two disjoint real sets
  (should be near 0) vs real faces against faces that all wear glasses (clearly larger).
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from cfgen.data.synthetic import SyntheticFaces
from cfgen.evaluate.preservation import factor_drift, foreign_drift, predict
from cfgen.evaluate.realism import domain_features, fid
from cfgen.models.oracle import load_oracle
from cfgen.train.oracle import cli_main

REPO = Path(__file__).resolve().parents[1]


def train(run_dir: Path) -> Path:
    """Run the documented command; print its wall and CPU time."""
    wall, cpu = time.perf_counter(), time.process_time()
    argv = ["fit", "--config", str(REPO / "configs/oracle/synthetic.yaml")]
    argv += ["--trainer.default_root_dir", str(run_dir), "--logger", "csv"]
    argv += ["--trainer.enable_progress_bar", "false"]
    cli_main(argv)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"training (data rendering included): wall {wall:.0f} s, CPU {cpu:.0f} s")
    return run_dir / "oracle.pt"


def intervention_drift(oracle, faces: SyntheticFaces, factor: str, value) -> None:
    """Drift of every factor when `factor` is set to `value` on every face."""
    indices = torch.arange(len(faces))
    changed, _ = faces.render_with(indices, factor, value)
    drift = factor_drift(oracle, changed, faces.images)
    true_change = (faces.factors[:, faces.factor_names.index(factor)] - value).abs().mean()
    summary = foreign_drift(drift, faces.factor_names.index(factor), faces.factor_names)
    worst = max((k for k in summary if k != "mean"), key=summary.get)
    print(
        f"set {factor} -> drift of {factor} {drift[0, faces.factor_names.index(factor)]:.3f} "
        f"(true change {true_change:.3f}); foreign mean {summary['mean']:.4f}, "
        f"largest {worst} {summary[worst]:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oracle", type=Path, default=None, help="an existing oracle.pt")
    parser.add_argument("--n", type=int, default=1000, help="test faces")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as scratch:
        path = args.oracle or train(Path(scratch) / "oracle")
        oracle = load_oracle(path)
        faces = SyntheticFaces(args.n, image_size=32, split="test")
        mae = (predict(oracle, faces.images) - faces.factors).abs().mean(dim=0)
        figures = zip(faces.factor_names, mae.tolist(), strict=True)
        print("test MAE: " + ", ".join(f"{name} {value:.4f}" for name, value in figures))
        glasses = faces.factors[:, faces.factor_names.index("glasses")]
        intervention_drift(oracle, faces, "glasses", 1 - glasses)
        smile = faces.factors[:, faces.factor_names.index("smile")]
        intervention_drift(oracle, faces, "smile", (smile < 0.5).float())
        features, half = domain_features(oracle), args.n // 2
        real_a, real_b = faces.images[:half], faces.images[half:]
        all_glasses, _ = faces.render_with(torch.arange(half, args.n), "glasses", 1.0)
        print(
            f"FID (oracle features): real vs real {fid(real_a, real_b, features):.3f}, "
            f"real vs all wearing glasses {fid(real_a, all_glasses, features):.3f}"
        )


if __name__ == "__main__":
    main()
