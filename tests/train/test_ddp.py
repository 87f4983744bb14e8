"""Training under DDP: the sampler's shards, and a real 2-process CPU run (gloo) of the CLI."""

import os
import subprocess
import sys

import pytest
import torch
from pytorch_lightning.trainer.connectors.data_connector import _get_distributed_sampler

from cfgen.io import load_bundle, safe_torch_load
from cfgen.train.explainer_data import ExplainerDataModule
from tests.helpers import write_classifier_bundle
from tests.train.test_explainer import TINY


def tiny_data(**kwargs) -> ExplainerDataModule:
    data = ExplainerDataModule(
        image_size=16, n_train=40, n_val=4, n_test=4, batch_size=4, steps_per_epoch=6, **kwargs
    )
    data.setup("fit")
    # Known posteriors instead of a classifier: every bin of 10 holds 4 images.
    data.train_posteriors = (torch.arange(40) // 4).float() / 10 + 0.05
    return data


def indices(sampler) -> list[int]:
    return [int(i) for i in sampler]


def test_distributed_shards_split_the_single_process_draw():
    """What Lightning does to the bin-balanced sampler under DDP: each rank keeps a disjoint
    share of one draw (same weights, same seed everywhere), and together they are that draw."""
    draw = indices(tiny_data(balance="cap", max_per_bin=2).train_dataloader().sampler)
    shards = []
    for rank in range(2):
        loader = tiny_data(balance="cap", max_per_bin=2).train_dataloader()
        sampler = _get_distributed_sampler(loader, True, 0, num_replicas=2, rank=rank)
        sampler.set_epoch(0)
        shards.append(indices(sampler))
    assert [len(shard) for shard in shards] == [12, 12]
    assert sorted(shards[0] + shards[1]) == sorted(draw)
    kept = tiny_data(balance="cap", max_per_bin=2).sample_weights() > 0
    assert all(bool(kept[i]) for i in draw)  # only images the cap kept are drawn


def run_cli(*argv: str, wandb: str = "disabled") -> subprocess.CompletedProcess:
    """A real command line: Lightning's DDP launcher re-runs `python -m cfgen.cli ...` per rank.

    The exit code is rank 0's: a failing rank 1 only shows as a traceback in stderr.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": wandb}
    command = [sys.executable, "-m", "cfgen.cli", *argv]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]


@pytest.mark.slow
def test_explainer_trains_on_two_processes_and_rank_zero_writes_the_run(tmp_path):
    classifier = write_classifier_bundle(tmp_path / "classifier.pt", size=16)
    run = tmp_path / "run"
    argv = ["explainer", "fit", *TINY, *DDP, "--trainer.default_root_dir", str(run)]
    argv += ["--model.classifier", str(classifier), "--trainer.max_steps", "4"]
    argv += ["--data.steps_per_epoch", "4"]  # 2 steps per process and epoch
    argv += ["--trainer.callbacks+=tests.helpers.DumpWeightsPerRank", "--logger", "wandb"]
    result = run_cli(*argv, wandb="offline")  # rank 1 has no wandb run of its own to finish
    assert result.stdout.count("explainer after") == 1  # one summary, from rank 0
    checkpoint = safe_torch_load(run / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 4
    bundle = load_bundle(run / "explainer.pt", "explainer")
    weights = checkpoint["state_dict"]
    for name, value in bundle["state_dict"].items():  # the export is the EMA generator
        torch.testing.assert_close(value, weights[f"ema.module.{name}"])
    assert (run / "monitor.json").is_file()
    # Weights and the whole EMA (batch-norm statistics included) agree on both processes; the
    # live networks' batch-norm statistics are each process's own last batch (as in any DDP).
    rank0, rank1 = (safe_torch_load(run / f"weights_rank{rank}.pt") for rank in range(2))
    assert rank0.keys() == rank1.keys() and any(k.startswith("ema.module.") for k in rank0)
    for name, value in rank0.items():
        if name.startswith("ema.") or ".running_" not in name:
            torch.testing.assert_close(value, rank1[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_classifier_trains_on_two_processes_and_rank_zero_exports(tmp_path):
    run = tmp_path / "run"
    argv = ["classifier", "fit", *DDP, "--trainer.default_root_dir", str(run)]
    argv += ["--logger", "csv", "--trainer.max_steps", "2"]
    argv += ["--trainer.enable_progress_bar", "false"]
    argv += ["--data.image_size", "16", "--data.n_train", "32", "--data.n_val", "16"]
    argv += ["--data.n_test", "16", "--data.batch_size", "8"]
    result = run_cli(*argv)
    assert result.stdout.count("classifier target 'Smiling': test auc") == 1  # rank 0 only
    checkpoint = safe_torch_load(run / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 2
    bundle = load_bundle(run / "classifier.pt", "classifier")
    for name, value in bundle["state_dict"].items():
        torch.testing.assert_close(value, checkpoint["state_dict"][f"network.{name}"])
