"""The explainer's losses, as pure functions of tensors returning a scalar.

They are chosen by name through `LOSSES`, so a training module (or a user) can swap one term
without touching the others. Classifier terms take the classifier's *logits* of the explained
class: the cross-entropy of a saturated classifier (posterior exactly 1.0 in float32) has a
zero gradient through the sigmoid, but a useful one through the logit.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cfgen.errors import ConfigError


def hinge_discriminator(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Hinge loss of D: mean relu(1 - D(real)) + mean relu(1 + D(fake)). Scores: (N,)."""
    return hinge_real(real_scores) + F.relu(1.0 + fake_scores).mean()


def hinge_fake_windows(fake_scores: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """The fake half of D's hinge over the marked windows only: mean relu(1 + D(fake)) over
    the scores (N, H, W) where `windows` (N, H, W, 0/1) is 1 (a patch critic's negatives)."""
    return (F.relu(1.0 + fake_scores) * windows).sum() / windows.sum().clamp_min(1.0)


def hinge_real(real_scores: torch.Tensor) -> torch.Tensor:
    """The real half of D's hinge: mean relu(1 - D(real)), over scores of any shape."""
    return F.relu(1.0 - real_scores).mean()


def hinge_generator(fake_scores: torch.Tensor) -> torch.Tensor:
    """Hinge loss of G: -mean D(fake). Scores: (N,)."""
    return -fake_scores.mean()


def hinge_generator_windows(fake_scores: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """G's hinge over the marked windows only: -mean D(fake) over the scores (N, H, W) where
    `windows` (N, H, W, 0/1) is 1; 0 when none is marked."""
    return -(fake_scores * windows).sum() / windows.sum().clamp_min(1.0)


def classifier_cross_entropy(logits: torch.Tensor, target_posterior: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between target posteriors (N,) and the classifier's logits (N,).

    Minimal (not zero) where sigmoid(logits) equals the target.
    """
    return F.binary_cross_entropy_with_logits(logits, target_posterior)


def classifier_kl(logits: torch.Tensor, target_posterior: torch.Tensor) -> torch.Tensor:
    """KL(target || sigmoid(logits)) per query, averaged: (N,), (N,) -> scalar, zero at match.

    Equal to the cross-entropy minus the (constant) entropy of the target: same gradients, but
    a value that reads as a distance.
    """
    target = target_posterior.clamp(1e-7, 1 - 1e-7)
    entropy = -(target * target.log() + (1 - target) * (1 - target).log())
    return F.binary_cross_entropy_with_logits(logits, target_posterior) - entropy.mean()


def classifier_logit_l1(logits: torch.Tensor, target_posterior: torch.Tensor) -> torch.Tensor:
    """Mean |logit - logit(target)| (the MedIA follow-up's L1 on logits): (N,), (N,) -> scalar.

    Zero at the target; unlike the cross-entropy its gradient does not fade as the posterior
    nears the target, and a bin near 0 or 1 (logit far out) weighs as much as a middle one.
    """
    target = torch.logit(target_posterior.clamp(1e-4, 1 - 1e-4))
    return (logits - target).abs().mean()


def cycle_l1(image: torch.Tensor, cycled: torch.Tensor) -> torch.Tensor:
    """Mean |x - I(I(x, c), c_x)| over all pixels. Images: (N, C, H, W)."""
    return (image - cycled).abs().mean()


def embedding_l2(embedding: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two encoder embeddings, (N, D, h, w) each."""
    return (embedding - other).pow(2).mean()


def identity_l1(image: torch.Tensor, same_bin_image: torch.Tensor) -> torch.Tensor:
    """Mean |x - I(x, c_x)|: asking for the query's own bin should change nothing."""
    return (image - same_bin_image).abs().mean()


def context_l1(image: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |x - I(x, c)| outside the region the decision may change.

    `mask`: (N, 1, H, W) or (N, C, H, W) in [0, 1], 1 where change is allowed. Averaged over the
    pixels outside the mask (weights 1 - mask), so the value does not depend on the region size.
    """
    keep = (1.0 - mask).expand_as(image)
    return ((image - generated).abs() * keep).sum() / keep.sum().clamp_min(1.0)


def inpaint_l1(image: torch.Tensor, drawn: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Mean |x - drawn| over the hidden pixels: how well an inpainter redraws what it did not see.

    `hidden`: (N, 1, H, W) in [0, 1], 1 where x was hidden. Averaged over the hidden pixels, so the
    value does not depend on how much was hidden.
    """
    weight = hidden.expand_as(image)
    return ((image - drawn).abs() * weight).sum() / weight.sum().clamp_min(1.0)


def mask_area(mask: torch.Tensor) -> torch.Tensor:
    """Mean of a blend mask (N, 1, H, W) in [0, 1]: the share of the image the generator redraws."""
    return mask.mean()


def total_variation(field: torch.Tensor) -> torch.Tensor:
    """Mean |difference| of a map (N, C, H, W), a blend mask or a warp's flow, between vertical
    and between horizontal neighbours, summed over the two directions: 0 for a constant map,
    large for speckle."""
    vertical = (field[..., 1:, :] - field[..., :-1, :]).abs().mean()
    horizontal = (field[..., :, 1:] - field[..., :, :-1]).abs().mean()
    return vertical + horizontal


def mask_binary(mask: torch.Tensor) -> torch.Tensor:
    """Mean 4·m·(1 − m) of a blend mask (N, 1, H, W) in [0, 1]: 0 where every pixel is kept (0)
    or redrawn (1), 1 for a half-transparent mask (0.5 everywhere).

    An area penalty alone is met more cheaply by a faint mask over a large region than by an
    opaque one over a small region, and a faint blend of a drawn stroke over the query is a
    haze, not a stroke: this term makes the blend choose.
    """
    return (4.0 * mask * (1.0 - mask)).mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "hinge_discriminator": hinge_discriminator,
    "hinge_generator": hinge_generator,
    "hinge_generator_windows": hinge_generator_windows,
    "hinge_real": hinge_real,
    "hinge_fake_windows": hinge_fake_windows,
    "classifier_cross_entropy": classifier_cross_entropy,
    "classifier_kl": classifier_kl,
    "classifier_logit_l1": classifier_logit_l1,
    "cycle_l1": cycle_l1,
    "embedding_l2": embedding_l2,
    "identity_l1": identity_l1,
    "context_l1": context_l1,
    "inpaint_l1": inpaint_l1,
    "mask_area": mask_area,
    "total_variation": total_variation,
    "mask_binary": mask_binary,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss registered as `name`, with a clear error listing the choices."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
