"""Catalogue cases of the configuration (options, YAML files, trainer and model settings), of
the command line (commands, output folders other than generate's) and of the environment
(GPU, disk, weights in the torch cache)."""

import errno
import os
from collections.abc import Callable
from pathlib import Path

import torch

from cfgen.evaluate.closeness import build_lpips
from cfgen.evaluate.realism import inception_features
from cfgen.folder_lock import FolderLock
from cfgen.io import atomic_write_json
from tests.catalogue.workspace import (
    Case,
    Workspace,
    below_a_file,
    evaluate_latent_shift,
    explainer,
    explainer_fit,
    fit,
    generate,
    split_folder,
    without_gpu,
)


def counterfactual_of_grey(ws: Workspace, target: float | torch.Tensor) -> torch.Tensor:
    """The workspace explainer's counterfactual of two grey queries at `target`."""
    return explainer(ws).counterfactual(torch.zeros(2, 3, 16, 16), target)


def disk_full_on_write(ws: Workspace) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    ws.monkeypatch.setattr(os, "fsync", no_space)
    atomic_write_json(ws.run / "results.json", {"new": "results"})


def no_torch_cache(ws: Workspace, load: Callable[[], object]) -> object:
    ws.monkeypatch.setenv("TORCH_HOME", str(ws.root / "empty_torch_cache"))
    return load()


def locked(ws: Workspace, name: str, command: str) -> Path:
    """The folder `name`, locked by a live run of `command` until the case ends (the lock is
    this process's own, taken through another open file: two real processes race in
    tests/test_faults.py)."""
    folder = ws.root / name
    folder.mkdir()
    ws.cleanup.enter_context(FolderLock(folder, command))
    return folder


def yaml_with_typo(ws: Workspace) -> Path:
    path = ws.root / "typo.yaml"
    path.write_text("model:\n  arhc: small_cnn\n")
    return path


def yaml_with(ws: Workspace, text: str) -> Path:
    path = ws.root / "settings.yaml"
    path.write_text(text)
    return path


COMMAND_CASES = [
    # config
    Case("config-typo-command-line",
         argv=lambda ws: fit(ws, "--model.arhc", "small_cnn")),
    Case("config-typo-yaml",
         argv=lambda ws: fit(ws, "--config", yaml_with_typo(ws))),
    Case("config-file-missing",
         argv=lambda ws: fit(ws, "--config", ws.root / "absent.yaml")),
    Case("config-wrong-type",
         argv=lambda ws: fit(ws, "--model.lr", "fast")),
    Case("config-unknown-source",
         argv=lambda ws: fit(ws, "--data.source", "imagenet")),
    Case("config-unknown-target",
         argv=lambda ws: fit(ws, "--data.target", "Smiles")),
    Case("config-batch-size-zero",
         argv=lambda ws: fit(ws, "--data.batch_size", "0")),
    Case("config-target-not-the-classifiers",
         argv=lambda ws: explainer_fit(ws, "--data.target", "Eyeglasses")),
    Case("config-bad-channels",
         argv=lambda ws: fit(ws, "--data.channels", "2")),
    Case("config-demo-data-without-target",
         argv=lambda ws: ["demo", "--data", split_folder(ws), "--out", ws.root / "demo"]),
    Case("config-demo-data-not-a-folder",
         argv=lambda ws: ["demo", "--data", ws.root, "--target", "Smiling"]),
    Case("config-unknown-arch",
         argv=lambda ws: fit(ws, "--model.arch", "vgg")),
    Case("config-folder-without-root",
         argv=lambda ws: fit(ws, "--data.source", "folder")),
    Case("config-unknown-baseline",
         argv=lambda ws: ["evaluate", "--explainer", ws.explainer, "--out", ws.root / "eval",
                          "--baselines", "[nope]", "--n_queries", "4", "--n_real", "0"]),
    Case("config-latent-shift-without-autoencoder",
         argv=lambda ws: evaluate_latent_shift(ws, "{}")),
    Case("config-unknown-accelerator-yaml",
         argv=lambda ws: fit(ws, "--config", yaml_with(ws, "trainer:\n  accelerator: cpuu\n"))),
    Case("config-unknown-strategy",
         argv=lambda ws: fit(ws, "--trainer.strategy", "ddpp")),
    Case("config-lr-not-positive",
         argv=lambda ws: fit(ws, "--model.lr", "0")),
    Case("config-num-workers-negative",
         argv=lambda ws: fit(ws, "--data.num_workers", "-1")),
    Case("config-image-size-zero",
         argv=lambda ws: fit(ws, "--data.image_size", "0")),
    Case("config-image-size-too-small",
         argv=lambda ws: fit(ws, "--data.image_size", "8")),
    Case("config-callback-value",
         argv=lambda ws: explainer_fit(ws, "--monitor.every_n_steps", "0")),
    Case("config-explainer-lr-not-positive",
         argv=lambda ws: explainer_fit(ws, "--model.optimisation.lr_generator", "-1")),
    Case("config-explainer-beta-out-of-range",
         argv=lambda ws: explainer_fit(ws, "--model.optimisation.beta2", "1.5")),
    Case("config-target-out-of-range",
         call=lambda ws: counterfactual_of_grey(ws, torch.tensor([0.5, 1.5]))),
    Case("config-target-nan",
         call=lambda ws: counterfactual_of_grey(ws, float("nan"))),
    # command line
    Case("cli-unknown-command", argv=lambda ws: ["trian"]),
    Case("cli-output-folder-not-empty",
         argv=lambda ws: ["generate", "--checkpoint", ws.explainer, "--input", "synthetic:test",
                          "--out", ws.run]),
    Case("cli-unknown-option",
         argv=lambda ws: generate(ws, "synthetic:test", "--bogus")),
    Case("cli-data-synth-folder-not-empty",
         argv=lambda ws: ["data", "synth", "--out", ws.run, "--n", "4", "--size", "16"]),
    Case("cli-data-synth-concurrent-run",
         argv=lambda ws: ["data", "synth", "--out", locked(ws, "faces", "cfgen data synth"),
                          "--n", "4", "--size", "16"]),
    Case("cli-evaluate-out-below-a-file",
         argv=lambda ws: ["evaluate", "--explainer", ws.explainer, "--out", below_a_file(ws),
                          "--baselines", "[]", "--adversarial", "[]", "--n_queries", "2",
                          "--n_real", "0", "--logger", "none"]),
    Case("cli-evaluate-concurrent-run",
         argv=lambda ws: ["evaluate", "--explainer", ws.explainer, "--out",
                          locked(ws, "eval", "cfgen evaluate"), "--baselines", "[]",
                          "--adversarial", "[]", "--n_queries", "2", "--n_real", "0",
                          "--logger", "none"]),
    # environment
    Case("env-gpu-absent",
         argv=lambda ws: fit(without_gpu(ws), "--trainer.accelerator", "gpu")),
    Case("env-disk-full", call=disk_full_on_write),
    Case("env-lpips-weights-missing",
         call=lambda ws: no_torch_cache(ws, build_lpips)),
    Case("env-inception-weights-missing",
         call=lambda ws: no_torch_cache(ws, inception_features)),
    Case("env-device-absent",
         argv=lambda ws: generate(without_gpu(ws), "synthetic:test", "--device", "cuda")),
    Case("config-unknown-device",
         argv=lambda ws: generate(ws, "synthetic:test", "--device", "cpuu")),
]  # fmt: skip
