import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.models.blocks import ConditionalBatchNorm2d, channel_widths, levels_for
from cfgen.models.generator import OUTPUTS, Generator


@pytest.mark.parametrize(("size", "levels"), [(16, 2), (32, 3), (64, 4), (128, 5)])
def test_depth_follows_image_size(size, levels):
    generator = Generator(image_size=size, base_width=4, max_width=8)
    x = torch.rand(2, 3, size, size) * 2 - 1
    bins = torch.tensor([0, 9])
    assert len(generator.down) == levels
    assert generator.encode(x, bins)[-1].shape == (2, 8, 4, 4)
    out = generator(x, bins)
    assert out.shape == x.shape
    assert float(out.detach().abs().max()) <= 1.0


def test_widths_double_then_cap():
    assert channel_widths(3, 32, 64) == [32, 64, 64, 64]


def test_size_that_cannot_reach_4x4_is_refused():
    with pytest.raises(ConfigError, match="image_size 48"):
        levels_for(48)


def test_conditional_batch_norm_uses_the_bin_of_each_sample():
    norm = ConditionalBatchNorm2d(2, n_classes=3)
    with torch.no_grad():
        norm.gamma.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]]))
        norm.beta.weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.0, -5.0]]))
    x = torch.randn(3, 2, 4, 4)
    normalised = torch.nn.functional.batch_norm(x, None, None, training=True)
    out = norm(x, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(out[0], normalised[0])
    torch.testing.assert_close(out[1], 2 * normalised[1])
    torch.testing.assert_close(out[2], torch.tensor([5.0, -5.0])[:, None, None].expand(2, 4, 4))


def test_a_fractional_bin_interpolates_the_parameters_of_its_two_neighbours():
    norm = ConditionalBatchNorm2d(2, n_classes=3)
    with torch.no_grad():
        norm.gamma.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, 2.0], [0.0, 4.0]]))
        norm.beta.weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.0, -5.0]]))
    x = torch.randn(4, 2, 4, 4)
    normalised = torch.nn.functional.batch_norm(x, None, None, training=True)
    out = norm(x, torch.tensor([0.25, 1.5, 2.0, 7.0]))  # 7 is clamped to the last class
    torch.testing.assert_close(out[0], 1.25 * normalised[0])
    gamma, beta = torch.tensor([1.0, 3.0]), torch.tensor([2.5, -2.5])
    torch.testing.assert_close(out[1], gamma[:, None, None] * normalised[1] + beta[:, None, None])
    last = torch.tensor([0.0, 4.0])[:, None, None] * normalised[2:]
    torch.testing.assert_close(out[2:], last + torch.tensor([5.0, -5.0])[:, None, None])
    whole = torch.tensor([0, 1, 2, 2])
    torch.testing.assert_close(norm(x, whole.float()), norm(x, whole))


def test_the_bin_changes_the_output():
    generator = Generator(image_size=16, base_width=4, max_width=8).eval()
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, ConditionalBatchNorm2d):
                module.beta.weight.normal_()
        x = torch.rand(1, 3, 16, 16) * 2 - 1
        same = generator(x, torch.tensor([3])) - generator(x, torch.tensor([3]))
        other = generator(x, torch.tensor([3])) - generator(x, torch.tensor([7]))
    torch.testing.assert_close(same, torch.zeros_like(same))
    assert float(other.abs().max()) > 1e-3


@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("skips", [False, True])
def test_decode_of_encode_is_forward(output, skips):
    generator = Generator(image_size=16, base_width=4, max_width=8, skips=skips, output=output)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    bins = torch.tensor([1, 2])
    generator.eval()
    rendered = generator.decode(generator.encode(x, bins), x, bins)
    if output == "difference":  # each decode is the redraw that `render` takes the difference of
        torch.testing.assert_close(rendered.image, generator.render(x, bins, bins - 1).drawn)
    elif output == "inpaint":  # the first of `render`'s two passes: the mask it chooses
        chosen = (rendered.mask > 0.5).float()  # at inference, where its probability > 1/2
        torch.testing.assert_close(chosen, generator.render(x, bins).mask)
    else:
        torch.testing.assert_close(rendered.image, generator(x, bins))
    assert (rendered.mask is not None) == (output in ("blend", "inpaint"))


def with_head(generator: Generator, weight: float, bias: list[float]) -> Generator:
    """The generator with its last conv set to a constant: head output = bias (+ weight * h)."""
    conv = generator.head[-1]
    with torch.no_grad():
        conv.weight.fill_(weight)
        conv.bias.copy_(torch.tensor(bias))
    return generator.eval()


def test_official_output_ignores_the_query_beyond_its_embedding():
    # The official generator redraws the image: a constant head gives the same image whatever x.
    generator = with_head(Generator(image_size=16, base_width=4, max_width=8), 0.0, [0.5] * 3)
    out = generator(torch.rand(2, 3, 16, 16) * 2 - 1, torch.tensor([0, 5]))
    torch.testing.assert_close(out, torch.full_like(out, torch.tanh(torch.tensor(0.5)).item()))


def test_residual_output_adds_tanh_of_the_head_to_the_query_and_clips():
    generator = Generator(image_size=16, base_width=4, max_width=8, output="residual")
    generator = with_head(generator, 0.0, [0.2, 0.0, -0.2])
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    delta = torch.tanh(torch.tensor([0.2, 0.0, -0.2]))[None, :, None, None]
    torch.testing.assert_close(generator(x, torch.tensor([1, 2])), (x + delta).clamp(-1, 1))


def test_blend_keeps_the_query_where_the_mask_is_zero_and_redraws_where_it_is_one():
    generator = Generator(image_size=16, base_width=4, max_width=8, output="blend")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    bins = torch.tensor([1, 2])
    keep = with_head(generator, 0.0, [0.0, 0.0, 0.0, -40.0])(x, bins)  # mask sigmoid(-40) ~ 0
    torch.testing.assert_close(keep, x)
    redrawn = with_head(generator, 0.0, [0.3, 0.3, 0.3, 40.0]).render(x, bins)
    torch.testing.assert_close(redrawn.image, torch.full_like(x, torch.tanh(torch.tensor(0.3))))
    torch.testing.assert_close(redrawn.mask, torch.ones(2, 1, 16, 16))
    half = with_head(generator, 0.0, [0.3, 0.3, 0.3, 0.0])(x, bins)  # mask 0.5
    torch.testing.assert_close(half, 0.5 * x + 0.5 * torch.tanh(torch.tensor(0.3)))


@torch.no_grad()
def test_difference_adds_the_redraws_change_between_the_bins_to_the_query():
    torch.manual_seed(0)
    generator = Generator(image_size=16, base_width=4, max_width=8, output="difference").eval()
    for module in generator.modules():
        if isinstance(module, ConditionalBatchNorm2d):
            module.beta.weight.normal_()  # the bins change the redraw
    x = torch.rand(3, 3, 16, 16) * 1.6 - 0.8
    source, target = torch.tensor([2, 5, 7]), torch.tensor([2, 9, 0])
    plain = Generator(image_size=16, base_width=4, max_width=8).eval()
    plain.load_state_dict(generator.state_dict())  # the same weights as an official redraw
    rendered = generator.render(x, target, source)
    expected = (x + plain(x, target) - plain(x, source)).clamp(-1, 1)
    torch.testing.assert_close(rendered.image, expected)
    torch.testing.assert_close(rendered.drawn, plain(x, target))
    torch.testing.assert_close(rendered.reference, plain(x, source))
    # The query's own bin gives the query back, however blurred the redraw is.
    torch.testing.assert_close(rendered.image[0], x[0], rtol=0, atol=1e-6)
    assert float((rendered.image[1:] - x[1:]).abs().amax()) > 1e-2
    with pytest.raises(ConfigError, match="source_bin"):
        generator(x, target)


def test_skips_reach_the_output_from_every_encoder_level():
    # Without skips only the 4x4 embedding reaches the decoder; with them a change of one input
    # pixel reaches the output at full resolution through the stem's features.
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    bins = torch.tensor([3])
    for skips, expect_sharp in ((False, False), (True, True)):
        torch.manual_seed(0)
        generator = Generator(image_size=16, base_width=4, max_width=8, skips=skips).eval()
        features = generator.encode(x, bins)
        bottleneck_only = [torch.zeros_like(f) for f in features[:-1]] + [features[-1]]
        same = generator.decode(bottleneck_only, x, bins).image
        full = generator.decode(features, x, bins).image
        assert bool((same - full).abs().max() > 1e-4) == expect_sharp


@torch.no_grad()
def test_edit_downsample_low_passes_the_edit():
    x = torch.zeros(2, 3, 16, 16)  # |tanh| < 1: the clip to [-1, 1] never acts
    bins = torch.tensor([1, 8])
    torch.manual_seed(0)
    generator = Generator(image_size=16, base_width=4, max_width=8, output="residual").eval()
    generator.head[-1].weight.normal_()
    edit = generator(x, bins) - x
    assert float((edit[..., 1:] - edit[..., :-1]).abs().max()) > 1e-3  # full resolution: varies
    generator.edit_downsample = 16  # pooled to 1x1: the edit is one colour per image
    edit = generator(x, bins) - x
    torch.testing.assert_close(edit, edit[..., :1, :1].expand_as(edit))


@torch.no_grad()
def test_mask_downsample_low_passes_the_mask_and_not_what_is_drawn():
    x = torch.zeros(2, 3, 16, 16)
    bins = torch.tensor([1, 8])
    torch.manual_seed(0)
    generator = Generator(image_size=16, base_width=4, max_width=8, output="blend").eval()
    generator.head[-1].weight.normal_()
    sharp = generator.render(x, bins)
    generator.mask_downsample = 16  # pooled to 1x1: one mask value per image
    coarse = generator.render(x, bins)
    torch.testing.assert_close(coarse.mask, coarse.mask[..., :1, :1].expand_as(coarse.mask))
    assert float((sharp.mask[..., 1:] - sharp.mask[..., :-1]).abs().max()) > 1e-3
    # x = 0, so the image is mask * drawn: what is drawn is the same full-resolution head
    torch.testing.assert_close(coarse.image / coarse.mask, sharp.image / sharp.mask)


def test_unknown_output_and_bad_downsample_are_refused():
    with pytest.raises(ConfigError, match="unknown generator output 'paint'"):
        Generator(image_size=16, output="paint")
    with pytest.raises(ConfigError, match="edit_downsample"):
        Generator(image_size=16, edit_downsample=3)
    with pytest.raises(ConfigError, match="mask_downsample"):
        Generator(image_size=16, output="blend", mask_downsample=3)
    with pytest.raises(ConfigError, match="mask_downsample needs a mask"):
        Generator(image_size=16, mask_downsample=2)


# --- generator_norm: batch (official) or group --------------------------------------------


def test_group_norm_renders_each_image_on_its_own_and_the_same_in_training_and_at_inference():
    torch.manual_seed(0)
    queries = torch.rand(6, 3, 16, 16) * 2 - 1
    bins = torch.tensor([0, 3, 9, 1, 5, 7])
    for norm, independent in (("group", True), ("batch", False)):
        torch.manual_seed(1)
        generator = Generator(16, n_bins=10, base_width=8, max_width=16, norm=norm).train()
        together = generator(queries, bins)[:2]
        alone = generator(queries[:2], bins[:2])
        # Training mode: group norm's output for the first two queries does not depend on the
        # other four; batch norm's does (the case tells the two apart).
        assert torch.allclose(together, alone, atol=1e-5) == independent, norm
        if independent:
            torch.testing.assert_close(generator.eval()(queries, bins)[:2], together)


def test_group_norm_has_no_running_statistics_and_an_unknown_norm_is_refused():
    group = Generator(16, n_bins=10, base_width=8, max_width=16, norm="group")
    assert list(group.buffers()) == []
    assert len(list(Generator(16, n_bins=10, base_width=8, max_width=16).buffers())) > 0
    with pytest.raises(ConfigError, match=r"unknown generator norm 'layer'.*'group'"):
        Generator(16, n_bins=10, norm="layer")
    with pytest.raises(ConfigError, match="unknown generator norm"):
        ConditionalBatchNorm2d(8, 10, norm="instance")


def test_the_inpainter_keeps_the_query_outside_its_mask_and_never_sees_what_it_hides():
    generator = Generator(image_size=16, base_width=4, max_width=8, output="inpaint").eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    bins = torch.tensor([0, 9])
    rendered = generator.render(x, bins)
    mask = rendered.mask
    torch.testing.assert_close(rendered.image, mask * rendered.drawn + (1 - mask) * x)
    # The drawing is the second pass: the query with the first pass's mask hidden.
    torch.testing.assert_close(rendered.drawn, generator.inpaint(x, mask, bins))
    # What a box hides cannot change what is drawn.
    hidden = torch.zeros(2, 1, 16, 16)
    hidden[..., 4:10, 3:12] = 1.0
    other = x.clone()
    other[..., 4:10, 3:12] = torch.rand(2, 3, 6, 9) * 2 - 1
    torch.testing.assert_close(
        generator.inpaint(x, hidden, bins), generator.inpaint(other, hidden, bins)
    )


def test_random_boxes_hide_one_box_of_the_asked_size_per_image():
    from cfgen.train.augment import random_boxes

    masks = random_boxes(torch.zeros(64, 3, 32, 32), low=0.25, high=0.5)
    assert masks.shape == (64, 1, 32, 32) and set(masks.unique().tolist()) <= {0.0, 1.0}
    rows = masks.amax(dim=3).sum(dim=(1, 2))  # rows the box spans
    columns = masks.amax(dim=2).sum(dim=(1, 2))
    assert bool(((rows >= 8) & (rows <= 16) & (columns >= 8) & (columns <= 16)).all())
    torch.testing.assert_close(masks.sum(dim=(1, 2, 3)), rows * columns)  # one full box each
