"""The synthetic ground-truth world: cartoon faces whose generative factors are known.

Every face is drawn from independent factors (`FACTOR_NAMES`, each in [0, 1]); CelebA-style
binary attributes are thresholds of factors (`ATTRIBUTES`), and every factor paints one region
(`FACTOR_REGION`, masks in `REGION_NAMES` order). Because the truth is known, evaluation can ask
what a classifier relies on: re-render a face with one factor changed (`render_faces` with the
same noise seed) and watch the posterior.

Faces are deterministic per (seed, split, index): random numbers come from a counter-based hash
of that triple, so face 7 of the training split is the same whether 10 or 20,000 are drawn.
Splits use disjoint index ranges. Optionally the training split is confounded: with probability
`confound_strength` a foreign factor (e.g. glasses) is set to agree with the target attribute.
"""

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from cfgen.data.render import FACTOR_NAMES, REGION_NAMES, hash32, hash_uniform, render_faces
from cfgen.errors import ConfigError

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_FACTOR",
    "ATTRIBUTE_NAMES",
    "ATTRIBUTE_THRESHOLD",
    "FACTOR_NAMES",
    "FACTOR_REGION",
    "REGION_NAMES",
    "SyntheticFaces",
    "attribute_rule",
    "attributes_from_factors",
    "draw_faces",
    "render_faces",
    "sample_factors",
]

BINARY_FACTORS = frozenset({"glasses"})
FACTOR_REGION = {
    "smile": "mouth",
    "eye_size": "eyes",
    "glasses": "glasses",
    "hair_colour": "hair",
    "skin_tone": "face",
    "background": "background",
    # Size and position move the whole head; the face is where most of that change shows.
    "face_size": "face",
    "face_x": "face",
    "face_y": "face",
}


def _factor(name: str) -> Callable[[Tensor], Tensor]:
    index = FACTOR_NAMES.index(name)
    return lambda factors: factors[:, index]


# Attribute -> (factor it thresholds, present when the factor is above 0.5 or below it).
_THRESHOLDS = {
    "Smiling": ("smile", True),
    "Eyeglasses": ("glasses", True),
    "Big_Eyes": ("eye_size", True),
    "Dark_Hair": ("hair_colour", True),
    "Pale_Skin": ("skin_tone", False),
    "Big_Face": ("face_size", True),
}
ATTRIBUTE_FACTOR = {name: factor for name, (factor, _) in _THRESHOLDS.items()}
ATTRIBUTE_THRESHOLD = 0.5
# Whether a factor's attribute is present above the threshold (skin: `Pale_Skin` is below).
_PRESENT_ABOVE = {factor: above for factor, above in _THRESHOLDS.values()}


def attribute_rule(name: str) -> tuple[str, float, bool]:
    """(factor, threshold, present_above) of attribute `name`: present when the factor lies
    above the threshold (below when `present_above` is False)."""
    if name not in _THRESHOLDS:
        raise ConfigError(
            f"unknown attribute {name!r}; the synthetic faces have {list(_THRESHOLDS)}"
        )
    factor, above = _THRESHOLDS[name]
    return factor, ATTRIBUTE_THRESHOLD, above


def _threshold(factor: str, above: bool) -> Callable[[Tensor], Tensor]:
    column = _factor(factor)
    if above:
        return lambda factors: column(factors) > ATTRIBUTE_THRESHOLD
    return lambda factors: column(factors) < ATTRIBUTE_THRESHOLD


ATTRIBUTES: dict[str, Callable[[Tensor], Tensor]] = {
    name: _threshold(factor, above) for name, (factor, above) in _THRESHOLDS.items()
}
ATTRIBUTE_NAMES = tuple(ATTRIBUTES)

SPLIT_OFFSETS = {"train": 0, "val": 1 << 30, "test": 2 << 30}
_NOISE_STREAM = len(FACTOR_NAMES)
_CONFOUND_STREAM = len(FACTOR_NAMES) + 1
_STREAM_STEP = 0x3C6EF372


def attributes_from_factors(factors: Tensor) -> Tensor:
    """Binary attributes of faces: factors (N, F) -> (N, A) float 0/1, `ATTRIBUTE_NAMES` order."""
    return torch.stack([rule(factors) for rule in ATTRIBUTES.values()], dim=1).float()


def _row_keys(seed: int, split: str, indices: Tensor) -> Tensor:
    """One int64 key per face, unique to (seed, split, index): (N,) -> (N,)."""
    base = hash32(torch.tensor(seed, dtype=torch.int64))
    return hash32(base + SPLIT_OFFSETS[split] + indices)


def _stream(row_keys: Tensor, stream: int) -> Tensor:
    """Independent uniforms (N,) in [0, 1) for one use (a factor, the noise, the confounder)."""
    return hash_uniform(row_keys + stream * _STREAM_STEP)


def sample_factors(seed: int, split: str, indices: Tensor) -> tuple[Tensor, Tensor]:
    """Independent uniform factors of faces `indices` (N,) of a split.

    Returns factors (N, F) in [0, 1] (glasses 0/1 with probability 1/2 each) and the noise seeds
    (N,) int64 that fix each face's texture grain in `render_faces`.
    """
    keys = _row_keys(seed, split, indices.long())
    factors = torch.stack([_stream(keys, k) for k in range(len(FACTOR_NAMES))], dim=1)
    for name in BINARY_FACTORS:
        column = FACTOR_NAMES.index(name)
        factors[:, column] = (factors[:, column] < 0.5).float()
    return factors, hash32(keys + _NOISE_STREAM * _STREAM_STEP)


def confound(
    factors: Tensor, uniforms: Tensor, factor: str, target: str, strength: float
) -> Tensor:
    """Make `factor` agree with attribute `target` on a share `strength` of faces.

    A chosen binary factor is set equal to the target; a continuous one is folded into the half
    of [0, 1] where its own attribute (if it has one) is present exactly when the target is,
    staying uniform within that half. `uniforms` (N,) in [0, 1) pick the faces. Returns new
    factors (N, F).
    """
    present = ATTRIBUTES[target](factors).float()
    column = FACTOR_NAMES.index(factor)
    chosen = uniforms < strength
    upper_half = present if _PRESENT_ABOVE.get(factor, True) else 1.0 - present
    folded = 0.5 * factors[:, column] + 0.5 * upper_half
    forced = present if factor in BINARY_FACTORS else folded
    factors = factors.clone()
    factors[:, column] = torch.where(chosen, forced, factors[:, column])
    return factors


def check_options(split: str, target: str, confound_factor: str | None, strength: float) -> None:
    """Raise `ConfigError` for an unknown split / target / factor or a strength outside [0, 1]."""
    if split not in SPLIT_OFFSETS:
        raise ConfigError(f"unknown split {split!r}; choose one of {sorted(SPLIT_OFFSETS)}")
    if target not in ATTRIBUTES:
        raise ConfigError(
            f"unknown target attribute {target!r}; the synthetic faces have {list(ATTRIBUTES)}"
        )
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"confound_strength must lie in [0, 1], got {strength}")
    if confound_factor is None:
        return
    if confound_factor not in FACTOR_NAMES:
        raise ConfigError(
            f"unknown confound_factor {confound_factor!r}; choose one of {list(FACTOR_NAMES)}"
        )
    if confound_factor == ATTRIBUTE_FACTOR[target]:
        raise ConfigError(
            f"confound_factor {confound_factor!r} is the factor that defines {target!r}; "
            "choose a different factor (e.g. 'glasses')"
        )


def draw_faces(
    n: int,
    seed: int = 0,
    split: str = "train",
    confound_factor: str | None = None,
    confound_strength: float = 0.0,
    target: str = "Smiling",
    confound_all_splits: bool = False,
) -> tuple[Tensor, Tensor]:
    """Factors (n, F) and noise seeds (n,) of faces 0..n-1 of a split, confounded as asked.

    What `SyntheticFaces` renders; also used to write the world to disk in chunks.
    """
    check_options(split, target, confound_factor, confound_strength)
    if n < 0 or n >= 1 << 30:
        raise ConfigError(f"n must lie in [0, 2**30), got {n}")
    indices = torch.arange(n)
    factors, noise_seeds = sample_factors(seed, split, indices)
    if confound_factor is not None and (split == "train" or confound_all_splits):
        uniforms = _stream(_row_keys(seed, split, indices), _CONFOUND_STREAM)
        factors = confound(factors, uniforms, confound_factor, target, confound_strength)
    return factors, noise_seeds


class SyntheticFaces(Dataset):
    """`n` rendered faces of one split, held in memory.

    Tensors: `images` (N, 3, H, W) float32 in [-1, 1], `labels` (N, A) float 0/1, `factors`
    (N, F), `masks` (N, R, H, W) uint8 (0..255, rounded up so that no painted pixel reads 0),
    `noise_seeds` (N,) int64. Items are dicts with `image`, `labels`, `index`, `factors` and
    `masks` (float in [0, 1]).

    The training split is confounded when `confound_factor` is set; other splits stay
    independent unless `confound_all_splits` asks otherwise (e.g. to test a biased world).
    """

    def __init__(
        self,
        n: int,
        image_size: int = 32,
        seed: int = 0,
        split: str = "train",
        confound_factor: str | None = None,
        confound_strength: float = 0.0,
        target: str = "Smiling",
        confound_all_splits: bool = False,
    ):
        self.image_size, self.seed, self.split, self.target = image_size, seed, split, target
        self.attribute_names = list(ATTRIBUTE_NAMES)
        self.factor_names = list(FACTOR_NAMES)
        self.region_names = list(REGION_NAMES)
        factors, self.noise_seeds = draw_faces(
            n, seed, split, confound_factor, confound_strength, target, confound_all_splits
        )
        self.factors = factors
        self.labels = attributes_from_factors(factors)
        self.images, self.masks = self._render_all(factors, self.noise_seeds)

    def _render_all(self, factors: Tensor, noise_seeds: Tensor) -> tuple[Tensor, Tensor]:
        size, n = self.image_size, factors.shape[0]
        images = torch.empty(n, 3, size, size)
        masks = torch.empty(n, len(REGION_NAMES), size, size, dtype=torch.uint8)
        # Batches bound the float masks alive at once; uint8 storage keeps 20,000 faces small.
        batch = 1024
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            image, mask = render_faces(factors[start:stop], size, noise_seeds[start:stop])
            images[start:stop] = image
            masks[start:stop] = (mask * 255).ceil_().to(torch.uint8)
        return images, masks

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict:
        return {
            "image": self.images[index],
            "labels": self.labels[index],
            "index": index,
            "factors": self.factors[index],
            "masks": self.masks[index].float() / 255.0,
        }

    @property
    def target_index(self) -> int:
        return self.attribute_names.index(self.target)

    def render_with(
        self, indices: Tensor, factor: str, value: float | Tensor
    ) -> tuple[Tensor, Tensor]:
        """Re-render faces `indices` (K,) with `factor` set to `value`, all else (grain too) kept.

        Returns images (K, 3, H, W) and float masks (K, R, H, W): the intervention evaluation
        uses to measure how much a classifier relies on a factor.
        """
        if factor not in FACTOR_NAMES:
            raise ConfigError(f"unknown factor {factor!r}; choose one of {list(FACTOR_NAMES)}")
        factors = self.factors[indices].clone()
        factors[:, FACTOR_NAMES.index(factor)] = value
        return render_faces(factors, self.image_size, self.noise_seeds[indices])
