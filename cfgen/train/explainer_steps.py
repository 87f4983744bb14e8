"""What the explainer's training steps are made of, apart from the module that runs them.

- `classifier_logit`: the explained class's logit, so the classifier terms keep a gradient where
  the float32 posterior saturates;
- `generator_steps_done` / `optimizer_steps`: the one conversion between generator steps and
  Lightning's optimiser steps (n_critic discriminator steps + 1 generator step each);
- `warmup_ema`: the averaging rule of the EMA generator (`torch.optim.swa_utils.AveragedModel`).
"""

from collections.abc import Callable

import torch
from torch import nn

from cfgen.models.blackbox import BlackBox


def classifier_logit(classifier: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logit of the explained class, (N, C, H, W) -> (N,), without saturating.

    For a `BlackBox` over logits the raw score is used, so the gradient survives where the
    float32 posterior is exactly 0 or 1; otherwise the log-odds of the posterior.
    """
    if isinstance(classifier, BlackBox) and classifier.output == "logits" and classifier.checked:
        scores = classifier.model(images).reshape(len(images), -1)
        target = scores[:, classifier.target_index]
        if classifier.activation == "sigmoid":
            return target
        others = torch.cat(
            [scores[:, : classifier.target_index], scores[:, classifier.target_index + 1 :]], 1
        )
        return target - others.logsumexp(dim=1)
    return torch.logit(classifier(images).clamp(1e-6, 1 - 1e-6))


def generator_steps_done(global_step: int, n_critic: int) -> int:
    """Generator steps made after `global_step` optimiser steps (n_critic D steps + 1 G step
    per generator step)."""
    return global_step // (n_critic + 1)


def optimizer_steps(generator_steps: int, n_critic: int) -> int:
    """Optimiser steps (Lightning's `max_steps`) that make `generator_steps` generator steps."""
    return generator_steps * (n_critic + 1)


def warmup_ema(decay: float) -> Callable[[list, list, torch.Tensor], None]:
    """`AveragedModel` multi_avg_fn: average <- d * average + (1 - d) * model, in place, with
    d = min(decay, (1 + k) / (10 + k)) after k updates, so that early on the average is not
    dominated by the random initial weights. Integer buffers (BN batch counters) are copied."""

    def average(averaged: list, current: list, num_averaged: torch.Tensor) -> None:
        steps = int(num_averaged)
        weight = 1.0 - min(decay, (1 + steps) / (10 + steps))
        for mean, value in zip(averaged, current, strict=True):
            if mean.is_floating_point():
                mean.lerp_(value, weight)
            else:
                mean.copy_(value)

    return average
