"""Tiny fake data sets written to a temporary folder: PNG files plus CSV / txt listings."""

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """Save uint8 pixels (H, W, 3) or (H, W) as PNG data, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")  # lossless whatever the suffix
    return path


def random_pixels(seed: int, height: int = 8, width: int = 8, channels: int = 3) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def attribute_folder(root: Path, splits: list[str | None], labels: list[list[int]]) -> Path:
    """One 8 x 8 random PNG per row; `attributes.csv` with file, split (if given), a, b."""
    header = ["file", "split", "a", "b"] if splits[0] is not None else ["file", "a", "b"]
    rows = []
    for i, (split, values) in enumerate(zip(splits, labels, strict=True)):
        name = f"images/{i:03d}.png"
        write_png(root / name, random_pixels(i))
        rows.append([name, split, *values] if split is not None else [name, *values])
    write_csv(root / "attributes.csv", header, rows)
    return root


def celeba_folder(root: Path, partition: list[int], labels: list[list[int]]) -> Path:
    """CelebA layout: 178 x 218 images whose centre 150 square is one colour, the rest another."""
    names = ["Smiling", "Young"]
    lines = [str(len(partition)), " ".join(names)]
    for i, values in enumerate(labels):
        pixels = np.zeros((218, 178, 3), dtype=np.uint8)
        pixels[34:184, 14:164] = (200, 100, 50)
        write_png(root / "img_align_celeba" / f"{i + 1:06d}.png", pixels)
        lines.append(f"{i + 1:06d}.png " + " ".join(f"{v:2d}" for v in values))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    split_lines = [f"{i + 1:06d}.png {part}" for i, part in enumerate(partition)]
    (root / "list_eval_partition.txt").write_text("\n".join(split_lines) + "\n")
    return root


def user_folder(
    root: Path, n: int = 30, size: int = 8, classes: int = 3, grey: bool = True
) -> Path:
    """A folder as users have them: grey PNGs and a CSV with more than binary attributes.

    Columns: file, split (train / val / test by row % 5: 0-2, 3, 4), id, age, note (free text
    with a comma), digit (multi-class, `row % classes`) and smiling (binary, `row // classes`
    odd). The digit is drawn: a bright band at height `digit`, the rest dim noise; smiling
    brightens the left edge.
    """
    header = ["file", "split", "id", "age", "note", "digit", "smiling"]
    rows = []
    for i in range(n):
        digit, smiling = i % classes, (i // classes) % 2
        pixels = (random_pixels(i, size, size, 1) // 8).astype(np.uint8)
        band = size // classes
        pixels[digit * band : (digit + 1) * band] = 230
        pixels[:, 0] = 255 if smiling else pixels[:, 0]
        name = f"images/{i:03d}.png"
        write_png(root / name, pixels if grey else np.repeat(pixels[:, :, None], 3, axis=2))
        split = ("train", "train", "train", "val", "test")[i % 5]
        rows.append([name, split, 1000 + i, 20 + i, f"seen on day {i}, ok", digit, smiling])
    write_csv(root / "attributes.csv", header, rows)
    return root


def chexpert_folder(root: Path, patients: int = 6, per_patient: int = 2, size: int = 12) -> Path:
    """CheXpert-v1.0-small layout: grey X-rays under train/ and valid/, listed in train.csv and
    valid.csv with a Path column and observation columns (Edema, Cardiomegaly: 1, 0, -1, blank)."""
    values = ["1.0", "0.0", "", "-1.0"]
    for csv_name, folder, count in (("train.csv", "train", patients), ("valid.csv", "valid", 2)):
        rows = []
        for patient in range(count):
            for view in range(per_patient):
                i = patient * per_patient + view
                name = f"{root.name}/{folder}/patient{patient:05d}/study1/view{view}_frontal.jpg"
                write_png(root / name.split("/", 1)[1], random_pixels(i, size, size + 2, 1))
                rows.append([name, "Female", 60, values[i % 4], values[(i // 2) % 2]])
        write_csv(root / csv_name, ["Path", "Sex", "Age", "Edema", "Cardiomegaly"], rows)
    return root
