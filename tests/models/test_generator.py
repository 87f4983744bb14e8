import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.models.blocks import ConditionalBatchNorm2d, channel_widths, levels_for
from cfgen.models.generator import Generator


@pytest.mark.parametrize(("size", "levels"), [(16, 2), (32, 3), (64, 4), (128, 5)])
def test_depth_follows_image_size(size, levels):
    generator = Generator(image_size=size, base_width=4, max_width=8)
    x = torch.rand(2, 3, size, size) * 2 - 1
    bins = torch.tensor([0, 9])
    assert len(generator.down) == levels
    assert generator.encode(x, bins).shape == (2, 8, 4, 4)
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


def test_decode_of_encode_is_forward():
    generator = Generator(image_size=16, base_width=4, max_width=8).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    bins = torch.tensor([1, 2])
    torch.testing.assert_close(
        generator.decode(generator.encode(x, bins), bins), generator(x, bins)
    )
