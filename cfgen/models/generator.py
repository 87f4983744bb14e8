"""The explainer's generator I_f(x, c): a residual encoder-decoder conditioned on the target bin.

The official model (docs/DESIGN.md, "Official defaults") is `Generator(skips=False,
output="image")`: a conv, residual down-blocks to a 4x4 embedding, residual up-blocks back, BN,
ReLU, conv, tanh; conditional BN keyed by the target bin in every block, no spectral norm, no path
from the query to the output other than through the 4x4 embedding. Depth follows the image size (3
levels at 32 px, 5 at the paper's 128 px); width doubles per level from `base_width` up to
`max_width`.

Options that let the generator keep what the classifier does not use (docs/DESIGN.md, "The
blend", which cites the ablation that chose between them):
- `skips`: the decoder adds the encoder's features of the same resolution (U-Net style, by
  addition, so no weights are added);
- `output` (`OUTPUTS`): how the head's channels become the image: `image` (official: tanh, the
  whole image is redrawn), `residual` (x + tanh(Δ), clipped to [-1, 1]) or `blend`
  (m · tanh(G) + (1 - m) · x with a mask m = sigmoid(·) in [0, 1] of one channel, returned by
  `render` so that training can penalise its area and the mask can be read as a saliency map)
  or `difference` (x + G(x, c) - G(x, c_x), c_x the query's own bin: the official redraw's
  change between the two bins added to the query, so the query's own bin returns it exactly;
  `render` and `forward` then need `source_bin`, and the redraws are returned as `drawn` and
  `reference`);
- `edit_downsample`: the head's output is low-passed (average-pooled by this factor and
  upsampled bilinearly) before it is combined with the query: a smooth edit, no pixel noise;
- `norm`: `batch` (official conditional batch norm) or `group` (conditional group norm: each
  image normalised on its own, the same computation in training and at inference; see
  `cfgen.models.blocks.normalisation`);
- `mask_downsample` (`blend` and `inpaint`): the same for the mask channel alone, so that the
  blend chooses regions of the generator's redraw rather than single pixels, while what is drawn
  keeps the head's resolution;
- `output="inpaint"`: the network takes the image and a mask of what is hidden from it (one
  more input channel) and returns what to draw and a mask. `render` makes two passes: the first
  sees the whole query (nothing hidden) and chooses the mask m of what to redraw for the target
  bin; the second sees the query with m hidden, x (1 - m), and draws c(x, m, bin) there; the
  image is m c + (1 - m) x. `inpaint(x, hidden, bins)` is the second pass alone: trained to
  reconstruct real images under random masks in their own bin, it learns what the hidden parts
  of real images look like in each bin, so that what an edit draws is what the data draw
  (docs/DESIGN.md, "Edits drawn by an inpainter");
- `output="warp"` with `reach` (`cfgen.models.rearrange`): the image is the query's own pixels
  moved by a flow of at most `reach` pixels; no colour is drawn that the query does not hold
  nearby. `"warp_blend"` blends a drawing over the warped query, m G + (1 - m) warp(x), so that
  parts can move and strokes be drawn (docs/DESIGN.md, "Edits that move the query's pixels");
- `palette` (`blend` and `warp_blend`, `cfgen.models.palette`): the drawing is, per pixel, a mix
  of the query's `palette` main colours, so that no colour is drawn that the query does not
  hold (docs/DESIGN.md, "Edits drawn in the query's colours").
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cfgen.errors import ConfigError
from cfgen.models import palette, rearrange
from cfgen.models.blocks import GeneratorBlock, channel_widths, levels_for, normalisation
from cfgen.options import check_choices


class Rendered(NamedTuple):
    """A generator's output: `image` (N, C, H, W) in [-1, 1] and, for `output="blend"`, the
    blend `mask` (N, 1, H, W) in [0, 1] (1 = drawn by the generator, 0 = kept from the query) and
    what was `drawn` (N, C, H, W), the generator's whole-image redraw that the mask blends in;
    for `output="difference"`, `drawn` is the redraw in the target bin and `reference` the redraw
    in the query's own bin; for `warp` and `warp_blend`, `flow` (N, 2, H, W) is the flow in
    pixels that the query was resampled along."""

    image: torch.Tensor
    mask: torch.Tensor | None = None
    drawn: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    flow: torch.Tensor | None = None


def _image(head: torch.Tensor, query: torch.Tensor) -> Rendered:
    return Rendered(torch.tanh(head))


def _residual(head: torch.Tensor, query: torch.Tensor) -> Rendered:
    return Rendered((query + torch.tanh(head)).clamp(-1.0, 1.0))


def _low_pass(image: torch.Tensor, factor: int) -> torch.Tensor:
    """`image` average-pooled by `factor` and upsampled bilinearly back to its size."""
    if factor == 1:
        return image
    low = F.avg_pool2d(image, factor)
    return F.interpolate(low, size=image.shape[-2:], mode="bilinear", align_corners=False)


def _blend(
    head: torch.Tensor, query: torch.Tensor, colours: torch.Tensor | None = None
) -> Rendered:
    """m G + (1 - m) query; G is tanh of the head's channels, or with `colours` (N, k, C) the
    mix of those colours the channels choose (`cfgen.models.palette`)."""
    logits, mask = head[:, :-1], torch.sigmoid(head[:, -1:])
    drawn = torch.tanh(logits) if colours is None else palette.draw(logits, colours)
    return Rendered(mask * drawn + (1.0 - mask) * query, mask, drawn)


# Output kind -> (extra head channels beyond the image's, how head + query become the output).
OUTPUTS: dict[str, tuple[int, Callable[[torch.Tensor, torch.Tensor], Rendered]]] = {
    "image": (0, _image),
    "residual": (0, _residual),
    "blend": (1, _blend),
    "difference": (0, _image),  # each decode is a redraw; `render` takes their difference
    "inpaint": (1, _blend),  # the second pass's drawing, blended through the first pass's mask
}
# Outputs built on a warp of the query (`cfgen.models.rearrange`): their heads hold the flow's
# two channels, and warp_blend's drawing and mask after them.
MOVES = ("warp", "warp_blend")
MASKED = ("blend", "inpaint", "warp_blend")
# Outputs that can draw in the query's main colours (`palette`).
PAINTED = ("blend", "warp_blend")
# The relaxed Bernoulli's temperature of the inpainter's mask in training (`choose_mask`).
MASK_TEMPERATURE = 0.5


@dataclass(frozen=True)
class GeneratorOptions:
    """The generator's architecture, apart from the image size, channels and bins it is for.

    Args:
        width: channels at full resolution; they double at each level down to the 4x4
            embedding.
        max_width: the most channels of any level.
        skips: the decoder adds the encoder's features of the same resolution (U-Net style,
            by addition, no weights added).
        output: how the head's channels become the image: image (official: the whole image
            redrawn, tanh), residual (x + tanh(delta)), blend (m * G + (1 - m) * x through a
            learned mask m, which the mask loss weights penalise), difference
            (x + G(x, c) - G(x, c_x): the redraw's change between the two bins added to x) or
            inpaint (a mask m chosen from x, then m filled in from x with m hidden: what is
            drawn is learned by reconstructing real images, weights.inpaint), warp (x
            resampled along a flow of at most `reach` pixels) or warp_blend (m G + (1 - m) warp(x):
            the blend over the warped query).
        edit_downsample: the edit is average-pooled by this factor and upsampled back before
            it is combined with the query (a smooth edit, no pixel noise); a divisor of the
            image size, 1 = full resolution.
        mask_downsample: the same for the mask alone (blend and inpaint only), so that it
            chooses regions rather than single pixels.
        norm: conditional batch norm (official; its inference statistics: the averaging
            group's bn_statistics) or group norm (each image normalised on its own, the same
            computation in training and at inference).
        reach: how far, in pixels, the warp moves a pixel (warp and warp_blend only).
        palette: 0 (the official: any colour) or how many of the query's main colours a blend
            or warp_blend draws with, each drawn pixel a mix of them (grey stays grey).
    """

    width: int = 32
    max_width: int = 256
    skips: bool = False
    output: Literal["image", "residual", "blend", "difference", "inpaint", "warp", "warp_blend"] = (
        "image"
    )
    edit_downsample: int = 1
    mask_downsample: int = 1
    norm: Literal["batch", "group"] = "batch"
    reach: int = 3
    palette: int = 0

    def __post_init__(self) -> None:
        check_choices(self, "generator")

    def generator_config(self, image_size: int, channels: int, n_bins: int) -> dict[str, Any]:
        """The keyword arguments of `Generator` for these options: what an explainer bundle
        records as its `generator`, and the one place they are written."""
        return {
            "image_size": image_size,
            "channels": channels,
            "n_bins": n_bins,
            "base_width": self.width,
            "max_width": self.max_width,
            "skips": self.skips,
            "output": self.output,
            "edit_downsample": self.edit_downsample,
            "mask_downsample": self.mask_downsample,
            "norm": self.norm,
            "reach": self.reach,
            "palette": self.palette,
        }


class Generator(nn.Module):
    """I_f(x, c): (N, C, H, W) in [-1, 1], (N,) long bins -> (N, C, H, W) in [-1, 1]."""

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        n_bins: int = 10,
        base_width: int = 32,
        max_width: int = 256,
        embedding_size: int = 4,
        skips: bool = False,
        output: str = "image",
        edit_downsample: int = 1,
        mask_downsample: int = 1,
        norm: str = "batch",
        reach: int = 3,
        palette: int = 0,
    ) -> None:
        super().__init__()
        if output not in (*OUTPUTS, *MOVES):
            raise ConfigError(
                f"unknown generator output {output!r}; choose one of {[*OUTPUTS, *MOVES]}"
            )
        if output in MOVES and not 1 <= reach < image_size // 2:
            raise ConfigError(
                f"reach must be between 1 and {image_size // 2 - 1} pixels for {image_size} px "
                f"images, got {reach}"
            )
        for name, factor in (("edit", edit_downsample), ("mask", mask_downsample)):
            if factor < 1 or image_size % factor:
                raise ConfigError(
                    f"{name}_downsample must be a divisor of image_size {image_size}, got {factor}"
                )
        if palette and (output not in PAINTED or palette < 2):
            raise ConfigError(
                f"palette draws a blend in the query's main colours: set output='blend' or "
                f"'warp_blend' and palette to 2 or more colours (0 = any colour), got "
                f"output={output!r}, palette={palette}"
            )
        if mask_downsample > 1 and output not in MASKED:
            raise ConfigError(
                "mask_downsample needs a mask: set output='blend', 'warp_blend' or 'inpaint'"
            )
        self.image_size = image_size
        self.channels = channels
        self.n_bins = n_bins
        self.skips = skips
        self.output = output
        self.edit_downsample = edit_downsample
        self.mask_downsample = mask_downsample
        self.norm = norm
        self.reach = reach
        self.palette = palette
        levels = levels_for(image_size, embedding_size)
        widths = channel_widths(levels, base_width, max_width)
        # The inpainter also reads which pixels are hidden from it.
        inputs = channels + (1 if output == "inpaint" else 0)
        self.stem = nn.Conv2d(inputs, widths[0], 3, padding=1)
        self.down = nn.ModuleList(
            GeneratorBlock(widths[i], widths[i + 1], n_bins, "down", norm) for i in range(levels)
        )
        self.up = nn.ModuleList(
            GeneratorBlock(widths[i + 1], widths[i], n_bins, "up", norm)
            for i in reversed(range(levels))
        )
        drawing = palette or channels  # a weight per colour, or the colour itself
        if output in MOVES:
            head_channels = 2 if output == "warp" else 2 + drawing + 1  # flow (+ drawing, mask)
            self._combine = self._move
        elif palette:
            head_channels, self._combine = drawing + 1, self._paint
        else:
            extra_channels, self._combine = OUTPUTS[output]
            head_channels = channels + extra_channels
        self.head = nn.Sequential(
            normalisation(norm, widths[0], affine=True),
            nn.ReLU(),
            nn.Conv2d(widths[0], head_channels, 3, padding=1),
        )
        if output in MOVES:  # start at the identity: no flow
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def _colours(self, query: torch.Tensor) -> torch.Tensor | None:
        return palette.main_colours(query, self.palette) if self.palette else None

    def _paint(self, head: torch.Tensor, query: torch.Tensor) -> Rendered:
        return _blend(head, query, self._colours(query))

    def _move(self, head: torch.Tensor, query: torch.Tensor) -> Rendered:
        flow = rearrange.flow(head, self.reach)
        warped = rearrange.warp(query, flow)
        if self.output == "warp":
            return Rendered(warped, flow=flow)
        # m G + (1 - m) warp(x)
        return _blend(head[:, 2:], warped, self._colours(query))._replace(flow=flow)

    def encode(
        self, x: torch.Tensor, target_bin: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Features of `x` under bin `target_bin` at every level, full resolution first; the
        last is the embedding, (N, W_max, 4, 4). The inpainter also reads `hidden` (N, 1, H,
        W), the mask of what is hidden from it (default: nothing), with x already hidden."""
        if self.output == "inpaint":
            hidden = torch.zeros_like(x[:, :1]) if hidden is None else hidden
            x = torch.cat([x, hidden.to(x)], dim=1)
        features = [self.stem(x)]
        for block in self.down:
            features.append(block(features[-1], target_bin))
        return features

    def decode(
        self, features: list[torch.Tensor], query: torch.Tensor, target_bin: torch.Tensor
    ) -> Rendered:
        """The image rendered for bin `target_bin` from `encode`'s features of `query`.

        Only the embedding (`features[-1]`) is read unless `skips` is set; `query` is read only
        by the `residual` and `blend` outputs.
        """
        head = _low_pass(self._head(features, target_bin), self.edit_downsample)
        if self.mask_downsample > 1:
            mask_logit = _low_pass(head[:, -1:], self.mask_downsample)
            head = torch.cat([head[:, :-1], mask_logit], dim=1)
        return self._combine(head, query)

    def _head(self, features: list[torch.Tensor], target_bin: torch.Tensor) -> torch.Tensor:
        """The decoder's head output (N, C + extra, H, W) from `encode`'s features."""
        h = features[-1]
        for level, block in zip(reversed(range(len(self.up))), self.up, strict=True):
            h = block(h, target_bin)
            if self.skips:
                h = h + features[level]
        return self.head(h)

    def choose_mask(self, x: torch.Tensor, target_bin: torch.Tensor) -> torch.Tensor:
        """The inpainter's mask of what to redraw in `x` for `target_bin`, (N, 1, H, W) of 0/1
        blocks of `mask_downsample` pixels: each block redrawn with the probability the first
        pass gives it. In training a block is drawn from a relaxed Bernoulli (Gumbel-sigmoid,
        temperature `MASK_TEMPERATURE`) and rounded, its gradient the relaxation's (straight
        through), so that the hidden blocks are truly hidden from the second pass and the
        classifier term can still move the probabilities; at inference a block is redrawn when
        its probability exceeds 1/2. What FIDO does (Chang et al., ICLR 2019)."""
        logits = self._head(self.encode(x, target_bin), target_bin)[:, -1:]
        if self.mask_downsample > 1:
            logits = F.avg_pool2d(logits, self.mask_downsample)
        if self.training:
            uniform = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
            noise = torch.log(uniform) - torch.log1p(-uniform)
            relaxed = torch.sigmoid((logits + noise) / MASK_TEMPERATURE)
            blocks = (relaxed > 0.5).to(relaxed) + relaxed - relaxed.detach()
        else:
            blocks = (logits > 0).to(logits)
        if self.mask_downsample > 1:
            blocks = F.interpolate(blocks, scale_factor=self.mask_downsample, mode="nearest")
        return blocks

    def inpaint(
        self, x: torch.Tensor, hidden: torch.Tensor, target_bin: torch.Tensor
    ) -> torch.Tensor:
        """What the inpainter draws where `hidden` (N, 1, H, W) in [0, 1] hides `x` (N, C, H,
        W), for bin `target_bin`: (N, C, H, W) in [-1, 1], over the whole image."""
        concealed = x * (1.0 - hidden)
        return self.decode(self.encode(concealed, target_bin, hidden), x, target_bin).drawn

    def render(
        self, x: torch.Tensor, target_bin: torch.Tensor, source_bin: torch.Tensor | None = None
    ) -> Rendered:
        """`x` rendered in bin `target_bin`, with the blend mask when there is one; the
        `difference` output also needs `source_bin`, the bin of f(x)."""
        if self.output == "inpaint":
            mask = self.choose_mask(x, target_bin)
            content = self.inpaint(x, mask.detach(), target_bin)
            return Rendered(mask * content + (1.0 - mask) * x, mask, content)
        drawn = self.decode(self.encode(x, target_bin), x, target_bin)
        if self.output != "difference":
            return drawn
        if source_bin is None:
            raise ConfigError("the difference output needs the queries' own bins (source_bin)")
        reference = self.decode(self.encode(x, source_bin), x, source_bin).image
        image = (x + drawn.image - reference).clamp(-1.0, 1.0)
        return Rendered(image, drawn=drawn.image, reference=reference)

    def forward(
        self, x: torch.Tensor, target_bin: torch.Tensor, source_bin: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.render(x, target_bin, source_bin).image
