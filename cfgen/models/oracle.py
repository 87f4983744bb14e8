"""The factor oracle: reads every generative factor of the synthetic world off an image.

Evaluation needs a judge that is not the explained classifier: did a counterfactual change the
smile only, or also the glasses? On the synthetic world the true factors of every training image
are known, so cfgen trains a regressor of all of them (`cfgen oracle fit`, `cfgen.train.oracle`)
and uses it

- as the oracle of the preservation metrics (`cfgen.evaluate.preservation`): `forward(x)` gives
  every factor in [0, 1], so a drift is a fraction of the factor's range;
- as the domain encoder of FID / KID (`cfgen.evaluate.realism.domain_features`): `features(x)`,
  the trunk's (N, D) embedding, encodes exactly the factors a face is made of, and works offline.

The trunk keeps a coarse spatial layout (4x4 cells before the embedding) because position and
size are factors too; global pooling would throw them away.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cfgen.io import load_bundle

BUNDLE_KIND = "oracle"


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FactorOracle(nn.Module):
    """Multi-output regressor of the generative factors.

    Args:
        factor_names: names of the F factors, in output order.
        in_channels: image channels.
        width: channels of the first convolution (doubled at each of the 3 downsamplings).
        num_features: D, the size of the trunk embedding (the FID feature space).

    Works at any image size >= 16 (the last feature map is pooled to 4x4).
    """

    def __init__(
        self,
        factor_names: Sequence[str],
        in_channels: int = 3,
        width: int = 32,
        num_features: int = 128,
    ) -> None:
        super().__init__()
        self.factor_names = list(factor_names)
        self.num_features = num_features
        self.trunk = nn.Sequential(
            _conv_block(in_channels, width, 1),
            _conv_block(width, width, 2),
            _conv_block(width, 2 * width, 2),
            _conv_block(2 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(4 * width * 16, num_features),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(num_features, len(self.factor_names))

    @property
    def num_factors(self) -> int:
        return len(self.factor_names)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Trunk embedding: images (N, C, H, W) in [-1, 1] -> (N, D)."""
        return self.trunk(images)

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Unbounded factor scores (N, F); `forward` squashes them into [0, 1]."""
        return self.head(self.trunk(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Factors (N, F) in [0, 1] of images (N, C, H, W) in [-1, 1]."""
        return torch.sigmoid(self.predict_logits(images))

    def config(self) -> dict:
        """JSON-able arguments that rebuild this oracle (stored in its bundle)."""
        return {
            "factor_names": self.factor_names,
            "in_channels": self.trunk[0][0].in_channels,
            "width": self.trunk[0][0].out_channels,
            "num_features": self.num_features,
        }


def load_oracle(path: str | Path, device: str | torch.device = "cpu") -> FactorOracle:
    """A trained oracle from its bundle (`<run dir>/oracle.pt`), frozen and in eval mode."""
    bundle = load_bundle(path, BUNDLE_KIND)
    oracle = FactorOracle(**bundle["config"])
    oracle.load_state_dict(bundle["state_dict"])
    return oracle.eval().requires_grad_(False).to(device)
