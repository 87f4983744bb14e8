"""Command lines of tiny training runs (16 px synthetic faces, a few steps): seconds on a CPU.

Shared by the reliability tests (faults, determinism).
"""

from pathlib import Path

from tests.model_files import IMAGE_SIZE, N_BINS


def tiny_classifier_args(run_dir: Path, max_steps: int) -> list[str]:
    """`cfgen classifier fit` on 16 px synthetic faces: 4 steps per epoch, last.ckpt each epoch."""
    return [
        "fit",
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.max_steps", str(max_steps),
        "--trainer.max_epochs", "-1",
        "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--logger", "csv",
        "--data.image_size", "16",
        "--data.n_train", "64", "--data.n_val", "16", "--data.n_test", "16",
        "--data.batch_size", "16",
    ]  # fmt: skip


def tiny_explainer_args(run_dir: Path, classifier: Path, max_steps: int) -> list[str]:
    """`cfgen explainer fit` on 16 px synthetic faces with 8-wide networks: seconds on a CPU."""
    return [
        "fit",
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.max_steps", str(max_steps),
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--logger", "none",
        "--model.classifier", str(classifier),
        "--model.n_bins", str(N_BINS),
        "--model.generator.width", "8", "--model.generator.max_width", "16",
        "--model.discriminator.width", "8", "--model.discriminator.max_width", "16",
        "--data.image_size", str(IMAGE_SIZE), "--data.batch_size", "8",
        "--data.n_train", "64", "--data.n_val", "16", "--data.n_test", "16",
        "--data.steps_per_epoch", "2",
        "--monitor.every_n_steps", "2", "--monitor.n_queries", "8",
    ]  # fmt: skip
