import logging
from pathlib import Path

import pytest
import torch

from cfgen.data.columns import MAX_CLASSES, label_table, read_csv, target_column
from cfgen.errors import DataError

WHERE = Path("data/attributes.csv")
HEADER = ["file", "id", "digit", "smiling", "note"]


def _rows(table: list[list]) -> list[tuple[int, dict[str, str]]]:
    return [
        (line, dict(zip(HEADER, map(str, row), strict=True))) for line, row in enumerate(table, 2)
    ]


ROWS = _rows(
    [
        ["a.png", 7, 10, 1, "x"],
        ["b.png", 8, 2, -1, "y, z"],
        ["c.png", 9, 10, 0, "x"],
        ["d.png", 3, 0, 1, ""],
    ]
)


def test_by_default_binary_columns_are_used_and_the_others_named_in_one_note(caplog):
    with caplog.at_level(logging.WARNING, logger="cfgen.data.columns"):
        table = label_table(HEADER, ROWS, WHERE, skip=["file"])
    assert table.names == ["smiling"] and table.classes == {}
    torch.testing.assert_close(table.labels, torch.tensor([[1.0], [0.0], [0.0], [1.0]]))
    assert table.left_out == ["id", "digit", "note"]
    [note] = [record.getMessage() for record in caplog.records]
    assert "\n" not in note and "left out ['id', 'digit', 'note']" in note and str(WHERE) in note


def test_a_listed_multi_class_column_becomes_one_attribute_per_value_in_numeric_order():
    table = label_table(HEADER, ROWS, WHERE, attributes=["digit", "smiling"])
    assert table.names == ["digit=0", "digit=2", "digit=10", "smiling"]
    assert table.classes == {"digit": ["digit=0", "digit=2", "digit=10"]}
    expected = [[0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]]
    torch.testing.assert_close(table.labels, torch.tensor(expected, dtype=torch.float32))
    assert table.left_out == ["file", "id", "note"]


def test_the_targets_column_is_used_by_default_too():
    table = label_table(HEADER, ROWS, WHERE, required=["digit"], skip=["file"])
    assert table.names == ["digit=0", "digit=2", "digit=10", "smiling"]
    assert table.left_out == ["id", "note"]


def test_text_classes_sort_after_numbers_and_blank_labels_are_refused():
    table = label_table(HEADER, ROWS[:3], WHERE, attributes=["note"])
    assert table.names == ["note=x", "note=y, z"]
    with pytest.raises(DataError, match=r"line 5, column 'note': blank label"):
        label_table(HEADER, ROWS, WHERE, attributes=["note"])


def test_a_column_with_too_many_values_is_refused_when_listed():
    rows = _rows([[f"{i}.png", i, 0, 1, "x"] for i in range(MAX_CLASSES + 1)])
    with pytest.raises(DataError, match=f"'id' holds {MAX_CLASSES + 1} distinct values"):
        label_table(HEADER, rows, WHERE, attributes=["id"])


def test_a_binary_column_is_multi_class_when_a_class_of_it_is_the_target():
    table = label_table(HEADER, ROWS, WHERE, required=["smiling"], multi_class=["smiling"])
    assert table.classes == {"smiling": ["smiling=-1", "smiling=0", "smiling=1"]}
    assert table.names == ["smiling=-1", "smiling=0", "smiling=1"]


def test_a_target_named_by_its_column_must_be_binary():
    with pytest.raises(
        DataError, match=r"line 2, column 'digit': label '10' is not binary.*digit=10"
    ):
        label_table(HEADER, ROWS, WHERE, required=["digit"], binary=["digit"])


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("smiling", ("smiling", False)),
        ("digit=2", ("digit", True)),
        ("digit=2=3", ("digit", True)),
        ("smiling=1", ("smiling", True)),
        ("age=3", (None, False)),
        ("Smiles", (None, False)),
        (None, (None, False)),
    ],
)
def test_target_column(target, expected):
    assert target_column(target, HEADER) == expected


def test_a_csv_is_read_with_or_without_a_byte_order_mark_and_quoted_commas(tmp_path):
    text = 'file,note,Smiling\n\na.png,"grinning, wide",1\n\nb.png,,0\n'
    expected = (
        ["file", "note", "Smiling"],
        [
            {"file": "a.png", "note": "grinning, wide", "Smiling": "1"},
            {"file": "b.png", "note": "", "Smiling": "0"},
        ],
    )
    for name, encoded in [("plain.csv", text.encode()), ("excel.csv", ("\ufeff" + text).encode())]:
        (tmp_path / name).write_bytes(encoded)
        assert read_csv(tmp_path / name) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,Smiling\na.png,1,0\n", r"line 2: 3 cell\(s\) but the header has 2 columns"),
        ("file,a,b\nx.png,1,0\ny.png,1\n", r"line 3: 2 cell\(s\) but the header has 3 columns"),
        ("file,a,file\nx.png,1,y.png\n", r"the header names column\(s\) \['file'\] more than once"),
        ("file,Smiling\n", "has a header but no rows; add one row per image"),
        ("", "is empty; it needs a header row"),
    ],
)
def test_a_csv_whose_cells_do_not_match_its_columns_is_refused(tmp_path, text, message):
    (tmp_path / "a.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        read_csv(tmp_path / "a.csv")


def test_a_csv_that_is_not_utf8_is_refused_naming_the_byte(tmp_path):
    (tmp_path / "a.csv").write_bytes("file,Lächeln\nx.png,1\n".encode("cp1252"))
    with pytest.raises(DataError, match=r"is not UTF-8 text \(byte 0xe4 at offset 6\); save"):
        read_csv(tmp_path / "a.csv")
