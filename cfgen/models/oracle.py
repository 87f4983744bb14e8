"""Oracles: judges that read an image's content, trained apart from the explained classifier.

Evaluation needs a judge that is not the explained classifier: did a counterfactual change the
smile only, or also the glasses? Every oracle has one interface (`cfgen oracle fit` trains them,
`cfgen.train.oracle`; `load_oracle` reads them back, frozen):

- `oracle(images) -> (N, K)` in [0, 1], one column per name of `oracle.output_names`;
- `oracle.features(images) -> (N, D)`, the trunk's embedding: one choice of realism features
  (FID / KID, `cfgen.evaluate.realism.domain_features`), offline at any image size >= 16;
- `oracle.kind`: "factors" or "attributes".

Two kinds share the trunk and differ by what they read:
- `FactorOracle` ("factors"): every generative factor of the synthetic world, a regression into
  [0, 1], so a drift is a fraction of the factor's range (preservation metrics);
- `AttributeOracle` ("attributes"): the attribute columns of any labelled data (a folder,
  CelebA, CheXpert), a multi-label classifier as the CelebA oracle of DiVE and DiME; a
  multi-class column `digit` gives the columns `digit=0` ... `digit=9`; an attribute counts as
  present when its output is >= 0.5 (MNAC, CD).

The trunk keeps a coarse spatial layout (4x4 cells before the embedding) because position and
size are factors too; global pooling would throw them away.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cfgen.errors import CheckpointError, ConfigError
from cfgen.io import load_bundle

BUNDLE_KIND = "oracle"


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Oracle(nn.Module):
    """Trunk (conv blocks to a 4x4 grid, linear embedding) and a linear head of K outputs.

    Args:
        output_names: names of the K outputs, in order.
        in_channels: image channels.
        width: channels of the first convolution (doubled at each of the 3 downsamplings).
        num_features: D, the size of the trunk embedding (the FID feature space).

    Works at any image size >= 16 (the last feature map is pooled to 4x4).
    """

    kind = ""

    def __init__(
        self,
        output_names: Sequence[str],
        in_channels: int = 3,
        width: int = 32,
        num_features: int = 128,
    ) -> None:
        super().__init__()
        self.output_names = list(output_names)
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
        self.head = nn.Linear(num_features, len(self.output_names))

    @property
    def in_channels(self) -> int:
        return self.trunk[0][0].in_channels

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Trunk embedding: images (N, C, H, W) in [-1, 1] -> (N, D)."""
        return self.trunk(images)

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Unbounded scores (N, K); `forward` squashes them into [0, 1]."""
        return self.head(self.trunk(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Outputs (N, K) in [0, 1] of images (N, C, H, W) in [-1, 1]."""
        return torch.sigmoid(self.predict_logits(images))

    def config(self) -> dict:
        """JSON-able arguments that rebuild this oracle (stored in its bundle)."""
        return {
            "kind": self.kind,
            "output_names": self.output_names,
            "in_channels": self.in_channels,
            "width": self.trunk[0][0].out_channels,
            "num_features": self.num_features,
        }


class FactorOracle(Oracle):
    """Regressor of the synthetic world's generative factors, each in [0, 1]."""

    kind = "factors"

    @property
    def factor_names(self) -> list[str]:
        return self.output_names

    @property
    def num_factors(self) -> int:
        return len(self.output_names)


class AttributeOracle(Oracle):
    """Multi-label classifier of a data set's attributes: each output the probability that the
    attribute is present."""

    kind = "attributes"

    @property
    def attribute_names(self) -> list[str]:
        return self.output_names


ORACLES: dict[str, type[Oracle]] = {"factors": FactorOracle, "attributes": AttributeOracle}


def build_oracle(kind: str, output_names: Sequence[str], **options: int) -> Oracle:
    """An untrained oracle of `kind` (a key of `ORACLES`)."""
    if kind not in ORACLES:
        raise ConfigError(f"unknown oracle kind {kind!r}; choose one of {sorted(ORACLES)}")
    return ORACLES[kind](output_names, **options)


def load_oracle(path: str | Path, device: str | torch.device = "cpu") -> Oracle:
    """A trained oracle from its bundle (`<run dir>/oracle.pt`), frozen and in eval mode."""
    bundle = load_bundle(path, BUNDLE_KIND)
    config = dict(bundle["config"])
    kind = config.pop("kind", "factors")  # bundles written before attribute oracles
    names = config.pop("output_names", None) or config.pop("factor_names", None)
    if kind not in ORACLES or names is None:
        raise CheckpointError(
            f"{path} holds an oracle of unknown kind {kind!r} or without output names; "
            f"expected one of {sorted(ORACLES)} written by `cfgen oracle fit`"
        )
    oracle = ORACLES[kind](names, **config)
    oracle.load_state_dict(bundle["state_dict"])
    return oracle.eval().requires_grad_(False).to(device)
