from pathlib import Path

import pytest

from cfgen.commands import COMMANDS, builtin_config, load_command, resolve_config_args
from cfgen.errors import ConfigError
from cfgen.pipeline import parse_config

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_CONFIGS = sorted((REPO_ROOT / "configs").rglob("*.yaml"))


def test_every_command_of_the_table_loads():
    for name in COMMANDS:
        assert callable(load_command(name))
    with pytest.raises(ConfigError, match=r"unknown cfgen command 'trian'; choose from \["):
        load_command("trian")


@pytest.mark.parametrize("path", REPO_CONFIGS, ids=lambda path: path.name)
def test_every_config_of_the_repository_is_built_in(path):
    name = path.relative_to(REPO_ROOT).as_posix()
    assert builtin_config(name).read_bytes() == path.read_bytes()


def test_config_args_outside_the_checkout_read_the_built_in_copy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demo = "configs/pipeline/demo.yaml"
    argv = ["fit", "--config", demo, f"--config={demo}", "--out", demo, "--config", "x.yaml"]
    resolved = resolve_config_args(argv)
    builtin = str(builtin_config(demo))
    # Only config files are looked up; a missing one stays as typed, for its command to name.
    assert resolved == [
        "fit",
        "--config",
        builtin,
        f"--config={builtin}",
        "--out",
        demo,
        *argv[-2:],
    ]
    assert parse_config(["--quick"]).out == "runs/quick"  # demo.yaml + quick.yaml found


def test_a_config_in_the_working_folder_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "configs" / "pipeline" / "demo.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("out: runs/mine\n")
    assert resolve_config_args(["--config", "configs/pipeline/demo.yaml"])[1] == (
        "configs/pipeline/demo.yaml"
    )
    assert parse_config([]).out == "runs/mine"
