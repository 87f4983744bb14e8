import subprocess
import sys

from cfgen import cli
from cfgen.errors import DataError


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f"  {name}" in out


def test_unknown_command_is_a_clear_error(capsys):
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_user_errors_print_one_line_without_traceback(monkeypatch, capsys):
    def failing(argv):
        raise DataError("image x.png is missing; put it back or drop its row")

    module = type(sys)("fake_cfgen_module")
    module.main = failing
    monkeypatch.setitem(sys.modules, "fake_cfgen_module", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("fake_cfgen_module", "main", "a fake"))
    assert cli.main(["fake"]) == 2
    err = capsys.readouterr().err
    assert err == "error: image x.png is missing; put it back or drop its row\n"


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "cfgen.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("usage: cfgen COMMAND")
