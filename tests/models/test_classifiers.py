import logging

import pytest
import torch
import torchvision

from cfgen.errors import ConfigError
from cfgen.models import classifiers
from cfgen.models.classifiers import ARCHITECTURES, build_classifier


@pytest.mark.parametrize(
    ("arch", "image_size", "in_channels"),
    [("small_cnn", 32, 3), ("small_cnn", 16, 1), ("resnet18", 32, 1), ("densenet121", 16, 3)],
)
def test_every_architecture_maps_images_to_one_logit_per_output(arch, image_size, in_channels):
    model = build_classifier(arch, num_outputs=5, image_size=image_size, in_channels=in_channels)
    logits = model.eval()(torch.randn(2, in_channels, image_size, image_size))
    assert logits.shape == (2, 5)


def test_small_images_keep_resolution_in_the_stem():
    # A 7x7 stride-2 stem plus max-pool would leave a 32 px face 8 px wide after two layers.
    model = build_classifier("resnet18", num_outputs=1, image_size=32)
    assert model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    large = build_classifier("resnet18", num_outputs=1, image_size=128)
    assert large.conv1.stride == (2, 2)


def test_unknown_architecture_names_the_choices():
    with pytest.raises(ConfigError, match="unknown classifier arch 'vgg'.*small_cnn"):
        build_classifier("vgg", num_outputs=1, image_size=32)


def test_nonsense_sizes_are_refused():
    with pytest.raises(ConfigError, match="num_outputs=0"):
        build_classifier("small_cnn", num_outputs=0, image_size=32)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """A private, empty torch hub cache for the duration of a test (through TORCH_HOME, as a
    user sets it: `torch.hub.set_dir` would pin the hub folder for every later test)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path / "hub"


def test_missing_pretrained_weights_train_from_scratch_and_say_which_file(hub_dir, caplog):
    with caplog.at_level(logging.WARNING, logger=classifiers.__name__):
        build_classifier("resnet18", num_outputs=2, image_size=32, pretrained=True)
    assert "resnet18-f37072fd.pth" in caplog.text
    assert str(hub_dir / "checkpoints") in caplog.text


def test_cached_pretrained_weights_are_loaded_except_adapted_layers(hub_dir):
    reference = torchvision.models.resnet18()
    checkpoints = hub_dir / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(reference.state_dict(), checkpoints / "resnet18-f37072fd.pth")
    model = build_classifier("resnet18", num_outputs=2, image_size=32, pretrained=True)
    torch.testing.assert_close(model.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    # The stem and the head changed shape, so they keep their fresh initialisation.
    assert model.conv1.weight.shape != reference.conv1.weight.shape
    assert model.fc.weight.shape == (2, 512)


def test_old_densenet_key_names_are_mapped_to_current_ones():
    old = "features.denseblock1.denselayer3.norm.1.running_mean"
    assert classifiers._DENSENET_KEY.sub(r"\1\2", old) == (
        "features.denseblock1.denselayer3.norm1.running_mean"
    )


def test_registry_lists_the_three_architectures():
    assert set(ARCHITECTURES) == {"small_cnn", "resnet18", "densenet121"}
