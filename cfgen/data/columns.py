"""Attribute CSVs: reading them, which columns are labels, and their text as a 0/1 label matrix.

A CSV is read as UTF-8, with or without the byte-order mark that Excel's "CSV UTF-8" writes.
Whatever would make a column or a row mean something else than it says is refused with the
line at fault: text that is not UTF-8, a header naming one column twice, a row with more or
fewer cells than the header, a header without rows.

A real CSV holds more than binary attributes: ids, ages, free text, multi-class labels. By
default every binary column (1 / 0, or CelebA's 1 / -1) is an attribute and the others are left
out with a one-line note. A column asked for by name (`data.attributes`, or the column of the
target) is used whatever it holds: a binary one as one attribute, any other as a multi-class
label with one 0/1 attribute per value, named `column=value` (`digit=0` ... `digit=9`). So the
dataset contract (labels `(A,)` in {0, 1}) holds for every source, and a classifier can still
train a softmax over a multi-class column's attributes (`LabelTable.classes`).
"""

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch
from torch import Tensor

from cfgen.errors import DataError

log = logging.getLogger(__name__)

# Label spellings accepted as binary: CelebA writes -1 for "absent".
BINARY_VALUES = {"1": 1.0, "0": 0.0, "-1": 0.0, "1.0": 1.0, "0.0": 0.0, "-1.0": 0.0}
MAX_CLASSES = 100  # more distinct values than this is an id, a measurement or free text
CLASS_SEPARATOR = "="

Rows = Sequence[tuple[int, dict[str, str]]]  # (line number in the file, row)


def _table(handle: TextIO, path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of an open CSV, refusing a row whose cells do not match the
    header's columns (blank lines are skipped, as csv.DictReader does)."""
    reader = csv.reader(handle)
    header = [name.strip() for name in next(reader, [])]
    rows = []
    for cells in reader:
        if not cells:
            continue
        if len(cells) != len(header):
            raise DataError(
                f"{path}, line {reader.line_num}: {len(cells)} cell(s) but the header has "
                f"{len(header)} columns; give every row one cell per column (quote a cell that "
                "holds a comma)"
            )
        rows.append(dict(zip(header, cells, strict=True)))
    return header, rows


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of an attribute CSV, refusing what cannot be read as it is meant."""
    if not path.is_file():
        raise DataError(f"attribute CSV {path} not found; check `root` and `csv`")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header, rows = _table(handle, path)
    except UnicodeDecodeError as error:
        raise DataError(
            f"attribute CSV {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
            f"offset {error.start}); save it as UTF-8 (in Excel: CSV UTF-8)"
        ) from None
    if not header:
        raise DataError(f"attribute CSV {path} is empty; it needs a header row")
    twice = sorted({name for name in header if name and header.count(name) > 1})
    if twice:
        raise DataError(
            f"{path}: the header names column(s) {twice} more than once; give every column its "
            "own name"
        )
    if not rows:
        raise DataError(f"attribute CSV {path} has a header but no rows; add one row per image")
    return header, rows


def require_columns(header: Sequence[str], columns: Sequence[str], path: Path) -> None:
    missing = [column for column in columns if column not in header]
    if missing:
        raise DataError(f"{path} has no column(s) {missing}; its columns are {list(header)}")


@dataclass
class LabelTable:
    """The attributes taken from a CSV.

    names: the A attribute names; labels: (N, A) float 0/1; classes: each multi-class column
    and the names of its A_c attributes (`digit` -> [`digit=0`, ...]); left_out: columns not used.
    """

    names: list[str]
    labels: Tensor
    classes: dict[str, list[str]] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)


def parse_binary(value: str, where: str) -> float:
    """A 0/1 (or -1/1) label from text; `where` names the file, row and column for errors."""
    try:
        return BINARY_VALUES[value.strip()]
    except KeyError:
        raise DataError(f"{where}: label {value!r} is not binary; use 1 / 0 (or 1 / -1)") from None


def _sort_key(value: str) -> tuple:
    """Numbers in numeric order (2 before 10), then text in alphabetical order."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def class_values(column: str, rows: Rows, where: Path) -> list[str]:
    """The distinct values of a multi-class column, in order; blanks and too many refused."""
    values = set()
    for line, row in rows:
        value = row[column].strip()
        if not value:
            raise DataError(
                f"{where}, line {line}, column {column!r}: blank label; fill it or drop the row"
            )
        values.add(value)
    if len(values) > MAX_CLASSES:
        raise DataError(
            f"{where}: column {column!r} holds {len(values)} distinct values, too many for a "
            f"multi-class label (at most {MAX_CLASSES}); leave it out of data.attributes"
        )
    return sorted(values, key=_sort_key)


def is_binary(column: str, rows: Rows) -> bool:
    return all(row[column].strip() in BINARY_VALUES for _, row in rows)


def require_binary(column: str, rows: Rows, where: Path) -> None:
    """Refuse a column that must be binary (a target named by its column), at its first bad row."""
    for line, row in rows:
        value = row[column].strip()
        if value not in BINARY_VALUES:
            raise DataError(
                f"{where}, line {line}, column {column!r}: label {value!r} is not binary; use "
                f"1 / 0 (or 1 / -1), or explain one class of a multi-class column (e.g. "
                f"{column}{CLASS_SEPARATOR}{value or 'VALUE'})"
            )


def target_column(target: str | None, header: Sequence[str]) -> tuple[str | None, bool]:
    """The column a target names, and whether it names a class: (`Smiling`, False) for the
    binary column `Smiling`, (`digit`, True) for the class `digit=8`; (None, False) for neither."""
    if target is None or target in header:
        return target, False
    column = target.partition(CLASS_SEPARATOR)[0]
    found = CLASS_SEPARATOR in target and column in header
    return (column if found else None), found


def _default_columns(candidates: Sequence[str], rows: Rows, required: Sequence[str]) -> list[str]:
    return [name for name in candidates if name in required or is_binary(name, rows)]


def label_table(
    header: Sequence[str],
    rows: Rows,
    where: Path,
    attributes: Sequence[str] | None = None,
    required: Sequence[str] = (),
    skip: Sequence[str] = (),
    binary: Sequence[str] = (),
    multi_class: Sequence[str] = (),
) -> LabelTable:
    """The attributes of `rows` (each `(line, row)`).

    attributes: the columns to use (None: every binary column except `skip`); required: columns
    used in any case (the target's); a used column that is not binary becomes multi-class,
    except those in `binary`, which are refused at their first non-binary label; those in
    `multi_class` are multi-class even when binary (a target `flag=1` names a class).
    """
    for column in binary:
        require_binary(column, rows, where)
    candidates = [name for name in header if name not in skip]
    chosen = list(attributes) if attributes is not None else []
    chosen += [name for name in required if name not in chosen]
    if attributes is None:
        chosen = _default_columns(candidates, rows, chosen)
        left_out = [name for name in candidates if name not in chosen]
        if left_out:
            log.warning(
                "%s: using the binary columns as attributes; left out %s (not 0/1: list a "
                "multi-class column in data.attributes to use it)",
                where,
                left_out,
            )
    else:
        left_out = [name for name in candidates if name not in chosen]
    names, columns, classes = [], [], {}
    for column in chosen:
        if column not in multi_class and is_binary(column, rows):
            names.append(column)
            columns.append(
                torch.tensor([BINARY_VALUES[row[column].strip()] for _, row in rows]).view(-1, 1)
            )
            continue
        values = class_values(column, rows, where)
        classes[column] = [f"{column}{CLASS_SEPARATOR}{value}" for value in values]
        names += classes[column]
        index = torch.tensor([values.index(row[column].strip()) for _, row in rows])
        columns.append(torch.nn.functional.one_hot(index, len(values)).float())
    labels = torch.cat(columns, 1) if columns else torch.zeros(len(rows), 0)
    return LabelTable(names, labels.view(len(rows), len(names)), classes, left_out)
