import csv
import io
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from cfgen.data.cli import main
from cfgen.data.digits import digit_png, stratified_splits
from cfgen.errors import ConfigError


def test_cfgen_data_digits_writes_the_scans_as_a_grey_attribute_folder(tmp_path):
    out = tmp_path / "digits"
    command = [sys.executable, "-m", "cfgen.cli", "data", "digits", "--out", str(out)]
    done = subprocess.run([*command, "--size", "8"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "wrote 1797 digits of 8 px" in done.stderr
    with open(out / "attributes.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["file", "split", "id", "digit"]
    reference = load_digits()
    assert [int(row["id"]) for row in rows] == list(range(len(reference.target)))
    assert [int(row["digit"]) for row in rows] == reference.target.tolist()
    for index in (0, 917, 1796):  # at 8 px the PNG holds the scan itself, 16 levels -> 0..255
        with Image.open(out / rows[index]["file"]) as image:
            assert image.mode == "L"
            pixels = np.asarray(image)
        expected = np.round(reference.images[index] * 255 / 16).astype(np.uint8)
        np.testing.assert_array_equal(pixels, expected)


def test_splits_are_80_10_10_within_each_digit_and_seeded():
    labels = load_digits().target
    splits = stratified_splits(labels, seed=0)
    for digit in range(10):
        counts = Counter(s for s, label in zip(splits, labels, strict=True) if label == digit)
        n = int((labels == digit).sum())
        assert counts == {
            "val": round(0.1 * n),
            "test": round(0.1 * n),
            "train": n - 2 * round(0.1 * n),
        }
    assert stratified_splits(labels, seed=0) == splits
    assert stratified_splits(labels, seed=1) != splits


def test_upsampled_digit_stays_one_grey_channel():
    scan = np.zeros((8, 8), dtype=np.uint8)
    scan[2:6, 3:5] = 255
    with Image.open(io.BytesIO(digit_png(scan, 32))) as image:
        assert image.mode == "L" and image.size == (32, 32)
        pixels = np.asarray(image)
    assert pixels[16, 16] == 255 and pixels[0, 0] == 0


def test_missing_scikit_learn_is_a_clear_error_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails as if absent
    out = tmp_path / "digits"
    with pytest.raises(ConfigError, match="needs scikit-learn.*pip install scikit-learn"):
        main(["digits", "--out", str(out)])
    assert not out.exists()
    with pytest.raises(ConfigError, match="at least 8 pixels"):
        main(["digits", "--out", str(out), "--size", "4"])
