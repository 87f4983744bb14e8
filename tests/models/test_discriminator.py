import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.models.discriminator import (
    Discriminator,
    OrdinalProjection,
    PatchCritic,
    PlainProjection,
)


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


@pytest.mark.parametrize("patch_size", [3, 9])
def test_each_patch_score_reads_exactly_its_window(patch_size):
    critic = PatchCritic(channels=3, width=4, patch_size=patch_size).eval()
    images = torch.rand(2, 3, 20, 20) * 2 - 1
    moved = images.clone()
    moved[:, :, 10, 10] += 0.5  # one pixel
    changed = (critic(moved) - critic(images)).abs().amax(dim=0) > 1e-6
    assert critic(images).shape == (2, 20, 20)
    reach = (patch_size - 1) // 2
    rows, columns = torch.nonzero(changed, as_tuple=True)
    # Every score whose window holds the pixel may change, and the farthest ones do: none else.
    assert int((rows - 10).abs().max()) == reach and int((columns - 10).abs().max()) == reach


@pytest.mark.parametrize("patch_size", [0, 1, 4])
def test_a_patch_critic_needs_an_odd_window_of_three_pixels_or_more(patch_size):
    with pytest.raises(ConfigError, match="patch_size must be an odd number of pixels >= 3"):
        PatchCritic(3, 4, patch_size)


def test_a_patch_critic_learns_to_score_a_smudge_below_the_real_images():
    # Real images: flat grey of random levels. Fakes: the same with a 3x3 green smudge at a
    # random place. After a few hinge steps the window centred on each smudge scores below
    # every window of every real image.
    torch.manual_seed(0)
    critic = PatchCritic(channels=3, width=8, patch_size=5)
    optimizer = torch.optim.Adam(critic.parameters(), lr=2e-3, betas=(0.0, 0.9))

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        real = (torch.rand(n, 1, 1, 1) * 1.2 - 0.6).expand(n, 3, 16, 16).clone()
        fake, where = real.clone(), torch.randint(1, 13, (n, 2))
        for image, (row, column) in zip(fake, where.tolist(), strict=True):
            image[:, row : row + 3, column : column + 3] = torch.tensor([-0.8, 0.9, -0.8])[
                :, None, None
            ]
        return real, fake, where

    for _ in range(60):
        real, fake, _ = batch(16)
        loss = torch.relu(1 - critic(real)).mean() + torch.relu(1 + critic(fake)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    critic.eval()
    real, fake, where = batch(64)
    with torch.no_grad():
        real_scores, fake_scores = critic(real), critic(fake)
    on_smudge = torch.stack(
        [fake_scores[i, r + 1, c + 1] for i, (r, c) in enumerate(where.tolist())]
    )
    assert float(on_smudge.max()) < float(real_scores.min()), (on_smudge.max(), real_scores.min())
