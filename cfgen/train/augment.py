"""Random views of generated images for the classifier term (expectation over transformations).

A generator trained through one classifier's gradient can move it with pixel patterns that no
other classifier reads (METHOD.md §5-6). Scoring the classifier on a randomly shifted, blurred
and noised view of each generated image, a fresh draw at every step, rewards only changes that
survive such small perturbations, as a semantic change does and an adversarial pattern does not
(Athalye et al., "Synthesizing robust adversarial examples", ICML 2018). It needs nothing but the
black box and the images.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF


@dataclass(frozen=True)
class RandomViews:
    """(N, C, H, W) -> (N, C, H, W), differentiable: each image shifted by up to `shift` pixels
    (its own draw, sub-pixel, border pixels repeated), the batch blurred with a Gaussian of
    sigma drawn in [0, `blur`] pixels, then Gaussian noise of std `noise` added. All zero: the
    identity."""

    shift: float = 0.0
    blur: float = 0.0
    noise: float = 0.0

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.blur > 0 or self.noise > 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.shift > 0:
            images = _shift(images, self.shift)
        if self.blur > 0:
            sigma = float(torch.empty(()).uniform_(0.0, self.blur))
            if sigma > 0.1:  # below that the 3-tap kernel is the identity to float precision
                size = 2 * int(2 * sigma + 0.5) + 1
                images = TF.gaussian_blur(images, [size, size], [sigma, sigma])
        if self.noise > 0:
            images = images + self.noise * torch.randn_like(images)
        return images


def _shift(images: torch.Tensor, pixels: float) -> torch.Tensor:
    """Each image translated by its own (dx, dy) uniform in [-pixels, pixels]."""
    n, _, height, width = images.shape
    offsets = (torch.rand(n, 2, device=images.device) * 2 - 1) * pixels
    theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    # affine_grid works in [-1, 1] coordinates: one pixel is 2 / size.
    theta[:, 0, 2] = offsets[:, 0] * 2 / width
    theta[:, 1, 2] = offsets[:, 1] * 2 / height
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)
