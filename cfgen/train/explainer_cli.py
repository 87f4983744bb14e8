"""`cfgen explainer fit|validate`: the LightningCLI of the explainer (`ExplainerModule`).

    cfgen explainer fit --config configs/explainer/synthetic_smile.yaml
    cfgen explainer fit --config configs/explainer/synthetic_smile.yaml --ckpt_path last
    cfgen explainer validate --config configs/explainer/synthetic_smile.yaml \
        --ckpt_path runs/explainer/synthetic_smile/checkpoints/best.ckpt

On top of `CfgenCLI`: `--generator_steps N` (the run's length in generator steps), the monitor
(`--monitor.every_n_steps`, `--monitor.n_queries`: Lightning's validation runs every that many
generator steps on that many validation images), `checkpoints/best.ckpt` (a `ModelCheckpoint` on
`--best.monitor`, default `val/compat_mae`), and the discriminator-collapse stop.
"""

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser

from cfgen.errors import ConfigError
from cfgen.train.callbacks import ExplainerMonitor
from cfgen.train.collapse import DiscriminatorCollapse
from cfgen.train.explainer import DEFAULT_CLASSIFIER, ExplainerModule
from cfgen.train.explainer_checkpoint import BUNDLE_NAME
from cfgen.train.explainer_data import ExplainerDataModule
from cfgen.train.explainer_steps import optimizer_steps
from cfgen.train.lightning_cli import CfgenCLI, run_cli


class ExplainerFromFiles(ExplainerModule):
    """The explainer (generator, discriminator) of a classifier file.

    `cfgen.train.explainer.ExplainerModule` with its classifier typed as a file: the command
    line takes no model in memory and runs no import path."""

    def __init__(self, classifier: str = DEFAULT_CLASSIFIER, **options: Any) -> None:
        """
        Args:
            classifier: the classifier file to explain: a cfgen classifier.pt, a TorchScript
                file or a torch.export .pt2.
        """
        super().__init__(classifier, **options)


class ExplainerCLI(CfgenCLI):
    """`CfgenCLI` + `--generator_steps`, the monitor, the best-checkpoint and collapse callbacks;
    the data module gets the model's classifier and bins, validation runs every
    `monitor.every_n_steps` generator steps on `monitor.n_queries` validation images."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument(
            "--generator_steps",
            type=int | None,
            default=None,
            help="length of the run in generator steps (sets trainer.max_steps to "
            "generator_steps x (model.optimisation.n_critic + 1)); give this or "
            "--trainer.max_steps",
        )
        parser.add_lightning_class_args(ExplainerMonitor, "monitor")
        parser.add_lightning_class_args(DiscriminatorCollapse, "collapse")  # --collapse.patience
        # checkpoints/best.ckpt: the best explainer by a validation figure (--best.monitor).
        parser.add_lightning_class_args(ModelCheckpoint, "best")
        parser.set_defaults(
            {"best.monitor": "val/compat_mae", "best.mode": "min", "best.filename": "best"}
        )
        parser.link_arguments(
            "trainer.default_root_dir", "best.dirpath", compute_fn=checkpoint_folder
        )
        parser.link_arguments("model.classifier", "data.classifier")
        parser.link_arguments("model.n_bins", "data.n_bins")
        # The data module resolves them (option, else what the classifier records, else default).
        parser.link_arguments("data.image_size", "model.image_size", apply_on="instantiate")
        parser.link_arguments("data.channels", "model.channels", apply_on="instantiate")
        parser.link_arguments("monitor.n_queries", "data.val_queries")

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = self.subcommand_config()
        trainer = config.trainer
        # A GAN's D step leaves G without gradients: DDP must look for unused parameters.
        if trainer.get("strategy") == "ddp":
            kwargs["strategy"] = "ddp_find_unused_parameters_true"
        n_critic = self.model.optimisation.n_critic
        generator_steps = config.get("generator_steps")
        if generator_steps is not None:
            if trainer.get("max_steps") not in (None, -1):
                raise ConfigError(
                    f"both --generator_steps ({generator_steps}) and --trainer.max_steps "
                    f"({trainer['max_steps']}) set the length of the run; give only one"
                )
            kwargs["max_steps"] = optimizer_steps(generator_steps, n_critic)
        if trainer.get("val_check_interval") is None:
            # Validate every `every_n_steps` generator steps, counted across epochs.
            kwargs["val_check_interval"] = config.monitor.every_n_steps * n_critic
            kwargs["check_val_every_n_epoch"] = None
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:  # one summary per run, not one per process
            return
        monitors = [c for c in self.trainer.callbacks if isinstance(c, ExplainerMonitor)]
        if monitors and monitors[0].history:
            last = monitors[0].history[-1]
            figures = ", ".join(f"{k[4:]} {v:.3f}" for k, v in last.items() if k.startswith("val/"))
            print(f"explainer after {last['step']} generator steps: {figures}")
            warning = not_learned(last)
            if warning:
                print(warning, file=sys.stderr)
        print(f"explainer: {self.run_dir / BUNDLE_NAME}; run directory: {self.run_dir}")


def not_learned(figures: dict[str, float]) -> str | None:
    """A warning when the last validation's strips reach the opposite decision for fewer than
    half of the queries (`val/flip_rate`), None otherwise: an explainer that has not learned to
    exaggerate is exported all the same, and its strips would look like an explanation."""
    flip = figures.get("val/flip_rate")
    if flip is None or flip >= 0.5:
        return None
    identity = figures.get("val/identity_l1", float("nan"))
    return (
        f"warning: the explainer's strips cross the decision for only {flip:.0%} of the "
        f"validation queries (identity L1 {identity:.3f}): it has not learned to exaggerate. "
        "Train longer (--generator_steps), or lower the cycle, identity and embedding weights "
        "against the classifier term (with --model.generator.output blend the official weights "
        "of 100 can keep the mask closed, every strip the query: docs/DESIGN.md, \"The blend's "
        'loss weights").'
    )


def checkpoint_folder(run_dir: str) -> str:
    """Where a run's checkpoints go: `<run_dir>/checkpoints` (next to `last.ckpt`)."""
    return str(Path(run_dir) / "checkpoints")


def cli_main(argv: Sequence[str]) -> int:
    """`cfgen explainer fit|validate --config configs/explainer/synthetic_smile.yaml ...`."""
    return run_cli(
        ExplainerFromFiles,
        ExplainerDataModule,
        argv,
        run_dir="runs/explainer/default",
        cli_class=ExplainerCLI,
    )
