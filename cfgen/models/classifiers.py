"""Image classifiers that play the black box, built by name: `build_classifier("small_cnn", ...)`.

| arch | use |
| --- | --- |
| `small_cnn` | fast CPU default for the synthetic world (32–64 px) |
| `resnet18` | torchvision ResNet-18, stem adapted to small images |
| `densenet121` | torchvision DenseNet-121: the paper's classifier (CelebA, 128 px) |

Every classifier maps images `(N, C, H, W)` in `[-1, 1]` to logits `(N, num_outputs)`, one per
attribute. ImageNet weights are never downloaded: they are used only when their file is already in
the torch hub cache (`torch.hub.get_dir()/checkpoints/`); otherwise the network trains from scratch
and a warning names the file to place there.
"""

import logging
import re
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from cfgen.errors import ConfigError
from cfgen.io import safe_torch_load

log = logging.getLogger(__name__)

# Below this size the ImageNet stem (7x7 stride-2 conv + max-pool) would discard most pixels.
SMALL_IMAGE_MAX = 64


class SmallCNN(nn.Module):
    """Four conv blocks (the last three stride 2), global average pool, linear head.

    Size-agnostic thanks to the pooling; about 0.3 M parameters at the default width.
    """

    def __init__(self, num_outputs: int, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        widths = [width, width * 2, width * 4, width * 4]
        layers: list[nn.Module] = []
        channels = in_channels
        for index, out_channels in enumerate(widths):
            stride = 1 if index == 0 else 2
            layers += [
                nn.Conv2d(channels, out_channels, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_outputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> logits (N, num_outputs)."""
        return self.head(self.pool(self.features(images)).flatten(1))


def _cached_weights(weights: torchvision.models.WeightsEnum) -> Path | None:
    """The local file of torchvision `weights`, or None (with a warning) when absent."""
    filename = Path(weights.url).name
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if path.is_file():
        return path
    log.warning(
        "pretrained weights %s not found in the torch cache; training from scratch. To use them, "
        "place %s at %s (cfgen never downloads)",
        weights,
        filename,
        path,
    )
    return None


def _load_pretrained(model: nn.Module, path: Path, rename: Callable[[str], str]) -> None:
    """Copy ImageNet weights into `model`, skipping layers whose shape was adapted."""
    pretrained = {rename(key): value for key, value in safe_torch_load(path).items()}
    own = model.state_dict()
    usable = {k: v for k, v in pretrained.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    log.info("loaded %d/%d tensors from %s", len(usable), len(own), path)


def _small_cnn(num_outputs: int, image_size: int, in_channels: int, pretrained: bool) -> nn.Module:
    if pretrained:
        log.warning("small_cnn has no pretrained weights; training from scratch")
    return SmallCNN(num_outputs, in_channels)


def _resnet18(num_outputs: int, image_size: int, in_channels: int, pretrained: bool) -> nn.Module:
    model = torchvision.models.resnet18(num_classes=num_outputs)
    small = image_size <= SMALL_IMAGE_MAX
    if small or in_channels != 3:
        kernel, stride = (3, 1) if small else (7, 2)
        model.conv1 = nn.Conv2d(in_channels, 64, kernel, stride, kernel // 2, bias=False)
    if small:
        model.maxpool = nn.Identity()
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    path = _cached_weights(weights) if pretrained else None
    if path is not None:
        _load_pretrained(model, path, rename=lambda key: key)
    return model


# Old torchvision DenseNet files name layers `norm.1`; the current module calls them `norm1`.
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _densenet121(
    num_outputs: int, image_size: int, in_channels: int, pretrained: bool
) -> nn.Module:
    model = torchvision.models.densenet121(num_classes=num_outputs)
    small = image_size <= SMALL_IMAGE_MAX
    if small or in_channels != 3:
        kernel, stride = (3, 1) if small else (7, 2)
        conv = nn.Conv2d(in_channels, 64, kernel, stride, kernel // 2, bias=False)
        model.features.conv0 = conv
    if small:
        model.features.pool0 = nn.Identity()
    weights = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1
    path = _cached_weights(weights) if pretrained else None
    if path is not None:
        _load_pretrained(model, path, rename=lambda key: _DENSENET_KEY.sub(r"\1\2", key))
    return model


ARCHITECTURES: dict[str, Callable[[int, int, int, bool], nn.Module]] = {
    "small_cnn": _small_cnn,
    "resnet18": _resnet18,
    "densenet121": _densenet121,
}


def build_classifier(
    arch: str, num_outputs: int, image_size: int, in_channels: int = 3, pretrained: bool = False
) -> nn.Module:
    """Classifier: `(N, in_channels, image_size, image_size)` -> logits `(N, num_outputs)`."""
    if arch not in ARCHITECTURES:
        raise ConfigError(
            f"unknown classifier arch {arch!r}; choose one of {sorted(ARCHITECTURES)}"
        )
    if num_outputs < 1 or image_size < 8 or in_channels < 1:
        raise ConfigError(
            f"cannot build {arch} with num_outputs={num_outputs}, image_size={image_size}, "
            f"in_channels={in_channels}: each must be positive (image_size at least 8)"
        )
    return ARCHITECTURES[arch](num_outputs, image_size, in_channels, pretrained)
