#!/usr/bin/env bash
# The explainer's generator options on a GPU with the CelebA 64 px config's networks (issue 10
# §3: "the GPU configs get the same options"). CelebA is not on the machine, so the black box,
# the judge and the factor oracle are trained on the synthetic world at 64 px, then
# `bench_ablation.py` trains the official generator and the CPU default
# (`blend_low2_area01`) from `configs/explainer/celeba_smile_64.yaml` for the same steps and
# seed and scores both on the same held-out faces.
#
#   OUT_DIR=runs/gpu64 STEPS=2000 benchmarks/gpu_ablation.sh
#
# FIT_ARGS is appended to the three classifier/oracle fits (a smoke test on the CPU:
# FIT_ARGS="--trainer.max_epochs 1 --trainer.limit_train_batches 2" STEPS=2 N_QUERIES=8).
set -euo pipefail
out=${OUT_DIR:-runs/gpu64}
steps=${STEPS:-2000}
py=${PYTHON:-python3}
n_queries=${N_QUERIES:-500}
threads=${THREADS:-$(nproc)}
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
read -r -a fit_args <<<"${FIT_ARGS:-}"

fit() {
    local seconds=$SECONDS
    "$py" -m cfgen.cli "$@" --data.image_size 64 --logger csv \
        --trainer.enable_progress_bar false "${fit_args[@]}"
    echo "$1 $4: $((SECONDS - seconds)) s"
}

fit classifier fit --config configs/classifier/synthetic_smile.yaml \
    --trainer.default_root_dir "$out/classifier"
fit classifier fit --config configs/classifier/synthetic_smile_judge.yaml \
    --trainer.default_root_dir "$out/judge"
fit oracle fit --config configs/oracle/synthetic.yaml --trainer.default_root_dir "$out/oracle"

"$py" benchmarks/bench_ablation.py --config configs/explainer/celeba_smile_64.yaml \
    --overrides "--data.source synthetic --data.num_workers 4 --monitor.every_n_steps 500" \
    --classifier "$out/classifier/classifier.pt" --judge "$out/judge/classifier.pt" \
    --oracle "$out/oracle/oracle.pt" --generator_steps "$steps" --seed 0 \
    --n_queries "$n_queries" --n_real 2000 --threads "$threads" \
    --rows official blend_low2_area01 --out "$out/ablation"
