"""The Lightning command line shared by every training command (classifier, oracle, explainer).

    cfgen classifier fit --config configs/classifier/synthetic_smile.yaml --trainer.max_epochs 3
    cfgen classifier test --config ... --ckpt_path runs/classifier/.../checkpoints/last.ckpt
    cfgen classifier fit --print_config      # the fully resolved config, every default included

LightningCLI conventions: sub-commands `fit|validate|test|predict`, `--config FILE` (repeatable),
dotted overrides (`--model.lr 3e-4`, `--data.batch_size 64`). Typed `__init__` arguments are the
single source of truth; YAML only overrides them and unknown keys fail with a `ConfigError` that
names the key. On top of Lightning's defaults, every run:

- is seeded (`seed_everything: 0` unless set) and runs on the CPU unless `trainer.accelerator` says
  otherwise;
- writes into one run directory, `trainer.default_root_dir`: `config.yaml` (the resolved config,
  rewritten on resume), `checkpoints/last.ckpt` (at every epoch end, and when SIGTERM or SIGINT
  stop training: `cfgen.train.interrupt`; resume with `--ckpt_path last`), logger files;
- logs with the logger named by the top-level `logger:` key (`cfgen.loggers`).

A training module plugs in with `run_cli(ModelClass, DataModuleClass, argv, run_dir=...)` in its
`cli_main` (the function `cfgen.commands` names); a CLI subclass can add `after_fit` /
`after_test` hooks (see `cfgen.train.classifier_cli`).
"""

import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
from jsonargparse import ArgumentError, Namespace
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.utilities.exceptions import SIGTERMException

from cfgen.errors import CfgenError, ConfigError, RunInterrupted
from cfgen.io import atomic_write_text, safe_torch_load
from cfgen.loggers import LOGGER_NAMES, build_logger, finish_logger
from cfgen.train.interrupt import RunCheckpoint, sigint_stops_training
from cfgen.train.resume_checks import (
    changes,
    flat,
    require_same_settings,
    require_training_checkpoint,
)

CONFIG_FILENAME = "config.yaml"
_SUBCOMMANDS = ("fit", "validate", "test", "predict")
# `--ckpt_path` words Lightning resolves itself (`last` = checkpoints/last.ckpt of this run).
_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


class RunDirConfig(SaveConfigCallback):
    """Saves the resolved config as `<default_root_dir>/config.yaml` (not in a logger folder).

    Lightning saves in `setup`, before the model and data are set up; saving once they are
    means a config that fails there (unknown target, arch, data root) leaves the config of the
    run already in the folder untouched.
    """

    def __init__(self, parser: LightningArgumentParser, config: Any, **kwargs: Any) -> None:
        kwargs.update(save_to_log_dir=False, overwrite=True)
        super().__init__(parser, config, **kwargs)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Nothing yet: see `on_fit_start`."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        path = Path(trainer.default_root_dir) / self.config_filename
        atomic_write_text(path, self.parser.dump(self.config, skip_none=False))

    def _save_once(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and not self.already_saved:
            self.save_config(trainer, pl_module, str(trainer.state.fn))
            self.already_saved = True

    on_fit_start = on_validation_start = on_test_start = on_predict_start = _save_once


def trainer_defaults(run_dir: str, **overrides: Any) -> dict[str, Any]:
    """Trainer defaults for cfgen runs; YAML and the command line override them."""
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "default_root_dir": run_dir,
        "log_every_n_steps": 10,
    }
    return {**defaults, **overrides}


class CfgenCLI(LightningCLI):
    """LightningCLI with cfgen's defaults, run directory, loggers and clear config errors."""

    def __init__(
        self,
        model_class: type[pl.LightningModule],
        datamodule_class: type[pl.LightningDataModule] | None,
        args: Sequence[str],
        run_dir: str = "runs/default",
        trainer_overrides: dict[str, Any] | None = None,
    ) -> None:
        # Parse errors raise instead of calling sys.exit, so they become a ConfigError.
        no_exit = {"exit_on_error": False}
        self.checkpoint: RunCheckpoint | None = None
        with sigint_stops_training(lambda: self.checkpoint):
            try:
                super().__init__(
                    model_class,
                    datamodule_class,
                    save_config_callback=RunDirConfig,
                    trainer_defaults=trainer_defaults(run_dir, **(trainer_overrides or {})),
                    seed_everything_default=0,
                    parser_kwargs={**no_exit, **{name: no_exit for name in _SUBCOMMANDS}},
                    args=list(args),
                )
            except SIGTERMException as stop:
                raise self._interrupted() from stop
            except RuntimeError as error:
                if "Error(s) in loading state_dict" not in str(error):
                    raise
                raise self._checkpoint_mismatch(error) from error

    def _interrupted(self) -> RunInterrupted:
        """What stopped the run, where its checkpoint is, and how to resume."""
        checkpoint = self.checkpoint
        name = checkpoint.signal_name if checkpoint else "SIGTERM"
        if checkpoint and checkpoint.stopped_at:
            path, step = checkpoint.stopped_at
            message = f"{name} stopped training at step {step}; its checkpoint is {path}"
        else:
            message = f"{name} stopped the run outside training (no training step was lost)"
        exit_code = 128 + signal.Signals[name].value
        resumable = self.checkpoint and any(Path(self.checkpoint.dirpath).glob("*last*.ckpt"))
        return RunInterrupted(message, ("--ckpt_path", "last") if resumable else (), exit_code)

    def _checkpoint_mismatch(self, error: RuntimeError) -> ConfigError:
        """The checkpoint's weights do not fit the configured model: which settings differ."""
        path = self.trainer.ckpt_path or self.subcommand_config().get("ckpt_path")
        saved = safe_torch_load(path) if path and Path(path).is_file() else {}
        sections = [
            ("model", flat(saved.get("hyper_parameters", {})), flat(self.model.hparams)),
            ("data", flat(saved.get("datamodule_hyper_parameters", {})), self._data_hparams()),
        ]
        changed = [
            line for section, before, now in sections for line in changes(section, before, now)
        ]
        _, saved_model, model = sections[0]
        first = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        first = first if len(first) <= 120 else first[:120] + "…"
        if set(saved_model) != set(model) or not changed:  # another kind of model
            differs = f"it holds the weights of another model ({first})"
        else:
            differs = "; ".join(changed)
        return ConfigError(
            f"cannot resume from {path}: the checkpoint's architecture differs from the config: "
            f"{differs}. Resume with the settings it was trained with, or start a new run in "
            "another --trainer.default_root_dir without --ckpt_path"
        )

    def _data_hparams(self) -> dict:
        return flat(getattr(self.datamodule, "hparams", {}) or {})

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--logger",
            type=Literal[LOGGER_NAMES],  # type: ignore[valid-type]
            default="wandb",
            help="experiment logger (wandb runs offline without WANDB_API_KEY)",
        )
        parser.add_argument("--project", type=str, default="cfgen", help="wandb project name")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # `args` is always explicit here; Lightning would warn because sys.argv also has words
        # (`cfgen classifier fit ...`).
        self.config = parser.parse_args(args)
        section = self.subcommand_config()
        # Lightning unpickles `--ckpt_path` to read its hyper-parameters: check the file first,
        # so a missing, corrupt or code-carrying one gets a clear CheckpointError.
        path = section.get("ckpt_path")
        if path and str(path).split(":")[0] not in _CKPT_KEYWORDS:
            loaded = safe_torch_load(path)
            require_training_checkpoint(path, loaded, self.model_class)
            require_same_settings(path, loaded, section.get("model"), self.config.get("subcommand"))
        if path == "last":
            self._require_last_checkpoint(section)
        # `--ckpt_path` may come from anyone: never unpickle code, whatever the environment
        # (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD) or `--weights_only false` say.
        if "weights_only" in section:
            section["weights_only"] = True

    @staticmethod
    def _require_last_checkpoint(section: Namespace) -> None:
        """`--ckpt_path last` with nothing to resume from: Lightning would warn and start from
        scratch (in a folder the user believes holds the run to go on with)."""
        folder = Path(section.trainer.default_root_dir) / "checkpoints"
        if not any(folder.glob("*last*.ckpt")):
            raise ConfigError(
                f"--ckpt_path last: there is no checkpoint to resume from in {folder}; check "
                "--trainer.default_root_dir (the run folder), or leave out --ckpt_path to start "
                "a new run"
            )

    def subcommand_config(self) -> Namespace:
        """The parsed config of the subcommand being run (`fit`, ...), or the whole config."""
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    @property
    def run_dir(self) -> Path:
        """The run directory: `trainer.default_root_dir`."""
        return Path(self.trainer.default_root_dir)

    def instantiate_classes(self) -> None:
        """Build model, data, callbacks and trainer; a constructor that refuses its arguments
        with a plain ValueError (a library's, or cfgen's own checks) is a configuration error."""
        try:
            super().instantiate_classes()
        except CfgenError:
            raise
        except ValueError as error:
            raise ConfigError(
                f"invalid configuration: {error}. Run with --help for the accepted values, or "
                "--print_config to see the resolved config"
            ) from error

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = self.subcommand_config()
        run_dir = Path(config.trainer.default_root_dir)
        # `last.ckpt` at a fixed place, whatever logger is used, so resuming is one flag.
        self.checkpoint = RunCheckpoint(run_dir / "checkpoints")
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": [self.checkpoint]}
        if config.trainer.get("logger") in (None, True):
            # `logger: none` is False for Lightning: None would bring its default TensorBoard.
            logger = build_logger(
                config.logger, run_dir, project=config.project, run_name=run_dir.name
            )
            kwargs["logger"] = logger or False
        try:
            return super().instantiate_trainer(**kwargs)
        except (ValueError, MisconfigurationException) as error:  # accelerator, strategy, ...
            raise ConfigError(
                f"invalid trainer setting: {error}. Check --trainer.accelerator / "
                "--trainer.devices (the default, cpu, always works)"
            ) from error


def run_cli(
    model_class: type[pl.LightningModule],
    datamodule_class: type[pl.LightningDataModule] | None,
    argv: Sequence[str],
    run_dir: str = "runs/default",
    cli_class: type[CfgenCLI] = CfgenCLI,
    trainer_overrides: dict[str, Any] | None = None,
) -> int:
    """Run a training command; returns the exit code (0 also for `--help`, `--print_config`).

    Raises `ConfigError` for an invalid command line or config (unknown key, wrong type, missing
    file), naming the problem.
    """
    try:
        with warnings.catch_warnings():
            # Lightning's advice to raise num_workers does not apply: in-memory data sets.
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            cli = cli_class(model_class, datamodule_class, argv, run_dir, trainer_overrides)
    except ArgumentError as error:
        raise ConfigError(
            f"invalid configuration: {str(error).rstrip('.')}. Run with --help for the accepted "
            "keys, or --print_config to see the resolved config"
        ) from error
    except SystemExit as exit_request:  # --help and --print_config end here
        return int(exit_request.code or 0)
    except MisconfigurationException as error:  # e.g. `--trainer.accelerator gpu` on a CPU box
        raise ConfigError(
            f"invalid trainer setting: {error}. Check --trainer.accelerator / --trainer.devices "
            "(the default, cpu, always works)"
        ) from error
    if not cli.trainer.is_global_zero:  # other DDP processes hold no logger run of their own
        return 0
    hint = finish_logger(cli.trainer.logger)
    if hint:
        print(f"wandb run saved offline; upload it with: {hint}", file=sys.stderr)
    return 0


def training_data(model: Any) -> dict | None:
    """The record of what a LightningModule was trained on (its trainer's data module's
    `training_record`), for its bundle; None outside a trainer or without such a record."""
    trainer = getattr(model, "_trainer", None)
    module = getattr(trainer, "datamodule", None)
    record = getattr(module, "training_record", None)
    return record() if callable(record) else None
