"""Real images with attributes: a folder with a CSV, and CelebA in its standard layout.

Both are `ImageAttributeDataset`s: a list of image files and a label matrix, checked when the
dataset is built (columns, label values, unsafe or missing files) so that a bad data set fails
at once with a message naming the file, column or row, not minutes into training. Which CSV
columns are attributes, and how the CSV is read, is `cfgen.data.columns`' business. Images are
read when an item is asked for (`cfgen.data.images`: any bit depth), optionally centre-cropped,
resized and scaled to [-1, 1], with the data set's channels: grey files stay one channel
unless RGB is asked for. Items follow the dataset
contract: `image` (C, H, W), `labels` (A,), `index`.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from cfgen.data.columns import label_table, parse_binary, read_csv, require_columns, target_column
from cfgen.data.images import check_channels, image_channels, load_image
from cfgen.errors import CfgenError, DataError
from cfgen.io import PathLike, safe_child

CELEBA_CROP = 150  # official preprocessing: centre 150 x 150 crop of the 178 x 218 faces
CELEBA_SPLITS = {"train": "0", "val": "1", "test": "2"}


def resolve_files(root: Path, names: Sequence[str], source: str) -> list[Path]:
    """Paths of image `names` inside `root`, refusing unsafe names and missing files.

    `source` names the listing (CSV or txt) for the messages.
    """
    paths = []
    for row, name in enumerate(names):
        if not name.strip():
            raise DataError(f"{source}, row {row + 1}: blank file name; fill it or drop the row")
        try:
            paths.append(safe_child(root, name))
        except CfgenError as error:
            raise DataError(f"{source}, row {row + 1}: {error}") from None
    missing = [path for path in paths if not path.is_file()]
    if missing:
        shown = ", ".join(str(path) for path in missing[:3])
        raise DataError(
            f"{len(missing)} image file(s) listed in {source} are missing, e.g. {shown}; "
            "restore them or drop their rows"
        )
    return paths


class ImageAttributeDataset(Dataset):
    """Image files with a binary label matrix.

    Args:
        files: image paths (N).
        labels: (N, A) float 0/1.
        attribute_names: the A attribute names.
        image_size: side of the returned square images.
        crop: centre square taken before resizing (None: the largest one).
        channels: 1 (grey) or 3 (RGB); None: 1 when the files are grey, else 3.
        classes: multi-class columns and the names of their attributes (`LabelTable.classes`).
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: Tensor,
        attribute_names: Sequence[str],
        image_size: int,
        crop: int | None = None,
        channels: int | None = None,
        classes: dict[str, list[str]] | None = None,
    ):
        check_channels(channels)
        self.files = list(files)
        self.labels = labels
        self.attribute_names = list(attribute_names)
        self.image_size, self.crop = image_size, crop
        self.channels = channels or image_channels(self.files)
        self.classes = dict(classes or {})

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        image = load_image(self.files[index], self.image_size, self.crop, self.channels)
        return {"image": image, "labels": self.labels[index], "index": index}

    def take(self, positions: Sequence[int]) -> "ImageAttributeDataset":
        """A dataset of the items at `positions`, re-indexed from 0."""
        subset = object.__new__(type(self))
        subset.__dict__.update(self.__dict__)
        subset.files = [self.files[position] for position in positions]
        subset.labels = self.labels[list(positions)]
        return subset


class AttributeFolder(ImageAttributeDataset):
    """Images in a folder, listed in a CSV with a file column and attribute columns.

    Args:
        root: the folder; file names in the CSV are relative to it.
        csv: the CSV, relative to `root` (or absolute).
        file_column: column with the image file names.
        attributes: attribute columns to use (a non-binary one is a multi-class label); None
            takes every binary column except the file and split columns, with a note naming
            the columns left out (`cfgen.data.columns`).
        split: keep only rows whose `split_column` holds this value (None: every row).
        split_column: the split column (train / val / test).
        image_size: side of the returned square images (largest centre square, resized).
        channels: 1 (grey) or 3 (RGB); None: the images' own (1 when they are grey).
        target: an attribute or a class (`digit=8`) whose column is used in any case; an
            attribute named by its column must be binary.
    """

    def __init__(
        self,
        root: PathLike,
        csv: str = "attributes.csv",
        file_column: str = "file",
        attributes: list[str] | None = None,
        split: str | None = None,
        split_column: str = "split",
        image_size: int = 64,
        channels: int | None = None,
        target: str | None = None,
    ):
        root = Path(root)
        csv_path = Path(csv) if Path(csv).is_absolute() else root / csv
        header, rows = read_csv(csv_path)
        require_columns(header, [file_column, *(attributes or [])], csv_path)
        numbered = list(enumerate(rows, start=2))  # row 1 is the header
        if split is not None:
            require_columns(header, [split_column], csv_path)
            numbered = [(line, row) for line, row in numbered if row[split_column] == split]
            if not numbered:
                present = sorted({row[split_column] for row in rows})
                raise DataError(
                    f"{csv_path}: no rows with {split_column} == {split!r}; values present: "
                    f"{present}"
                )
        column, names_class = target_column(target, header)
        table = label_table(
            header,
            numbered,
            csv_path,
            attributes,
            required=[column] if column else [],
            skip=[file_column, split_column],
            binary=[column] if column and not names_class else [],
            multi_class=[column] if names_class else [],
        )
        files = resolve_files(root, [row[file_column] for _, row in numbered], str(csv_path))
        super().__init__(
            files, table.labels, table.names, image_size, None, channels, table.classes
        )
        self.csv_path = csv_path
        self.left_out = table.left_out
        # Each kept row's split (None without a split column): one parse serves all splits.
        has_splits = split_column in header
        self.split_values = [row[split_column] for _, row in numbered] if has_splits else None

    def take(self, positions: Sequence[int]) -> "AttributeFolder":
        subset = super().take(positions)
        if self.split_values is not None:
            subset.split_values = [self.split_values[position] for position in positions]
        return subset


SPLIT_NAMES = ("train", "val", "test")
SEEDED_SPLIT_SHARES = (0.8, 0.1, 0.1)


def folder_splits(
    root: PathLike,
    csv: str = "attributes.csv",
    image_size: int = 64,
    seed: int = 0,
    attributes: list[str] | None = None,
    channels: int | None = None,
    target: str | None = None,
) -> tuple[AttributeFolder, AttributeFolder, AttributeFolder]:
    """Train / val / test of an attribute folder, from its split column if it has one.

    Without a split column the rows are shuffled with `seed` and cut 80 / 10 / 10. The other
    options are `AttributeFolder`'s.
    """
    full = AttributeFolder(
        root, csv, attributes=attributes, image_size=image_size, channels=channels, target=target
    )
    if full.split_values is None:
        order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed)).tolist()
        n_train = round(SEEDED_SPLIT_SHARES[0] * len(order))
        n_val = round(SEEDED_SPLIT_SHARES[1] * len(order))
        cuts = (order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :])
    else:
        cuts = tuple(
            [i for i, value in enumerate(full.split_values) if value == name]
            for name in SPLIT_NAMES
        )
    for name, positions in zip(SPLIT_NAMES, cuts, strict=True):
        if not positions:
            raise DataError(
                f"{full.csv_path}: the {name} split is empty; give it rows (split column values "
                f"must be {list(SPLIT_NAMES)}) or add images"
            )
    return tuple(full.take(positions) for positions in cuts)


def _read_celeba_lists(root: Path) -> tuple[list[str], list[str], list[list[str]], dict[str, str]]:
    """Attribute names, file names, label texts and the partition of CelebA's two txt files."""
    attr_path, partition_path = root / "list_attr_celeba.txt", root / "list_eval_partition.txt"
    for path in (attr_path, partition_path):
        if not path.is_file():
            raise DataError(
                f"CelebA file {path} not found; `root` must hold img_align_celeba/, "
                "list_attr_celeba.txt and list_eval_partition.txt"
            )
    lines = attr_path.read_text().splitlines()
    if len(lines) < 2:
        raise DataError(f"{attr_path} is truncated: it needs a count line and a header line")
    names = lines[1].split()
    files, values = [], []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if len(fields) != len(names) + 1:
            raise DataError(
                f"{attr_path}, line {number}: expected a file name and {len(names)} labels, "
                f"got {len(fields)} fields"
            )
        files.append(fields[0])
        values.append(fields[1:])
    partition = dict(line.split()[:2] for line in partition_path.read_text().splitlines() if line)
    return names, files, values, partition


class CelebA(ImageAttributeDataset):
    """CelebA in its standard layout, with the official split and preprocessing.

    `root` holds `img_align_celeba/`, `list_attr_celeba.txt` (-1/1 labels after a count line
    and a header line) and `list_eval_partition.txt` (0/1/2 = train/val/test). Images are
    centre-cropped to 150 x 150 and resized to `image_size`. `attributes` picks columns (None:
    all 40). `channels` 1 reads the faces as grey (default 3, RGB).
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        image_size: int = 64,
        attributes: list[str] | None = None,
        channels: int | None = None,
    ):
        if split not in CELEBA_SPLITS:
            raise DataError(f"unknown CelebA split {split!r}; choose one of {list(CELEBA_SPLITS)}")
        root = Path(root)
        names, files, values, partition = _read_celeba_lists(root)
        attributes = names if attributes is None else attributes
        attr_path = root / "list_attr_celeba.txt"
        require_columns(names, attributes, attr_path)
        columns = [names.index(name) for name in attributes]
        chosen = [i for i, name in enumerate(files) if partition.get(name) == CELEBA_SPLITS[split]]
        if not chosen:
            raise DataError(
                f"no CelebA images in split {split!r} ({CELEBA_SPLITS[split]} in "
                f"{root / 'list_eval_partition.txt'}); check that file"
            )
        labels = torch.tensor(
            [
                [
                    parse_binary(values[i][c], f"{attr_path}, line {i + 3}, column {names[c]!r}")
                    for c in columns
                ]
                for i in chosen
            ],
            dtype=torch.float32,
        ).view(len(chosen), len(columns))
        paths = resolve_files(root / "img_align_celeba", [files[i] for i in chosen], str(attr_path))
        super().__init__(paths, labels, attributes, image_size, CELEBA_CROP, channels)
