import numpy as np
import pytest
import torch
from PIL import Image

from cfgen.data.images import image_channels, load_image
from cfgen.errors import DataError
from tests.data.fakes import random_pixels, write_png


@pytest.fixture
def grey():
    pixels = random_pixels(3, height=12, width=12, channels=1)
    pixels[0, :2] = (0, 255)  # the whole 8-bit range
    return pixels


def eight_bit(tmp_path, pixels):
    return load_image(write_png(tmp_path / "eight.png", pixels), 12, channels=1)


def test_a_16_bit_png_reads_by_its_full_range_not_saturated(tmp_path, grey):
    path = tmp_path / "sixteen.png"
    Image.fromarray(grey.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode == "I;16"
    expected = eight_bit(tmp_path, grey)
    torch.testing.assert_close(load_image(path, 12, channels=1), expected)
    torch.testing.assert_close(load_image(path, 12, channels=3), expected.expand(3, -1, -1))
    assert image_channels([path]) == 1


def test_16_bit_values_keep_their_precision(tmp_path):
    values = np.array([[0, 1, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    Image.fromarray(values).save(tmp_path / "fine.png")
    image = load_image(tmp_path / "fine.png", 4, channels=1)
    torch.testing.assert_close(image[0, 0], torch.from_numpy(values[0] / 65535 * 2 - 1).float())


def test_float_and_32_bit_integer_images_read_by_their_range(tmp_path, grey):
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "float.tif")
    Image.fromarray(grey.astype(np.int32) * 257).save(tmp_path / "int.tif")
    assert [Image.open(tmp_path / n).mode for n in ("float.tif", "int.tif")] == ["F", "I"]
    expected = eight_bit(tmp_path, grey)
    torch.testing.assert_close(load_image(tmp_path / "float.tif", 12, channels=1), expected)
    torch.testing.assert_close(load_image(tmp_path / "int.tif", 12, channels=1), expected)


def test_deep_images_are_cropped_and_resized_like_8_bit_ones(tmp_path):
    pixels = random_pixels(5, height=20, width=30, channels=1)
    Image.fromarray(pixels.astype(np.uint16) * 257).save(tmp_path / "wide16.png")
    write_png(tmp_path / "wide8.png", pixels)
    deep = load_image(tmp_path / "wide16.png", 8, channels=1)
    shallow = load_image(tmp_path / "wide8.png", 8, channels=1)
    assert deep.shape == (1, 8, 8)
    # The 8-bit image is resampled in 8 bits: the two differ by its rounding only.
    torch.testing.assert_close(deep, shallow, atol=1 / 127.5, rtol=0)


@pytest.mark.parametrize(
    ("values", "found", "meaning"),
    [
        (
            np.full((4, 4), 2.0, np.float32),
            r"\[2, 2\]",
            r"F means \(32-bit floats read as \[0, 1\]\)",
        ),
        (np.full((4, 4), np.nan, np.float32), "NaN or inf", "F"),
        (np.full((4, 4), -3, np.int32), r"\[-3, -3\]", r"I means \(32-bit integers read as 16-bit"),
        (np.full((4, 4), 70000, np.int32), r"\[70000, 70000\]", "I"),
    ],
)
def test_values_outside_the_modes_range_are_refused(tmp_path, values, found, meaning):
    Image.fromarray(values).save(tmp_path / "odd.tif")
    with pytest.raises(DataError, match=rf"odd.tif holds values in {found}, outside what its mode "
                       rf"{meaning}.*save it as an 8- or 16-bit PNG"):  # fmt: skip
        load_image(tmp_path / "odd.tif", 4, channels=1)


def test_colour_images_are_read_as_before(tmp_path):
    pixels = random_pixels(1, height=8, width=8)
    write_png(tmp_path / "rgb.png", pixels)
    exact = torch.from_numpy(pixels).permute(2, 0, 1).float() / 127.5 - 1.0
    torch.testing.assert_close(load_image(tmp_path / "rgb.png", 8, channels=3), exact)
