import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from cfgen import loggers
from cfgen.loggers import build_logger, finish_logger, sync_command


def test_csv_and_tensorboard_write_straight_into_the_run_directory(tmp_path):
    csv = build_logger("csv", tmp_path / "run")
    assert isinstance(csv, CSVLogger)
    assert Path(csv.log_dir) == tmp_path / "run"
    board = build_logger("tensorboard", tmp_path / "run")
    assert isinstance(board, TensorBoardLogger)
    assert Path(board.log_dir) == tmp_path / "run"


def test_none_means_no_logger(tmp_path):
    assert build_logger("none", tmp_path) is None


def test_disabled_wandb_starts_without_network_and_has_nothing_to_sync(tmp_path):
    # conftest sets WANDB_MODE=disabled, as users can.
    logger = build_logger("wandb", tmp_path / "run")
    assert isinstance(logger, WandbLogger)
    assert finish_logger(logger) is None


@pytest.mark.parametrize(
    ("mode", "api_key", "expected"),
    [(None, None, "offline"), (None, "key", "online"), ("disabled", "key", "disabled")],
)
def test_wandb_is_offline_unless_a_key_or_an_explicit_mode_says_otherwise(
    monkeypatch, mode, api_key, expected
):
    for name, value in (("WANDB_MODE", mode), ("WANDB_API_KEY", api_key)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert loggers._wandb_mode() == expected


def test_wandb_that_cannot_start_falls_back_to_csv_with_a_warning(tmp_path, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("wandb service did not start")

    monkeypatch.setattr(loggers, "WandbLogger", broken)
    with caplog.at_level(logging.WARNING, logger=loggers.__name__):
        logger = build_logger("wandb", tmp_path / "run")
    assert isinstance(logger, CSVLogger)
    assert "wandb could not start (RuntimeError: wandb service did not start)" in caplog.text
    assert str(tmp_path / "run") in caplog.text


def test_offline_run_prints_the_exact_sync_command(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(save_dir=str(tmp_path), mode="offline")
    run_folder = tmp_path / "wandb" / "offline-run-20260101_000000-abc"
    # A stand-in run object: starting a real offline run would spawn wandb's service.
    logger._experiment = SimpleNamespace(dir=str(run_folder / "files"))
    assert sync_command(logger) == f"wandb sync {run_folder}"
    assert sync_command(CSVLogger(str(tmp_path))) is None
