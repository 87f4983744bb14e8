"""The bad-input catalogue (docs/BAD_INPUTS.md): one case per row, same ids as the table.

Each case feeds one bad input through the entry point a user would hit (`cfgen ...` in-process,
or the Python API) and asserts the stable part of the message; a case of an input accepted on
purpose runs it and asserts what cfgen makes of it. Every case runs next to a run folder holding
earlier work (config, last.ckpt, classifier.pt, results.json): after it, every one of those files
must be byte-for-byte intact. The cases are in `tests/catalogue/`, by area.
"""

import re
from pathlib import Path

import pytest

from cfgen.cli import main
from cfgen.errors import CfgenError
from tests.catalogue.command_cases import COMMAND_CASES
from tests.catalogue.data_cases import DATA_CASES
from tests.catalogue.generate_cases import GENERATE_CASES
from tests.catalogue.model_cases import MODEL_CASES
from tests.catalogue.workspace import Case, Workspace, make_workspace

CASES = [*DATA_CASES, *COMMAND_CASES, *MODEL_CASES, *GENERATE_CASES]
ACCEPTED = "(accepted) "


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Workspace:
    ws = make_workspace(tmp_path, monkeypatch)
    with ws.cleanup:
        yield ws


CATALOGUE = Path(__file__).resolve().parents[1] / "docs" / "BAD_INPUTS.md"


def catalogue_rows() -> dict[str, str]:
    """{id: the message cell} of every row of docs/BAD_INPUTS.md's table."""
    rows = {}
    for line in CATALOGUE.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = line.strip()[2:-2].split(" | ")
        assert len(cells) == 5, f"a catalogue row needs 5 cells: {line}"
        rows[cells[0].strip("`")] = cells[-1]
    return rows


ROWS = catalogue_rows()


API_MESSAGE = re.compile(r"(?P<cls>[A-Z]\w*Error): (?P<text>.*)", flags=re.DOTALL)


def expected_pattern(message: str) -> str:
    """The row's message as a regex: literal text, `…` matching any run of characters."""
    return ".*?".join(re.escape(piece) for piece in message.split("…"))


def run_case(case: Case, ws: Workspace, capsys) -> str:
    """Run `case`; return the message the user reads: stderr, or `Class: text` of the error."""
    if case.call is not None:
        with pytest.raises(CfgenError) as caught:
            case.call(ws)
        return f"{type(caught.value).__name__}: {caught.value}"
    argv = [str(arg) for arg in case.argv(ws)]
    try:
        code = main(argv)
    except SystemExit as exit_request:  # argparse usage errors
        code = exit_request.code
    assert code == case.exit_code, capsys.readouterr().err[-2000:]
    return capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_its_message_and_loses_nothing(case, workspace, capsys):
    row = ROWS[case.id]
    before = _snapshot(workspace.run)
    if case.accepted is not None:
        assert row.startswith(ACCEPTED), f"the row of an accepted input says so: {row}"
        case.accepted(workspace)  # asserts what cfgen makes of the input
        assert "Traceback" not in capsys.readouterr().err
    elif case.call is not None:
        # The row names the exception class the API raises; the whole message is the row's.
        message = run_case(case, workspace, capsys)
        api = API_MESSAGE.fullmatch(row)
        assert api, f"the row of a Python-API case starts with its exception class: {row}"
        assert message.startswith(api["cls"] + ": "), message
        assert re.fullmatch(expected_pattern(row), message, flags=re.DOTALL), message
    else:
        # The command prints the row's message as whole line(s) (argparse's or cfgen's usage
        # may come before or after it), and never a traceback.
        message = run_case(case, workspace, capsys)
        assert not API_MESSAGE.fullmatch(row), f"a command's row shows what it prints: {row}"
        pattern = r"(?:\A|\n)" + expected_pattern(row) + r"(?:\n|\Z)"
        assert re.search(pattern, message, flags=re.DOTALL), message
        assert "Traceback" not in message
    assert _snapshot(workspace.run) == before
    assert not (workspace.root / "ran").exists()


def test_the_message_pattern_of_a_row_is_strict():
    # A wildcard stands for any text; every other character of the row must be there.
    pattern = expected_pattern("error: cannot read image …/bad.png; replace the file")
    assert re.fullmatch(pattern, "error: cannot read image /tmp/x/bad.png; replace the file")
    assert not re.fullmatch(pattern, "error: cannot read image /tmp/x/bad.png")
    assert not re.fullmatch(pattern, "error: cannot read image /tmp/x/bad.png; replace a file")


def test_catalogue_has_a_row_per_case_and_enough_rows():
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", CATALOGUE.read_text(), flags=re.MULTILINE)
    assert sorted(rows) == sorted(case.id for case in CASES)
    assert len(rows) == len(ROWS)
    assert len(CASES) >= 25
