"""Drawing in the query's main colours (`cfgen.models.palette`, `Generator(palette=k)`), on images
whose colours are known by construction."""

import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.models import palette
from cfgen.models.generator import Generator

RED, SKIN, SKY = (0.2, -0.84, -0.76), (0.96, 0.7, 0.48), (0.24, 0.6, 0.94)


def flat_face(size: int = 16) -> torch.Tensor:
    """Sky, a skin square in the middle and a 2-pixel red mark: three colours, one of them on
    less than 1% of the pixels."""
    image = torch.tensor(SKY).view(3, 1, 1).repeat(1, size, size)
    image[:, 4:12, 4:12] = torch.tensor(SKIN).view(3, 1, 1)
    image[:, 9, 7:9] = torch.tensor(RED).view(3, 1)
    return image[None]


def test_the_main_colours_of_a_flat_image_are_its_colours_small_parts_included():
    found = palette.main_colours(flat_face(), 3)[0]
    for colour in (RED, SKIN, SKY):
        assert float((found - torch.tensor(colour)).norm(dim=1).min()) < 1e-5, colour


def test_each_image_gets_its_own_colours_and_no_gradient_flows_through_them():
    images = torch.cat([flat_face(), -flat_face()]).requires_grad_(True)
    found = palette.main_colours(images, 3)
    assert not found.requires_grad
    torch.testing.assert_close(found[1].sort(dim=0).values, (-found[0]).sort(dim=0).values)


def test_a_drawing_is_a_mix_of_the_colours_and_a_sure_choice_is_the_colour():
    colours = torch.tensor([[RED, SKIN, SKY]])
    logits = torch.full((1, 3, 4, 4), -30.0)
    logits[:, 1] = 30.0  # skin everywhere
    torch.testing.assert_close(
        palette.draw(logits, colours), torch.tensor(SKIN).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    )
    mixed = palette.draw(torch.zeros(1, 3, 4, 4), colours)  # an even mix
    torch.testing.assert_close(mixed, colours.mean(dim=1).view(1, 3, 1, 1).expand(1, 3, 4, 4))


@pytest.mark.parametrize("output", ["blend", "warp_blend"])
def test_a_palette_generator_keeps_grey_images_grey_and_draws_no_value_the_query_lacks(output):
    generator = Generator(image_size=16, base_width=4, max_width=8, output=output, palette=4)
    for parameter in generator.parameters():  # a random generator, far from its start
        torch.nn.init.normal_(parameter, std=0.5)
    grey = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.7
    grey = grey.expand(-1, 3, -1, -1)  # grey stored as RGB, in [-0.7, 0.5]
    with torch.no_grad():
        rendered = generator.eval().render(grey, torch.tensor([0, 9]))
    frame = rendered.image
    torch.testing.assert_close(frame[:, 0], frame[:, 1])
    torch.testing.assert_close(frame[:, 0], frame[:, 2])
    assert float(frame.min()) >= -0.7 - 1e-5 and float(frame.max()) <= 0.5 + 1e-5
    assert float(rendered.mask.mean()) > 0.05 and float((frame - grey).abs().mean()) > 0.01


def test_a_palette_blend_learns_to_draw_one_of_the_querys_colours_where_it_was_not():
    generator = Generator(
        image_size=16, base_width=4, max_width=8, skips=True, output="blend", palette=3
    )
    x = flat_face().repeat(2, 1, 1, 1)
    target = x.clone()
    target[:, :, 1:3, 2:14] = torch.tensor(RED).view(1, 3, 1, 1)  # a red bar across the sky
    bins = torch.tensor([9, 9])
    optimiser = torch.optim.Adam(generator.parameters(), lr=2e-2)
    for _ in range(80):
        optimiser.zero_grad()
        loss = (generator(x, bins) - target).abs().mean()
        loss.backward()
        optimiser.step()
    start = float((x - target).abs().mean())
    with torch.no_grad():
        drawn = generator.eval()(x, bins)
    assert float((drawn - target).abs().mean()) < 0.3 * start
    assert float((drawn[:, :, 1:3, 2:14] - torch.tensor(RED).view(1, 3, 1, 1)).abs().mean()) < 0.3


def test_a_palette_is_refused_where_nothing_is_blended_or_with_fewer_than_two_colours():
    with pytest.raises(ConfigError, match="palette draws a blend in the query's main colours"):
        Generator(image_size=16, base_width=4, max_width=8, output="image", palette=4)
    with pytest.raises(ConfigError, match="palette to 2 or more colours"):
        Generator(image_size=16, base_width=4, max_width=8, output="blend", palette=1)
