"""Image files read as model inputs: (C, H, W) float32 in [-1, 1], whatever their depth.

    image = load_image(Path("face.png"), image_size=32, channels=3)

Every loader of cfgen (attribute folders, CelebA, CheXpert, the queries of `cfgen generate`)
reads its files here, so every one of them treats a file the same way:

- 8-bit images (grey, RGB, palette, with or without alpha) are converted to grey or RGB with
  PIL; an image already of the requested size comes back exactly (no resampling).
- High-bit-depth images, which PIL holds as one channel of integers or floats, are read by
  their real range instead of being cut to 8 bits (PIL's own conversion saturates every value
  above 255): 16-bit integers (`I;16`, and 32-bit `I` holding 16-bit values) over 0..65535,
  32-bit floats (`F`, e.g. float TIFF) over [0, 1]. Values outside that range, or NaN, are
  refused with a message naming the file: cfgen cannot guess what they mean.
- A file that cannot be read (missing, corrupt, a decompression bomb) is a `DataError` naming
  it, raised when its header is read or while it is decoded.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from cfgen.errors import ConfigError, DataError

# PIL modes of one-channel images (with or without alpha, any bit depth).
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
CHANNEL_MODES = {1: "L", 3: "RGB"}
CHANNEL_SAMPLE = 16  # images looked at to decide a data set's channels
# High-bit-depth modes -> (the value read as white, how the range is described to the user).
FULL_SCALE = {
    "I;16": (65535.0, "16-bit, 0..65535"),
    "I;16B": (65535.0, "16-bit, 0..65535"),
    "I;16L": (65535.0, "16-bit, 0..65535"),
    "I;16N": (65535.0, "16-bit, 0..65535"),
    "I": (65535.0, "32-bit integers read as 16-bit, 0..65535"),
    "F": (1.0, "32-bit floats read as [0, 1]"),
}


def _unreadable(path: Path, error: Exception) -> DataError:
    return DataError(f"cannot read image {path} ({error}); replace the file or drop its CSV row")


def open_image(path: Path) -> Image.Image:
    """`PIL.Image.open(path)` (header only), with a `DataError` naming a bad file."""
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise DataError(f"image file {path} is missing; restore it or drop its CSV row") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise _unreadable(path, error) from error


def check_channels(channels: int | None) -> None:
    if channels is not None and channels not in CHANNEL_MODES:
        raise ConfigError(
            f"channels must be 1 (grey), 3 (RGB) or unset (the images' own), got {channels}"
        )


def image_channels(paths: Sequence[Path]) -> int:
    """1 when the first images are all grey, else 3 (a mixed folder is read as RGB)."""
    modes = []
    for path in paths[:CHANNEL_SAMPLE]:
        with open_image(path) as image:  # reads the header only
            modes.append(image.mode)
    return 1 if modes and all(mode in GREY_MODES for mode in modes) else 3


def _unit_range(image: Image.Image, path: Path) -> Image.Image:
    """A high-bit-depth image as mode `F` in [0, 1], by its mode's full scale."""
    full_scale, described = FULL_SCALE[image.mode]
    values = np.asarray(image, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not np.isfinite(values).all() or low < 0 or high > full_scale:
        found = "NaN or inf" if not np.isfinite(values).all() else f"[{low:.6g}, {high:.6g}]"
        raise DataError(
            f"image {path} holds values in {found}, outside what its mode {image.mode} means "
            f"({described}); rescale it to that range or save it as an 8- or 16-bit PNG"
        )
    return Image.fromarray((values / full_scale).astype(np.float32))  # mode F


def _decoded(path: Path, channels: int) -> Image.Image:
    """The decoded image: mode `F` in [0, 1] for high-bit-depth files, else L or RGB."""
    try:
        with open_image(path) as image:
            if image.mode in FULL_SCALE:
                return _unit_range(image, path)
            return image.convert(CHANNEL_MODES[channels])
    except (OSError, Image.DecompressionBombError) as error:  # raised while decoding
        raise _unreadable(path, error) from error


def _square(image: Image.Image, image_size: int, crop: int | None) -> Image.Image:
    """The centre square (of `crop` pixels, else the largest), resized to `image_size`."""
    width, height = image.size
    side = min(width, height, crop or max(width, height))
    if (width, height) != (side, side):
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side != image_size:
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
    return image


def load_image(path: Path, image_size: int, crop: int | None = None, channels: int = 3) -> Tensor:
    """Read an image file: (channels, image_size, image_size) float32 in [-1, 1].

    `channels` 3 reads RGB (grey files get three equal channels), 1 reads grey (luminance).
    `crop` takes a centre square of that many pixels first; `None` takes the largest centre
    square. Images already of the requested size are not resampled (exact 8-bit round trip).
    """
    image = _square(_decoded(path, channels), image_size, crop)
    if image.mode == "F":  # a high-bit-depth file: one channel in [0, 1]
        unit = torch.from_numpy(np.array(image, dtype=np.float32))[None]
        return (unit * 2.0 - 1.0).expand(channels, -1, -1).contiguous()
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
    pixels = pixels.unsqueeze(0) if channels == 1 else pixels.permute(2, 0, 1)
    return pixels.float() / 127.5 - 1.0
