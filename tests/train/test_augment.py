import torch

from cfgen.train.augment import RandomViews, _shift


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
