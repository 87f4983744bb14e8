import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.train.augment import (
    EDITED,
    DiscriminatorViews,
    RandomViews,
    _shift,
    cutmix_negatives,
    edited_windows,
)


def test_no_jitter_is_the_identity():
    views = RandomViews()
    x = torch.rand(2, 3, 8, 8)
    assert not views.active
    torch.testing.assert_close(views(x), x)


def test_a_constant_image_stays_constant_under_shift_and_blur():
    x = torch.full((3, 3, 16, 16), 0.3)
    torch.testing.assert_close(RandomViews(shift=2.0, blur=1.5)(x), x)


def test_shift_moves_each_image_by_its_own_offset():
    # Bilinear resampling of a horizontal ramp (value = column) moves it by exactly the offset:
    # away from the borders each image reads column + dx, with dx its own draw in [-3, 3].
    ramp = torch.arange(12.0).expand(4, 1, 12, 12).contiguous()
    torch.manual_seed(0)
    offsets = (torch.rand(4, 2) * 2 - 1) * 3.0  # the draw _shift makes under the same seed
    torch.manual_seed(0)
    moved = _shift(ramp, 3.0)
    expected = ramp[:, :, 4:8, 4:8] + offsets[:, 0, None, None, None]
    torch.testing.assert_close(moved[:, :, 4:8, 4:8], expected, atol=1e-4, rtol=0)
    assert float(offsets[:, 0].std()) > 0.1  # the images did not all move alike


def test_noise_has_the_asked_spread_and_gradients_flow():
    torch.manual_seed(0)
    x = torch.zeros(8, 3, 16, 16, requires_grad=True)
    out = RandomViews(noise=0.1)(x)
    torch.testing.assert_close(out.std(), torch.tensor(0.1), atol=5e-3, rtol=0)
    RandomViews(shift=1.0, blur=1.0, noise=0.1)(x).sum().backward()
    torch.testing.assert_close(x.grad.sum(), torch.tensor(float(x.numel())), rtol=1e-3, atol=0)


# --- the discriminator's views (DiffAugment) --------------------------------------------------


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """`image` (C, H, W) moved by (dy, dx) whole pixels, zeros coming in: written out."""
    out = torch.zeros_like(image)
    _, height, width = image.shape
    for y in range(height):
        for x in range(width):
            if 0 <= y - dy < height and 0 <= x - dx < width:
                out[:, y, x] = image[:, y - dy, x - dx]
    return out


def test_no_discriminator_views_is_the_identity():
    x = torch.rand(2, 3, 8, 8)
    assert DiscriminatorViews("").names == []
    assert DiscriminatorViews(" , ").names == []
    torch.testing.assert_close(DiscriminatorViews("")(x), x)


def test_an_unknown_discriminator_view_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown discriminator view\(s\) \['flip'\].*cutout"):
        DiscriminatorViews("translation,flip")


def test_translation_moves_each_image_by_its_own_whole_pixel_offset_within_an_eighth():
    torch.manual_seed(0)
    images = torch.rand(12, 2, 16, 16) + 1.0  # no zeros of its own: zeros are what came in
    moved = DiscriminatorViews("translation")(images)
    reach = 2  # 16 / 8
    offsets = []
    for image, out in zip(images, moved, strict=True):
        found = [
            (dy, dx)
            for dy in range(-reach, reach + 1)
            for dx in range(-reach, reach + 1)
            if torch.equal(out, shifted(image, dy, dx))
        ]
        assert len(found) == 1, "each view is exactly one whole-pixel shift within reach"
        offsets.append(found[0])
    assert len(set(offsets)) > 3  # each image its own draw


def test_cutout_zeroes_one_square_of_half_the_side_and_passes_gradients_elsewhere():
    torch.manual_seed(0)
    images = torch.ones(64, 3, 16, 16, requires_grad=True)
    out = DiscriminatorViews("cutout")(images)
    cut = out[:, 0] == 0
    assert bool((cut == (out == 0).all(dim=1)).all()), "every channel is cut at the same place"
    for hole in cut:
        rows, cols = hole.any(dim=1).nonzero(), hole.any(dim=0).nonzero()
        assert len(rows) <= 8 and len(cols) <= 8
        box = hole[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert bool(box.all()), "the cut-out is one solid rectangle"
    sizes = cut.sum(dim=(1, 2))
    assert int(sizes.max()) == 64 and int(sizes.min()) < 64  # whole squares and clipped ones
    out.sum().backward()
    torch.testing.assert_close(images.grad, (~cut)[:, None].float().expand(-1, 3, -1, -1))


def test_colour_keeps_a_grey_image_flat_and_moves_its_brightness_by_at_most_a_half():
    torch.manual_seed(0)
    grey = torch.full((32, 3, 8, 8), 0.2)
    out = DiscriminatorViews("colour")(grey)
    per_image = out.flatten(1)
    torch.testing.assert_close(per_image, per_image[:, :1].expand_as(per_image))
    shift = per_image[:, 0] - 0.2
    assert float(shift.abs().max()) <= 0.5 and float(shift.std()) > 0.1


def test_cutmix_negatives_paste_a_small_box_of_the_next_image_and_mark_the_windows_on_it():
    torch.manual_seed(0)
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    negatives, windows = cutmix_negatives(images, reach=2)
    source = images.roll(1, dims=0)
    foreign = (negatives != images).any(dim=1)  # (N, H, W): where the box was pasted
    for index in range(len(images)):
        rows, columns = torch.nonzero(foreign[index], as_tuple=True)
        height = int(rows.max() - rows.min()) + 1
        width = int(columns.max() - columns.min()) + 1
        assert 4 <= height <= 8 and 4 <= width <= 8  # 1/8 to 1/4 of 32 px
        assert int(foreign[index].sum()) == height * width  # one box
        box = foreign[index]
        torch.testing.assert_close(negatives[index][:, box], source[index][:, box])
        # The windows that see the box: the box grown by the reach on every side, clipped.
        top, left = int(rows.min()), int(columns.min())
        grown = torch.zeros(32, 32)
        grown[max(top - 2, 0) : top + height + 2, max(left - 2, 0) : left + width + 2] = 1
        torch.testing.assert_close(windows[index], grown)


def test_edited_windows_are_those_that_see_a_pixel_moved_past_the_threshold():
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    frames = images.clone()
    frames[0, 1, 5, 9] += 3 * EDITED  # one channel of one pixel, well past the threshold
    frames[1] += 0.5 * EDITED  # every pixel, under it: a blend's leak
    windows = edited_windows(images, frames, reach=2)
    expected = torch.zeros(2, 16, 16)
    expected[0, 3:8, 7:12] = 1.0  # the 5x5 windows around (5, 9)
    torch.testing.assert_close(windows, expected)
    # at the border the square is clipped
    frames[1, :, 0, 15] = images[1, :, 0, 15] + 1.0
    torch.testing.assert_close(
        edited_windows(images, frames, reach=1)[1, :2, 14:], torch.ones(2, 2)
    )
    assert int(edited_windows(images, frames, reach=1)[1].sum()) == 4
