import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.models.discriminator import Discriminator, OrdinalProjection, PlainProjection


@pytest.mark.parametrize("projection", ["plain", "ordinal"])
@pytest.mark.parametrize("size", [16, 32])
def test_scores_one_per_image(projection, size):
    discriminator = Discriminator(size, 3, 10, base_width=4, max_width=8, projection=projection)
    scores = discriminator(torch.rand(5, 3, size, size) * 2 - 1, torch.arange(5))
    assert scores.shape == (5,)
    assert bool(torch.isfinite(scores).all())


def test_ordinal_projection_sums_the_thresholds_below_the_bin():
    projection = OrdinalProjection(features=2, n_bins=4).eval()
    weight = projection.thresholds.weight.detach()  # (3, 2), spectrally normalised
    features = torch.tensor([[1.0, 2.0]] * 4)
    per_threshold = features[0] @ weight.T
    expected = torch.stack(
        [torch.tensor(0.0), per_threshold[0], per_threshold[:2].sum(), per_threshold.sum()]
    )
    torch.testing.assert_close(projection(features, torch.arange(4)), expected)


def test_plain_projection_is_an_inner_product_with_the_bin_embedding():
    projection = PlainProjection(features=3, n_bins=2).eval()
    embedding = projection.embedding.weight.detach()
    features = torch.randn(2, 3)
    expected = (features * embedding[torch.tensor([1, 0])]).sum(dim=1)
    torch.testing.assert_close(projection(features, torch.tensor([1, 0])), expected)


def test_spectral_norm_bounds_the_layers():
    discriminator = Discriminator(16, 3, 10, base_width=4, max_width=8)
    for _ in range(30):  # power iterations converge during forward passes in train mode
        discriminator(torch.randn(4, 3, 16, 16), torch.zeros(4, dtype=torch.long))
    conv = discriminator.blocks[1].conv1
    sigma = torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2)
    torch.testing.assert_close(sigma, torch.tensor(1.0), atol=0.05, rtol=0)


def test_unknown_projection_is_refused():
    with pytest.raises(ConfigError, match="unknown projection 'cosine'"):
        Discriminator(16, projection="cosine")
