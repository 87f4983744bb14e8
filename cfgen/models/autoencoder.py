"""The autoencoder of the latent-shift baseline (Cohen et al., "Gifsplanation via Latent Shift",
MIDL 2021): images to a small code map and back.

The latent shift explains a classifier f by moving a query's code z = encode(x) along the
gradient of f(decode(z)) and decoding (`cfgen.explain.latent_shift`). The autoencoder never sees
the classifier: it is trained once per data set (`cfgen autoencoder fit`, `cfgen.train.autoencoder`)
and then serves every classifier of those images.

Encoder: a 3x3 convolution, then `downsamplings` stride-2 4x4 convolutions (BN, ReLU), then a 1x1
convolution to `code_channels`: the code is a map of side image_size / 2**downsamplings (8x8x16,
1,024 numbers, for a 32 px RGB image: 3 times fewer than pixels). The decoder mirrors it (nearest
upsampling and a 3x3 convolution per step) and ends with tanh, so decodes lie in [-1, 1] like the
data. The code is a bottleneck, so a shift changes the image only in ways the decoder learnt
from the data, and spatial, so that local parts (a mouth) keep their place.
"""

from pathlib import Path

import torch
from torch import nn

from cfgen.errors import CheckpointError, ConfigError
from cfgen.io import load_bundle

BUNDLE_KIND = "autoencoder"


def _down(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _up(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Autoencoder(nn.Module):
    """Images (N, C, S, S) in [-1, 1] <-> codes (N, code_channels, S / 2**k, S / 2**k).

    Args:
        image_size: S, divisible by 2**downsamplings.
        channels: C, image channels.
        code_channels: channels of the code map.
        downsamplings: k, stride-2 steps between the image and the code.
        width: channels of the first convolution (doubled at each downsampling, up to
            `max_width`).
        max_width: cap on the channels of the deepest feature maps.
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        code_channels: int = 16,
        downsamplings: int = 2,
        width: int = 8,
        max_width: int = 32,
    ) -> None:
        super().__init__()
        if min(code_channels, downsamplings, channels, width) < 1 or max_width < width:
            raise ConfigError(
                f"need code_channels, downsamplings, channels >= 1 and 1 <= width <= max_width; "
                f"got code_channels={code_channels}, downsamplings={downsamplings}, "
                f"channels={channels}, width={width}, max_width={max_width}"
            )
        if image_size % 2**downsamplings:
            raise ConfigError(
                f"image_size={image_size} is not divisible by 2**downsamplings = "
                f"{2**downsamplings}; resize the data (data.image_size) or use fewer downsamplings"
            )
        self.image_size, self.channels = image_size, channels
        self.code_channels, self.downsamplings = code_channels, downsamplings
        self.width, self.max_width = width, max_width
        widths = [min(width * 2**i, max_width) for i in range(downsamplings + 1)]
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            *(_down(widths[i], widths[i + 1]) for i in range(downsamplings)),
            nn.Conv2d(widths[-1], code_channels, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(code_channels, widths[-1], 3, padding=1),
            nn.ReLU(inplace=True),
            *(_up(widths[i + 1], widths[i]) for i in reversed(range(downsamplings))),
            nn.Conv2d(width, channels, 3, padding=1),
            nn.Tanh(),
        )

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """Shape of one code, (code_channels, S / 2**k, S / 2**k)."""
        side = self.image_size // 2**self.downsamplings
        return (self.code_channels, side, side)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, C, S, S) in [-1, 1] -> codes (N, *code_shape)."""
        return self.encoder(images)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (N, *code_shape) -> images (N, C, S, S) in [-1, 1]."""
        return self.decoder(codes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The reconstruction decode(encode(x)), shaped like `images`."""
        return self.decode(self.encode(images))

    def config(self) -> dict:
        """JSON-able arguments that rebuild this autoencoder (stored in its bundle)."""
        return {
            "image_size": self.image_size,
            "channels": self.channels,
            "code_channels": self.code_channels,
            "downsamplings": self.downsamplings,
            "width": self.width,
            "max_width": self.max_width,
        }


def load_autoencoder(path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """A trained autoencoder from its bundle (`<run dir>/autoencoder.pt`), frozen, in eval mode."""
    bundle = load_bundle(path, BUNDLE_KIND)
    autoencoder = Autoencoder(**bundle["config"])
    try:
        autoencoder.load_state_dict(bundle["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match its own config: {error}") from error
    return autoencoder.eval().requires_grad_(False).to(device)
