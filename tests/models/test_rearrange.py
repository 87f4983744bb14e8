import math

import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.models import rearrange
from cfgen.models.generator import Generator


def images(n: int = 2, channels: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_warp_by_a_constant_flow_shifts_the_image_by_that_many_pixels():
    x = images()
    head = torch.zeros(2, 2, 16, 16)
    head[:, 0] = math.atanh(2 / 3)  # 2 px right of reach 3: x'(p) = x(p + 2 px along width)
    head[:, 1] = -math.atanh(1 / 3)  # 1 px up: x'(p) = x(p - 1 px along height)
    moved = rearrange.warp(x, rearrange.flow(head, reach=3))
    torch.testing.assert_close(moved[..., 1:, :-2], x[..., :-1, 2:], atol=1e-5, rtol=0)


def test_warp_never_moves_a_pixel_further_than_its_reach():
    x = torch.zeros(1, 1, 16, 16)
    x[..., 8, 8] = 1.0  # one bright pixel
    moved = rearrange.warp(x, rearrange.flow(torch.full((1, 2, 16, 16), 50.0), reach=2))
    rows, cols = torch.nonzero(moved[0, 0] > 0, as_tuple=True)
    assert rows.numel() > 0
    assert int((rows - 8).abs().max()) <= 2 and int((cols - 8).abs().max()) <= 2


def test_a_warp_keeps_grey_images_grey_and_draws_no_value_the_query_lacks():
    grey = images(channels=1).expand(-1, 3, -1, -1)  # grey stored as RGB
    head = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(1)) * 3
    moved = rearrange.warp(grey, rearrange.flow(head, reach=3))
    torch.testing.assert_close(moved[:, 0], moved[:, 1])
    torch.testing.assert_close(moved[:, 0], moved[:, 2])
    # Bilinear sampling mixes neighbours only: nothing outside the query's own range.
    assert float(moved.min()) >= float(grey.min()) - 1e-6
    assert float(moved.max()) <= float(grey.max()) + 1e-6
    assert float((moved - grey).abs().mean()) > 0.1  # and it did move


def test_an_untrained_warp_returns_the_query_and_learns_to_move_it():
    generator = Generator(image_size=16, base_width=4, max_width=8, skips=True, output="warp")
    # Smooth images: a shift of one pixel is then a small, findable move.
    x = torch.nn.functional.interpolate(images(size=4), size=16, mode="bilinear")
    bins = torch.tensor([0, 9])
    with torch.no_grad():
        before = generator(x, bins)
    assert float((before - x).abs().mean()) < 1e-6
    target = torch.roll(x, 1, dims=-1)  # the query one pixel to the right
    optimiser = torch.optim.Adam(generator.parameters(), lr=1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        loss = (generator(x, bins) - target)[..., 2:-2, 2:-2].abs().mean()
        loss.backward()
        optimiser.step()
    start = float((x - target)[..., 2:-2, 2:-2].abs().mean())
    assert float(loss.detach()) < 0.5 * start


def test_a_reach_beyond_half_the_image_is_refused():
    with pytest.raises(ConfigError, match="reach must be between 1 and 7"):
        Generator(image_size=16, base_width=4, max_width=8, output="warp", reach=8)


def test_warp_blend_draws_through_its_mask_over_the_warped_query():
    generator = Generator(image_size=16, base_width=4, max_width=8, output="warp_blend", reach=3)
    x = images()
    bins = torch.tensor([0, 9])
    conv = generator.head[-1]
    with torch.no_grad():  # flow: 1 px to the right; drawn: +0.5 everywhere; mask: 0.5
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([math.atanh(1 / 3), 0.0, *[math.atanh(0.5)] * 3, 0.0]))
    rendered = generator.eval().render(x, bins)
    warped = torch.roll(x, -1, dims=-1)  # x'(p) = x(p + 1 px along width)
    expected = 0.5 * 0.5 + 0.5 * warped
    torch.testing.assert_close(rendered.image[..., :-1], expected[..., :-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(rendered.mask, torch.full_like(rendered.mask, 0.5))
    torch.testing.assert_close(rendered.flow[:, 0], torch.ones(2, 16, 16))  # in pixels
    torch.testing.assert_close(rendered.flow[:, 1], torch.zeros(2, 16, 16))
