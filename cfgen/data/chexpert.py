"""CheXpert chest X-rays: multi-label CSV with uncertain labels, split by patient.

The CSV (`train.csv` / `valid.csv` of CheXpert-v1.0 or -small) has a `Path` column and one
column per observation holding 1 (positive), 0 (negative), -1 (uncertain) or nothing (not
mentioned, read as 0). Uncertain labels follow a policy from `UNCERTAIN_POLICIES`. The X-rays
are grey and stay one channel (as in the follow-up of PE on chest X-rays) unless `channels=3`
asks for three identical ones. Non-square images are centre-cropped to a square.
"""

import random
import re
from pathlib import Path

import torch

from cfgen.data.columns import read_csv, require_columns
from cfgen.data.folders import ImageAttributeDataset, resolve_files
from cfgen.errors import ConfigError, DataError
from cfgen.io import PathLike

OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
PATH_COLUMN = "Path"
# Uncertain (-1) label -> its value; None drops every row uncertain in any chosen label.
UNCERTAIN_POLICIES: dict[str, float | None] = {"zeros": 0.0, "ones": 1.0, "ignore": None}
_VALUES = {"": 0.0, "0": 0.0, "0.0": 0.0, "1": 1.0, "1.0": 1.0, "-1": -1.0, "-1.0": -1.0}
_PATIENT = re.compile(r"patient(\d+)")
VAL_PATIENT_SHARE = 0.05


def _parse(value: str, where: str) -> float:
    try:
        return _VALUES[value.strip()]
    except KeyError:
        raise DataError(
            f"{where}: CheXpert label {value!r} must be 1, 0, -1 (uncertain) or blank"
        ) from None


def _relative_path(root: Path, name: str) -> str:
    """CSV paths start with the data set's folder name (`CheXpert-v1.0-small/train/...`);
    drop it when `root` is that folder, so `root` may be either the folder or its parent."""
    parts = Path(name).parts
    if parts and parts[0] == root.name:
        return str(Path(*parts[1:]))
    return name


class CheXpert(ImageAttributeDataset):
    """CheXpert images with binary labels.

    Args:
        root: the CheXpert folder (holding `train/`, `valid/` and the CSVs) or its parent.
        csv: the CSV, relative to `root` (or absolute).
        image_size: side of the returned square images.
        labels: label columns (None: every CheXpert observation, `OBSERVATIONS`, in the CSV).
        uncertain: uncertain-label policy, one of `UNCERTAIN_POLICIES`.
        channels: 1 (grey) or 3 (RGB); None: the images' own (1 for X-rays).
    """

    def __init__(
        self,
        root: PathLike,
        csv: str = "train.csv",
        image_size: int = 64,
        labels: list[str] | None = None,
        uncertain: str = "zeros",
        channels: int | None = None,
    ):
        if uncertain not in UNCERTAIN_POLICIES:
            raise ConfigError(
                f"unknown uncertain-label policy {uncertain!r}; choose one of "
                f"{list(UNCERTAIN_POLICIES)}"
            )
        root = Path(root)
        csv_path = Path(csv) if Path(csv).is_absolute() else root / csv
        header, rows = read_csv(csv_path)
        if labels is None:
            labels = [name for name in OBSERVATIONS if name in header]
            if not labels:
                raise DataError(
                    f"{csv_path} has none of the CheXpert observation columns {list(OBSERVATIONS)}"
                    "; pass `labels` to name the label columns"
                )
        require_columns(header, [PATH_COLUMN, *labels], csv_path)
        values = torch.tensor(
            [
                [_parse(row[name], f"{csv_path}, line {line}, column {name!r}") for name in labels]
                for line, row in enumerate(rows, start=2)
            ],
            dtype=torch.float32,
        ).view(len(rows), len(labels))
        keep, values = self._apply_policy(values, UNCERTAIN_POLICIES[uncertain])
        if not keep:
            raise DataError(
                f"{csv_path}: no rows left after dropping uncertain labels of {labels}; use "
                "uncertain='zeros' or 'ones'"
            )
        names = [_relative_path(root, rows[i][PATH_COLUMN]) for i in keep]
        files = resolve_files(root, names, str(csv_path))
        super().__init__(files, values, labels, image_size, channels=channels)
        self.csv_path = csv_path

    @staticmethod
    def _apply_policy(values: torch.Tensor, fill: float | None) -> tuple[list[int], torch.Tensor]:
        """Rows kept and their 0/1 labels: values (N, L) with -1 for uncertain."""
        uncertain = values < 0
        if fill is None:
            keep = (~uncertain.any(1)).nonzero().flatten()
            return keep.tolist(), values[keep]
        return list(range(values.shape[0])), values.masked_fill(uncertain, fill)

    def patients(self) -> list[str]:
        """Patient id of every image (its file path when the path names no patient)."""
        return [
            match.group(1) if (match := _PATIENT.search(str(path))) else str(path)
            for path in self.files
        ]


def chexpert_splits(
    root: PathLike,
    csv: str | None = None,
    image_size: int = 64,
    uncertain: str = "zeros",
    seed: int = 0,
    labels: list[str] | None = None,
    channels: int | None = None,
) -> tuple[CheXpert, CheXpert, CheXpert]:
    """Train / val / test: `csv` (default `train.csv`) split by patient, 5% of patients for
    validation, no patient in both; the official `valid.csv` is the test set (the official
    test labels are not public). `labels` and `channels` are `CheXpert`'s."""
    full = CheXpert(root, csv or "train.csv", image_size, labels, uncertain, channels)
    patients = full.patients()
    unique = sorted(set(patients))
    random.Random(seed).shuffle(unique)
    val_patients = set(unique[: max(1, round(VAL_PATIENT_SHARE * len(unique)))])
    if len(unique) < 2:
        raise DataError(
            f"{full.csv_path} holds a single patient; the validation split needs patients of "
            "its own"
        )
    val = [i for i, patient in enumerate(patients) if patient in val_patients]
    train = [i for i, patient in enumerate(patients) if patient not in val_patients]
    test = CheXpert(root, "valid.csv", image_size, labels, uncertain, full.channels)
    return full.take(train), full.take(val), test
