"""What a cartoon face is made of: its factors, regions, colours and parts.

Every part is a signed-distance field over the pixel grid, in face units (fractions of the face's
vertical radius, so the same factors give the same face at any size), turned into an
anti-aliased coverage by a smooth step one pixel wide. Strokes keep at least about one pixel of
width so that the smile and the glasses stay visible at 32 px. Parts are grouped by the region
they belong to; each group also carries its *extent*, where it could paint for any value of its
own factor (glasses as if worn, the box every mouth curvature stays in), which becomes the
region's mask in `cfgen.data.render`.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

FACTOR_NAMES = (
    "smile",  # mouth curvature: 0 strong frown, 0.5 flat, 1 big smile
    "eye_size",
    "glasses",  # 0 or 1
    "hair_colour",  # 0 blond, 1 black
    "skin_tone",  # 0 pale, 1 dark
    "background",  # 0 sky blue, 1 green
    "face_size",
    "face_x",  # 0 left, 1 right
    "face_y",  # 0 up, 1 down
)
REGION_NAMES = ("mouth", "eyes", "glasses", "hair", "face", "background")

_PALE_SKIN, _DARK_SKIN = (0.98, 0.85, 0.74), (0.42, 0.26, 0.16)
_BLOND_HAIR, _BLACK_HAIR = (0.93, 0.78, 0.38), (0.10, 0.07, 0.06)
_SKY_BACKGROUND, _GREEN_BACKGROUND = (0.62, 0.80, 0.97), (0.40, 0.66, 0.42)
_SHIRT, _EYE_WHITE, _PUPIL = (0.28, 0.30, 0.48), (1.0, 1.0, 1.0), (0.08, 0.08, 0.14)
_LIPS, _FRAME = (0.60, 0.08, 0.12), (0.04, 0.04, 0.05)

# Face geometry, in units of the face's vertical radius.
_EYE_X, _EYE_Y, _EYE_MIN, _EYE_RANGE = 0.33, -0.08, 0.09, 0.09
_MOUTH_Y, _MOUTH_HALF_WIDTH, _MOUTH_BEND = 0.48, 0.36, 0.5
_LENS_RADIUS = 0.25


@dataclass
class Layer:
    """One painted part: coverage `alpha` (N, 1, H, W), `colour` (N, 3, 1, 1) or (N, 3, H, W)."""

    alpha: Tensor
    colour: Tensor


def _coverage(distance_px: Tensor) -> Tensor:
    """Anti-aliased coverage of a shape from its signed distance in pixels (negative inside)."""
    t = (0.5 - distance_px).clamp_(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ellipse(u: Tensor, v: Tensor, cu, cv, ru, rv) -> Tensor:
    """Approximate signed distance to an axis-aligned ellipse, in face units."""
    scaled = torch.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2)
    return (scaled - 1.0) * min(ru, rv)


def _segment(u: Tensor, v: Tensor, start: tuple, end: tuple) -> Tensor:
    """Distance to a line segment from `start` to `end` (u, v), in face units."""
    du, dv = end[0] - start[0], end[1] - start[1]
    t = (((u - start[0]) * du + (v - start[1]) * dv) / (du * du + dv * dv)).clamp(0.0, 1.0)
    return torch.sqrt((u - start[0] - t * du) ** 2 + (v - start[1] - t * dv) ** 2)


def _mouth_box_distance(u: Tensor, v: Tensor) -> Tensor:
    """Distance to the box that holds the mouth curve for every smile, in face units."""
    box_u = (u.abs() - _MOUTH_HALF_WIDTH).clamp(min=0.0)
    box_v = ((v - _MOUTH_Y).abs() - _MOUTH_BEND / 4).clamp(min=0.0)
    return torch.sqrt(box_u * box_u + box_v * box_v)


def _mouth_distance(u: Tensor, v: Tensor, bend: Tensor, box_distance: Tensor) -> Tensor:
    """Distance to the mouth curve v = MOUTH_Y + bend * (1/2 - (u / w)^2) for |u| <= w.

    bend > 0 lifts the corners (a smile), bend < 0 drops them (a frown); |bend| <= MOUTH_BEND / 2
    keeps the curve inside its box. The vertical offset divided by the slope factor is a good
    estimate near the curve; far from it, the distance to the box is the better lower bound, and
    taking the larger of the two keeps the mouth inside its mask.
    """
    w = _MOUTH_HALF_WIDTH
    clamped = u.clamp(-w, w)
    curve = _MOUTH_Y + bend * (0.5 - (clamped / w) ** 2)
    slope = -2.0 * bend * clamped / (w * w)
    estimate = torch.sqrt((u - clamped) ** 2 + (v - curve) ** 2 / (1.0 + slope * slope))
    return torch.maximum(estimate, box_distance)


def _lerp_colour(low: tuple, high: tuple, amount: Tensor) -> Tensor:
    """Per-image colour between `low` and `high`: amount (N,) -> (N, 3, 1, 1)."""
    low_t = torch.tensor(low, device=amount.device)
    high_t = torch.tensor(high, device=amount.device)
    return torch.lerp(low_t, high_t, amount[:, None]).view(-1, 3, 1, 1)


def _constant_colour(rgb: tuple, reference: Tensor) -> Tensor:
    return torch.tensor(rgb, device=reference.device).view(1, 3, 1, 1)


def face_frame(factors: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Face coordinates u (N, 1, 1, W), v (N, 1, H, 1) in face units; radius (N, 1, 1, 1) in px.

    The face is centred at the image centre (slightly low, to leave room for the hair), moved by
    up to 10% of the image by `face_x` / `face_y` and scaled by `face_size`.
    """
    column = dict(zip(FACTOR_NAMES, factors.unbind(1), strict=True))
    view = (-1, 1, 1, 1)
    radius = (size * (0.26 + 0.10 * column["face_size"])).view(view)
    centre_x = (size * (0.5 + 0.2 * (column["face_x"] - 0.5))).view(view)
    centre_y = (size * (0.54 + 0.12 * (column["face_y"] - 0.5))).view(view)
    grid = torch.arange(size, device=factors.device, dtype=factors.dtype) + 0.5
    u = (grid.view(1, 1, 1, size) - centre_x) / radius
    v = (grid.view(1, 1, size, 1) - centre_y) / radius
    return u, v, radius


@dataclass
class Group:
    """Layers of one region, painted in order; `extent` (N, 1, H, W) is where the region could
    paint for any value of its own factor (the mask before occlusion)."""

    region: str | None
    layers: list[Layer]
    extent: Tensor | None = None


class Painter:
    """Turns distances in face units into pixel coverages for one batch of faces."""

    def __init__(self, u: Tensor, v: Tensor, radius: Tensor):
        self.u, self.v, self.radius = u, v, radius

    def fill(self, distance: Tensor) -> Tensor:
        """Coverage of a filled shape, distance in face units."""
        return _coverage(distance * self.radius)

    def stroke(self, distance: Tensor, half_width: float, min_half_width_px: float) -> Tensor:
        """Coverage of a line at least `2 * min_half_width_px` pixels wide."""
        half_px = (half_width * self.radius).clamp(min=min_half_width_px)
        return _coverage(distance * self.radius - half_px)


def body_groups(paint: Painter, column: dict[str, Tensor]) -> list[Group]:
    """Shirt, hair behind the head, skin (neck, ears, face, nose shadow) and the fringe."""
    u, v = paint.u, paint.v
    hair = _lerp_colour(_BLOND_HAIR, _BLACK_HAIR, column["hair_colour"])
    skin = _lerp_colour(_PALE_SKIN, _DARK_SKIN, column["skin_tone"])
    shirt = Layer(paint.fill(_ellipse(u, v, 0.0, 2.0, 1.55, 0.85)), _constant_colour(_SHIRT, u))
    back_hair = paint.fill(torch.maximum(_ellipse(u, v, 0.0, -0.12, 0.97, 1.04), v - 0.35))
    neck = torch.maximum((u.abs() - 0.3).expand_as(v * u), torch.maximum(0.55 - v, v - 1.5))
    ears = torch.minimum(
        _ellipse(u, v, -0.8, 0.02, 0.14, 0.18), _ellipse(u, v, 0.8, 0.02, 0.14, 0.18)
    )
    face = _ellipse(u, v, 0.0, 0.0, 0.8, 1.0)
    skin_layers = [
        Layer(paint.fill(neck), skin * 0.85),
        Layer(paint.fill(ears), skin * 0.95),
        Layer(paint.fill(face), skin),
        Layer(paint.fill(_ellipse(u, v, 0.0, 0.2, 0.08, 0.06)) * 0.6, skin * 0.7),
    ]
    hairline = -0.42 + 0.07 * torch.cos(9.0 * u)
    fringe = paint.fill(torch.maximum(face, v - hairline))
    back = Layer(back_hair, hair)
    front = Layer(fringe, hair)
    return [
        Group(None, [shirt]),
        Group("hair", [back], back.alpha),
        Group("face", skin_layers, union(skin_layers)),
        Group("hair", [front], front.alpha),
    ]


def feature_groups(paint: Painter, column: dict[str, Tensor]) -> list[Group]:
    """Eyes, mouth and glasses, each with the extent that all values of its factor stay in."""
    u, v = paint.u, paint.v
    view = (-1, 1, 1, 1)
    eye_radius = (_EYE_MIN + _EYE_RANGE * column["eye_size"]).view(view)
    eye_centre = torch.sqrt((u.abs() - _EYE_X) ** 2 + (v - _EYE_Y) ** 2)
    eyes = [
        Layer(paint.fill(eye_centre - eye_radius), _constant_colour(_EYE_WHITE, u)),
        Layer(paint.fill(eye_centre - 0.55 * eye_radius), _constant_colour(_PUPIL, u)),
    ]
    eyes_extent = paint.fill(eye_centre - (_EYE_MIN + _EYE_RANGE))

    bend = (_MOUTH_BEND * (column["smile"] - 0.5)).view(view)
    box = _mouth_box_distance(u, v)
    mouth = Layer(
        paint.stroke(_mouth_distance(u, v, bend, box), 0.06, 0.75), _constant_colour(_LIPS, u)
    )
    mouth_extent = paint.stroke(box, 0.06, 0.75)

    lens = eye_centre - _LENS_RADIUS
    rims = torch.minimum(
        lens.abs(),
        torch.minimum(
            _segment(u.abs(), v, (0.0, _EYE_Y), (_EYE_X - _LENS_RADIUS, _EYE_Y)),
            _segment(u.abs(), v, (_EYE_X + _LENS_RADIUS, _EYE_Y), (0.8, _EYE_Y - 0.05)),
        ),
    )
    tint = paint.fill(lens) * 0.25
    frame = paint.stroke(rims, 0.035, 0.5)
    worn = column["glasses"].view(view)
    glasses = [
        Layer(tint * worn, _constant_colour(_FRAME, u)),
        Layer(frame * worn, _constant_colour(_FRAME, u)),
    ]
    return [
        Group("eyes", eyes, eyes_extent),
        Group("mouth", [mouth], mouth_extent),
        Group("glasses", glasses, union([Layer(tint, u), Layer(frame, u)])),
    ]


def union(layers: list[Layer]) -> Tensor:
    """Coverage of layers painted over each other: 1 - prod(1 - alpha)."""
    transmitted = 1.0 - layers[0].alpha
    for layer in layers[1:]:
        transmitted = transmitted * (1.0 - layer.alpha)
    return 1.0 - transmitted


def background(column: dict[str, Tensor], v: Tensor, radius: Tensor, size: int) -> Tensor:
    """The backdrop (N, 3, H, W): the `background` colour under a soft vertical light gradient
    (so that it is not one flat colour)."""
    shade = 1.0 - 0.15 * (v * radius / size + 0.5)
    colour = _lerp_colour(_SKY_BACKGROUND, _GREEN_BACKGROUND, column["background"]) * shade
    return colour.expand(-1, 3, size, size)
