import logging

import numpy as np
import pytest
import torch
from PIL import Image

from cfgen.data.folders import AttributeFolder, CelebA, folder_splits
from cfgen.errors import ConfigError, DataError
from tests.data.fakes import (
    attribute_folder,
    celeba_folder,
    random_pixels,
    user_folder,
    write_csv,
    write_png,
)

SPLITS = ["train", "train", "val", "test", "train"]
LABELS = [[1, -1], [0, 1], [-1, 1], [1, 0], [1, 1]]


@pytest.fixture
def folder(tmp_path):
    return attribute_folder(tmp_path, SPLITS, LABELS)


def test_folder_reads_images_exactly_and_maps_minus_one_to_zero(folder):
    data = AttributeFolder(folder, image_size=8)
    assert data.attribute_names == ["a", "b"] and len(data) == 5
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(data.labels, expected)
    item = data[3]
    pixels = torch.from_numpy(random_pixels(3)).permute(2, 0, 1).float()
    torch.testing.assert_close(item["image"], pixels / 127.5 - 1.0)
    assert item["index"] == 3
    torch.testing.assert_close(item["labels"], expected[3])


def test_folder_filters_a_split_and_picks_attributes(folder):
    data = AttributeFolder(folder, split="train", attributes=["b"], image_size=8)
    torch.testing.assert_close(data.labels, torch.tensor([[0.0], [1.0], [1.0]]))
    torch.testing.assert_close(data[2]["image"], AttributeFolder(folder, image_size=8)[4]["image"])


def test_folder_crops_and_resizes(tmp_path):
    pixels = random_pixels(0, height=12, width=10)
    pixels[:, :, :] = 0
    pixels[1:11, :, :] = (255, 0, 255)  # the centre 10 x 10 square is magenta
    write_png(tmp_path / "x.png", pixels)
    write_csv(tmp_path / "attributes.csv", ["file", "a"], [["x.png", 1]])
    image = AttributeFolder(tmp_path, image_size=4)[0]["image"]
    expected = torch.tensor([1.0, -1.0, 1.0]).view(3, 1, 1).expand(3, 4, 4)
    torch.testing.assert_close(image, expected)


def test_folder_splits_follow_the_split_column(folder):
    train, val, test = folder_splits(folder, image_size=8)
    assert [len(train), len(val), len(test)] == [3, 1, 1]
    torch.testing.assert_close(test.labels, torch.tensor([[1.0, 0.0]]))
    assert test[0]["index"] == 0


def test_folder_without_split_column_is_split_by_seed(tmp_path):
    attribute_folder(tmp_path, [None] * 10, [[i % 2, 1] for i in range(10)])
    first = folder_splits(tmp_path, image_size=8, seed=1)
    again = folder_splits(tmp_path, image_size=8, seed=1)
    assert [len(split) for split in first] == [8, 1, 1]
    assert [s.files for s in first] == [s.files for s in again]
    names = [path.name for split in first for path in split.files]
    assert sorted(names) == [f"{i:03d}.png" for i in range(10)]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows: rows[1].__setitem__(2, "yes"), r"line 3, column 'a'.*not binary.*a=yes"),
        (lambda rows: rows[0].__setitem__(0, "../outside.png"), "unsafe file name"),
        (lambda rows: rows[2].__setitem__(0, "images/gone.png"), "missing, e.g.*gone.png"),
    ],
)
def test_bad_rows_are_reported(tmp_path, edit, message):
    attribute_folder(tmp_path, SPLITS, LABELS)
    rows = [
        [f"images/{i:03d}.png", s, *v] for i, (s, v) in enumerate(zip(SPLITS, LABELS, strict=True))
    ]
    edit(rows)
    write_csv(tmp_path / "attributes.csv", ["file", "split", "a", "b"], rows)
    with pytest.raises(DataError, match=message):
        AttributeFolder(tmp_path, image_size=8, target="a")  # the target's column must be binary


def test_missing_csv_column_and_empty_split_are_reported(folder, tmp_path):
    with pytest.raises(DataError, match="not found"):
        AttributeFolder(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"no column\(s\) \['c'\]"):
        AttributeFolder(folder, attributes=["a", "c"])
    with pytest.raises(DataError, match="no rows with split == 'holdout'"):
        AttributeFolder(folder, split="holdout")
    write_csv(folder / "only_train.csv", ["file", "split", "a"], [["images/000.png", "train", 1]])
    with pytest.raises(DataError, match="val split is empty"):
        folder_splits(folder, csv="only_train.csv")


def test_images_broken_after_construction_are_named_at_load(folder):
    data = AttributeFolder(folder, image_size=8)
    (folder / "images/001.png").unlink()
    with pytest.raises(DataError, match="001.png is missing"):
        data[1]
    (folder / "images/002.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot read image .*002.png"):
        data[2]


def test_celeba_uses_the_official_split_and_crop(tmp_path):
    celeba_folder(tmp_path, [0, 0, 1, 2, 0], [[1, -1], [-1, -1], [1, 1], [-1, 1], [1, 1]])
    train = CelebA(tmp_path, split="train", image_size=8)
    assert train.attribute_names == ["Smiling", "Young"]
    torch.testing.assert_close(train.labels, torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]))
    colour = torch.tensor([200, 100, 50]).view(3, 1, 1) / 127.5 - 1.0
    torch.testing.assert_close(train[0]["image"], colour.expand(3, 8, 8), atol=1e-6, rtol=0)
    test = CelebA(tmp_path, split="test", attributes=["Young"])
    torch.testing.assert_close(test.labels, torch.tensor([[1.0]]))


def test_celeba_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="list_attr_celeba.txt not found"):
        CelebA(tmp_path)
    celeba_folder(tmp_path, [0, 1], [[1, 1], [1, 1]])
    with pytest.raises(DataError, match="unknown CelebA split"):
        CelebA(tmp_path, split="dev")
    with pytest.raises(DataError, match="no column"):
        CelebA(tmp_path, attributes=["Bangs"])
    (tmp_path / "list_eval_partition.txt").write_text("000001.png 0\n000002.png 0\n")
    with pytest.raises(DataError, match="no CelebA images in split 'test'"):
        CelebA(tmp_path, split="test")


def test_grey_images_stay_one_channel_unless_rgb_is_asked_for(tmp_path):
    user_folder(tmp_path, n=5)
    grey = AttributeFolder(tmp_path, image_size=8)
    assert grey.channels == 1
    with Image.open(tmp_path / "images/002.png") as image:
        pixels = torch.from_numpy(np.array(image)).float() / 127.5 - 1.0
    torch.testing.assert_close(grey[2]["image"], pixels[None])
    rgb = AttributeFolder(tmp_path, image_size=8, channels=3)
    torch.testing.assert_close(rgb[2]["image"], pixels.expand(3, 8, 8))


def test_a_folder_mixing_grey_and_colour_images_is_read_as_rgb(tmp_path):
    user_folder(tmp_path, n=5)
    write_png(tmp_path / "images/004.png", random_pixels(4))  # colour
    assert AttributeFolder(tmp_path, image_size=8).channels == 3
    with pytest.raises(ConfigError, match="channels must be 1"):
        AttributeFolder(tmp_path, image_size=8, channels=4)


def test_a_users_csv_gives_its_binary_columns_and_the_targets_classes(tmp_path, caplog):
    user_folder(tmp_path, n=10, classes=3)
    with caplog.at_level(logging.WARNING):
        plain = AttributeFolder(tmp_path, image_size=8)
    assert plain.attribute_names == ["smiling"] and plain.classes == {}
    assert plain.left_out == ["id", "age", "note", "digit"]
    assert "left out ['id', 'age', 'note', 'digit']" in caplog.text
    target = AttributeFolder(tmp_path, image_size=8, target="digit=2", split="train")
    assert target.attribute_names == ["digit=0", "digit=1", "digit=2", "smiling"]
    assert target.classes == {"digit": ["digit=0", "digit=1", "digit=2"]}
    # train rows are 0, 1, 2, 5, 6, 7: digits 0 1 2 2 0 1
    torch.testing.assert_close(target.labels[:, :3].argmax(1), torch.tensor([0, 1, 2, 2, 0, 1]))
    listed = AttributeFolder(tmp_path, image_size=8, attributes=["digit"])
    assert listed.attribute_names == ["digit=0", "digit=1", "digit=2"]
