import pytest
import torch

from cfgen.errors import CheckpointError, ConfigError
from cfgen.io import save_bundle
from cfgen.models.autoencoder import BUNDLE_KIND, Autoencoder, load_autoencoder


@pytest.mark.parametrize(("size", "channels"), [(8, 1), (16, 3), (32, 3), (64, 1)])
def test_codes_and_decodes_have_the_declared_shapes_and_range(size, channels):
    autoencoder = Autoencoder(size, channels, code_channels=5, downsamplings=2, width=4).eval()
    images = torch.rand(3, channels, size, size) * 2 - 1
    codes = autoencoder.encode(images)
    assert codes.shape == (3, 5, size // 4, size // 4) == (3, *autoencoder.code_shape)
    decodes = autoencoder.decode(codes)
    assert decodes.shape == images.shape and bool((decodes.abs() <= 1).all())
    torch.testing.assert_close(autoencoder(images), decodes)


@pytest.mark.parametrize(("size", "downsamplings"), [(4, 3), (12, 3), (28, 3), (6, 2)])
def test_sizes_not_divisible_by_the_downsampling_are_refused(size, downsamplings):
    with pytest.raises(ConfigError, match=f"image_size={size} is not divisible by 2"):
        Autoencoder(size, downsamplings=downsamplings)


def test_bundle_round_trip_rebuilds_the_same_frozen_autoencoder(tmp_path):
    autoencoder = Autoencoder(16, 1, code_channels=4, width=4, max_width=8).eval()
    path = save_bundle(
        tmp_path / "ae.pt", BUNDLE_KIND, autoencoder.config(), autoencoder.state_dict()
    )
    loaded = load_autoencoder(path)
    images = torch.rand(4, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(loaded(images), autoencoder(images))
    assert loaded.config() == autoencoder.config() and not loaded.training
    assert not any(parameter.requires_grad for parameter in loaded.parameters())


def test_load_refuses_another_kind_and_a_config_that_does_not_fit_the_weights(tmp_path):
    autoencoder = Autoencoder(16, 3, code_channels=4, width=4)
    other = save_bundle(tmp_path / "c.pt", "classifier", autoencoder.config(), {})
    with pytest.raises(CheckpointError, match="expected 'autoencoder'"):
        load_autoencoder(other)
    wrong = {**autoencoder.config(), "code_channels": 5}
    broken = save_bundle(tmp_path / "ae.pt", BUNDLE_KIND, wrong, autoencoder.state_dict())
    with pytest.raises(CheckpointError, match="does not match its own config"):
        load_autoencoder(broken)
