"""Render cartoon faces from their generative factors in one vectorised pass.

The parts of `cfgen.data.face_parts` are composited back to front. Besides the image, the
renderer returns one mask per region: the share of each pixel that the region could paint
whatever the value of its own factor, seen through the parts drawn in front of it. Changing a
factor therefore changes pixels only where its region's mask is positive.

Random numbers (the texture grain here, the factors in `cfgen.data.synthetic`) come from a
counter-based hash, so they depend on a key only, never on batch size or order.
"""

import contextlib
import functools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from cfgen.data.face_parts import (
    FACTOR_NAMES,
    REGION_NAMES,
    Group,
    Painter,
    background,
    body_groups,
    face_frame,
    feature_groups,
    union,
)
from cfgen.errors import ConfigError

__all__ = ["FACTOR_NAMES", "REGION_NAMES", "hash32", "hash_uniform", "render_faces"]

_MASK32 = 0xFFFFFFFF
# Odd multipliers below 2**31 keep every product of 32-bit values inside int64 (no overflow).
_HASH_MULTIPLIERS = (0x7FEB352D, 0x6C8E9CF5)
_HASH_OFFSET = 0x9E3779B9
_CHUNK_PIXELS = 16 * 64 * 64
_GPU_CHUNK = 4096


def hash32(keys: Tensor) -> Tensor:
    """Counter-based random integers: int64 keys (any shape) -> int64 in [0, 2**32).

    A fixed bijective mix of 32-bit integers, so a random number depends only on its key, never
    on batch size or order: this is what makes faces deterministic per (seed, split, index).
    """
    # The offset moves the mix's fixed point away from key 0, the most common key.
    x = (keys + _HASH_OFFSET) & _MASK32
    x = x ^ (x >> 16)
    x = (x * _HASH_MULTIPLIERS[0]) & _MASK32
    x = x ^ (x >> 15)
    x = (x * _HASH_MULTIPLIERS[1]) & _MASK32
    return x ^ (x >> 16)


def hash_uniform(keys: Tensor) -> Tensor:
    """Uniform floats in [0, 1) from int64 keys, same shape as `keys`."""
    return (hash32(keys) >> 8).float() / float(1 << 24)


def _composite(background: Tensor, groups: list[Group], masks: Tensor) -> Tensor:
    """Paint `groups` over `background` (N, 3, H, W) and return the image.

    Fills `masks` (N, R, H, W): each region's extent seen through the groups painted after it.
    """
    image = background
    for group in groups:
        for layer in group.layers:
            image = torch.lerp(image, layer.colour.expand_as(image), layer.alpha)
    masks.zero_()
    transmitted = torch.ones_like(masks[:, :1])
    for group in reversed(groups):
        if group.region is not None:
            index = REGION_NAMES.index(group.region)
            masks[:, index : index + 1] += group.extent * transmitted
        transmitted = transmitted * (1.0 - union(group.layers))
    masks[:, REGION_NAMES.index("background")] = transmitted[:, 0]
    masks.clamp_(0.0, 1.0)
    return image


_TEXTURE_BANK_SIZE = 256


@functools.lru_cache(maxsize=8)
def _texture_bank(size: int, device: str) -> Tensor:
    """A fixed bank of grain planes (K, 1, H, W) in [-1, 1], the same on every run."""
    keys = torch.arange(_TEXTURE_BANK_SIZE * size * size, device=device)
    return (hash_uniform(keys) * 2.0 - 1.0).view(_TEXTURE_BANK_SIZE, 1, size, size)


def _texture(noise_seeds: Tensor, size: int, strength: float) -> Tensor:
    """Luminance grain (N, 1, H, W) in [-strength, strength], chosen by each image's seed.

    Grain is a nuisance, not a factor: picking one of a fixed bank of planes is as good as fresh
    noise for that purpose and costs one gather instead of a hash per pixel.
    """
    bank = _texture_bank(size, str(noise_seeds.device))
    return bank[hash32(noise_seeds) % _TEXTURE_BANK_SIZE] * strength


def render_faces(
    factors: Tensor,
    image_size: int = 32,
    noise_seeds: Tensor | None = None,
    noise_strength: float = 0.04,
) -> tuple[Tensor, Tensor]:
    """Render faces from their factors.

    Args:
        factors: (N, F) in [0, 1], columns ordered as `FACTOR_NAMES`.
        image_size: side in pixels (>= 16).
        noise_seeds: (N,) int64 seeds of the texture grain; None renders without grain. Keep the
            seeds to re-render the same faces with one factor changed.
        noise_strength: grain amplitude, in units of the [0, 1] colour range.

    Returns:
        images (N, 3, H, W) float32 in [-1, 1] and masks (N, R, H, W) in [0, 1], regions ordered
        as `REGION_NAMES`.
    """
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_NAMES):
        raise ValueError(
            f"factors must have shape (N, {len(FACTOR_NAMES)}) ordered as {FACTOR_NAMES}, "
            f"got {tuple(factors.shape)}"
        )
    if image_size < 16:
        raise ConfigError(f"image_size must be at least 16 pixels, got {image_size}")
    factors = factors.float()
    if noise_seeds is not None:
        noise_seeds = noise_seeds.to(factors.device)
    on_cpu = factors.device.type == "cpu"
    # On CPU, chunks of a few images keep every intermediate plane in the cache (about 10x
    # faster than one big batch of fresh allocations); a GPU wants large batches instead.
    chunk = max(1, _CHUNK_PIXELS // image_size**2) if on_cpu else _GPU_CHUNK
    count, regions = factors.shape[0], len(REGION_NAMES)
    # Chunks write into the outputs: no concatenation, no fresh mask planes per chunk.
    images = factors.new_empty(count, 3, image_size, image_size)
    masks = factors.new_empty(count, regions, image_size, image_size)

    def render(start: int) -> None:
        stop = min(start + chunk, count)
        seeds = None if noise_seeds is None else noise_seeds[start:stop]
        images[start:stop] = _render_chunk(
            factors[start:stop], image_size, seeds, noise_strength, masks[start:stop]
        )

    threads = torch.get_num_threads()
    with contextlib.nullcontext() if not on_cpu else _single_threaded():
        if on_cpu and threads > 1 and count > chunk:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(render, range(0, count, chunk)))
        else:
            for start in range(0, count, chunk):
                render(start)
    return images, masks


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """Run each torch op on one CPU thread, restoring the thread count afterwards.

    On planes this small, intra-op threads add little and their barriers are costly when the
    machine is busy (measured on 2 shared cores: 90 instead of 1,650 faces/s at 64 px with 2
    threads); `render_faces` spreads whole chunks over Python threads instead (ops release the
    GIL). Torch's thread count is process-wide, hence the restore.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _render_chunk(
    factors: Tensor,
    image_size: int,
    noise_seeds: Tensor | None,
    noise_strength: float,
    masks: Tensor,
) -> Tensor:
    """Images (n, 3, H, W) in [-1, 1] of a few faces; fills their `masks` (n, R, H, W)."""
    column = dict(zip(FACTOR_NAMES, factors.unbind(1), strict=True))
    u, v, radius = face_frame(factors, image_size)
    paint = Painter(u, v, radius)
    groups = body_groups(paint, column) + feature_groups(paint, column)
    backdrop = background(column, v, radius, image_size)
    image = _composite(backdrop, groups, masks)
    if noise_seeds is not None:
        image = image + _texture(noise_seeds, image_size, noise_strength)
    return (image * 2.0 - 1.0).clamp_(-1.0, 1.0)
