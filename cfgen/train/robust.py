"""Adversarial training of a classifier: the robust judge of the evaluation.

Robust classifiers answer to visible features: their gradients are perceptually aligned
(Tsipras et al., ICLR 2019; Santurkar et al., NeurIPS 2019), so a colour smudge that moves a
plainly trained network moves them far less. `fgsm_random_start` is the fast recipe of Wong,
Rice and Kolter (ICLR 2020): one signed-gradient step of 1.25 radius from a uniform random start
in the L-infinity ball, the loss taken on the result.
"""

from collections.abc import Callable

import torch

LOW, HIGH = -1.0, 1.0
STEP_FACTOR = 1.25


def fgsm_random_start(
    loss: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    radius: float,
    step_factor: float = STEP_FACTOR,
) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] moved within `radius` (L-infinity) to raise `loss`.

    loss: images -> scalar (the training loss on them). Returns detached images in [-1, 1].
    """
    start = (torch.rand_like(images) * 2 - 1) * radius
    delta = start.requires_grad_(True)
    with torch.enable_grad():
        (gradient,) = torch.autograd.grad(loss((images + delta).clamp(LOW, HIGH)), delta)
    delta = (delta.detach() + step_factor * radius * gradient.sign()).clamp(-radius, radius)
    return (images + delta).clamp(LOW, HIGH).detach()
