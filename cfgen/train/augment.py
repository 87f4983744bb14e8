"""Random views of images: for the classifier term, and for the discriminator.

`RandomViews`: views of generated images for the classifier term (expectation over
transformations).

A generator trained through one classifier's gradient can move it with pixel patterns that no other
classifier reads (docs/DESIGN.md, "Evaluation choices"). Scoring the classifier on a randomly
shifted, blurred and noised view of each generated image, a fresh draw at every step, rewards only
changes that survive such small perturbations, as a semantic change does and an adversarial pattern
does not (Athalye et al., "Synthesizing robust adversarial examples", ICML 2018). It needs nothing
but the black box and the images.

`DiscriminatorViews`: differentiable augmentation of every image the discriminator sees, real and
generated alike, in its own step and in the generator's (DiffAugment: Zhao et al.,
"Differentiable augmentation for data-efficient GAN training", NeurIPS 2020). On a small data set
the discriminator learns the training images by heart and then rewards the generator for copying
them rather than for realism; judging randomly translated and cut-out views of both keeps it from
memorising. Both sides get the same kind of views, so the images the discriminator must tell apart
are still the real and the generated ones; the generator's images themselves are never augmented.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from cfgen.errors import ConfigError


def random_boxes(images: torch.Tensor, low: float = 0.25, high: float = 0.5) -> torch.Tensor:
    """One random box per image (N, C, H, W) -> masks (N, 1, H, W) of 0/1: sides drawn in
    [low, high] of the image's, anywhere inside it. What the inpainter learns to fill in
    (`weights.inpaint`): any part of a real image, from the rest of it and its bin."""
    n, _, height, width = images.shape
    device = images.device
    sides = torch.rand(n, 2, device=device) * (high - low) + low
    box_h = (sides[:, 0] * height).round().clamp(1, height)
    box_w = (sides[:, 1] * width).round().clamp(1, width)
    top = (torch.rand(n, device=device) * (height - box_h + 1)).floor()
    left = (torch.rand(n, device=device) * (width - box_w + 1)).floor()
    rows = torch.arange(height, device=device)[None, :, None]
    columns = torch.arange(width, device=device)[None, None, :]
    inside_rows = (rows >= top[:, None, None]) & (rows < (top + box_h)[:, None, None])
    inside_columns = (columns >= left[:, None, None]) & (columns < (left + box_w)[:, None, None])
    return (inside_rows & inside_columns).float()[:, None]


def inpainting_masks(images: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """What the inpainter learns to fill in, per image (N, C, H, W) -> (N, 1, H, W): for half
    the images a random box (`random_boxes`: any part of a real image), for the other half the
    mask the generator chose for this batch (`chosen`, detached): the very regions it will be
    asked to redraw, so that it learns what they hold in each bin."""
    boxes = random_boxes(images)
    take_box = torch.rand(len(images), 1, 1, 1, device=images.device) < 0.5
    return torch.where(take_box, boxes, chosen)


def cutmix_negatives(images: torch.Tensor, reach: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real images (N, C, H, W) with a small box (sides 1/8 to 1/4 of the image's) replaced by
    the same box of the next image of the batch, and the windows (N, H, W), 0/1, of a patch
    critic of `reach` pixels either side that see some of the foreign box: the negatives a
    patch critic learns are fake (`discriminator.patch_negatives: cutmix`), a part that does
    not belong where it is, as a smudge does (negative data augmentation: Sinha et al.,
    "Negative data augmentation", ICLR 2021)."""
    boxes = random_boxes(images, low=1 / 8, high=1 / 4)
    negatives = torch.where(boxes > 0, images.roll(1, dims=0), images)
    windows = F.max_pool2d(boxes, 2 * reach + 1, stride=1, padding=reach)
    return negatives, windows[:, 0]


# A pixel counts as edited when some channel moved by more than this (images in [-1, 1]: 1/40 of
# the range): a blend's mask leaks a little everywhere, far below what a person sees.
EDITED = 0.05


def edited_windows(images: torch.Tensor, frames: torch.Tensor, reach: int) -> torch.Tensor:
    """The windows (N, H, W), 0/1, of a patch critic of `reach` pixels either side that see a
    pixel the `frames` (N, C, H, W) changed in their `images` by more than `EDITED`: what a
    patch critic learns is fake in a frame (`discriminator.patch_fakes: edited`). The other
    windows hold the query's own pixels, real ones."""
    changed = ((frames - images).abs().amax(dim=1, keepdim=True) > EDITED).to(images)
    return F.max_pool2d(changed, 2 * reach + 1, stride=1, padding=reach)[:, 0]


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


def _translate(images: torch.Tensor, ratio: float = 1 / 8) -> torch.Tensor:
    """Each image moved by its own whole-pixel (dx, dy), each uniform in [-r, r] with r = `ratio`
    of the side; what comes in from outside is 0 (mid-grey in [-1, 1])."""
    n, _, height, width = images.shape
    reach_y, reach_x = round(height * ratio), round(width * ratio)
    device = images.device
    dy = torch.randint(-reach_y, reach_y + 1, (n, 1, 1), device=device)
    dx = torch.randint(-reach_x, reach_x + 1, (n, 1, 1), device=device)
    # Output pixel (y, x) reads input pixel (y - dy, x - dx).
    rows = torch.arange(height, device=device)[None, :, None] - dy
    cols = torch.arange(width, device=device)[None, None, :] - dx
    # A one-pixel ring of zeros around each image: every read from outside lands on it.
    padded = F.pad(images, (1, 1, 1, 1))
    rows = (rows + 1).clamp(0, height + 1).expand(n, height, width)
    cols = (cols + 1).clamp(0, width + 1).expand(n, height, width)
    batch = torch.arange(n, device=device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def _cutout(images: torch.Tensor, ratio: float = 1 / 2) -> torch.Tensor:
    """Each image with a square of side `ratio` of its own (centre uniform over the image, the
    square clipped at the border) set to 0."""
    n, _, height, width = images.shape
    side_y, side_x = round(height * ratio), round(width * ratio)
    device = images.device
    top = torch.randint(0, height + 1, (n, 1, 1), device=device) - side_y // 2
    left = torch.randint(0, width + 1, (n, 1, 1), device=device) - side_x // 2
    rows = torch.arange(height, device=device)[None, :, None]
    cols = torch.arange(width, device=device)[None, None, :]
    inside = (rows >= top) & (rows < top + side_y) & (cols >= left) & (cols < left + side_x)
    return images * (~inside)[:, None].to(images.dtype)


def _colour(images: torch.Tensor) -> torch.Tensor:
    """Each image's brightness shifted by U(-0.5, 0.5), its saturation scaled by U(0, 2) and its
    contrast by U(0.5, 1.5) (DiffAugment's colour policy, on [-1, 1] images)."""
    n, device = images.shape[0], images.device
    images = images + (torch.rand(n, 1, 1, 1, device=device) - 0.5)
    grey = images.mean(dim=1, keepdim=True)
    images = (images - grey) * (2 * torch.rand(n, 1, 1, 1, device=device)) + grey
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * (torch.rand(n, 1, 1, 1, device=device) + 0.5) + mean


DISCRIMINATOR_VIEWS = {"colour": _colour, "translation": _translate, "cutout": _cutout}


@dataclass(frozen=True)
class DiscriminatorViews:
    """(N, C, H, W) -> (N, C, H, W), differentiable: the views of `policy`, comma-separated names
    of `DISCRIMINATOR_VIEWS` applied in that order, each image its own draw. "" is the identity."""

    policy: str = ""

    def __post_init__(self) -> None:
        unknown = [name for name in self.names if name not in DISCRIMINATOR_VIEWS]
        if unknown:
            raise ConfigError(
                f"unknown discriminator view(s) {unknown} in {self.policy!r}; use a "
                f"comma-separated list of {list(DISCRIMINATOR_VIEWS)}, or '' for none"
            )

    @property
    def names(self) -> list[str]:
        return [name.strip() for name in self.policy.split(",") if name.strip()]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            images = DISCRIMINATOR_VIEWS[name](images)
        return images
