"""scikit-learn's handwritten digits written out as an attribute folder: real data that ships.

    cfgen data digits --out data/digits [--size 32] [--seed 0]

1,797 grey 8 x 8 scans (UCI optical digits, 16 grey levels) become one-channel PNG files of
`size` pixels (bilinear upsampling) and `attributes.csv` with the columns

    file    images/00000.png ...
    split   train / val / test, 80 / 10 / 10 within each digit (seeded)
    id      the image's index in `sklearn.datasets.load_digits` (not an attribute)
    digit   the label, 0-9: a multi-class column

so the folder exercises what real data sets hold besides binary attributes: an id column and a
multi-class label, explained one class against the rest with `--data.target digit=8`.
"""

import io

import numpy as np
import torch
from PIL import Image

from cfgen.errors import ConfigError

HEADER = ["file", "split", "id", "digit"]
SPLIT_SHARES = {"train": 0.8, "val": 0.1, "test": 0.1}
GREY_LEVELS = 16  # load_digits' pixel values run from 0 to 16


def load_digit_scans() -> tuple[np.ndarray, np.ndarray]:
    """The scans (N, 8, 8) uint8 in 0..255 and their labels (N,), from scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError(
            "`cfgen data digits` needs scikit-learn, which ships the digits: "
            "pip install scikit-learn (or the `dev` extra of cfgen)"
        ) from None
    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / GREY_LEVELS)).clip(0, 255).astype(np.uint8)
    return pixels, digits.target.astype(np.int64)


def stratified_splits(labels: np.ndarray, seed: int) -> list[str]:
    """A split name for every image: 80 / 10 / 10 of each label's images, shuffled with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    splits = [""] * len(labels)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = members[torch.randperm(len(members), generator=generator).numpy()]
        n_val = round(SPLIT_SHARES["val"] * len(order))
        n_test = round(SPLIT_SHARES["test"] * len(order))
        n_train = len(order) - n_val - n_test
        for position, index in enumerate(order):
            splits[index] = (
                "train" if position < n_train else "val" if position < n_train + n_val else "test"
            )
    return splits


def digit_png(scan: np.ndarray, size: int) -> bytes:
    """PNG bytes of one grey scan (8, 8) uint8, resized to (size, size), one channel."""
    image = Image.fromarray(scan, mode="L")
    if size != scan.shape[0]:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def digit_rows(size: int, seed: int) -> tuple[list[list], list[tuple[str, bytes]]]:
    """The CSV rows (HEADER order) and the (file name, PNG bytes) of every digit."""
    scans, labels = load_digit_scans()
    splits = stratified_splits(labels, seed)
    rows, files = [], []
    for index, (scan, label) in enumerate(zip(scans, labels, strict=True)):
        name = f"images/{index:05d}.png"
        rows.append([name, splits[index], index, int(label)])
        files.append((name, digit_png(scan, size)))
    return rows, files


def check_size(size: int) -> None:
    if size < 8:
        raise ConfigError(f"--size must be at least 8 pixels (the scans are 8 x 8), got {size}")
