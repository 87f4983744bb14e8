"""The scalar that a baseline explainer attributes: the classifier's score toward the target.

The black box gives one posterior p = f(x) per image, (N,), and, when it is a `BlackBox` over
logits, the logit z of the explained class itself (`explained_logit`): read from the model's
scores, not recovered from a float32 posterior that saturates at |z| > ~16.6. An explanation
asked for a target posterior t answers "what in x moves f toward t?": toward 1 when t >= f(x),
toward 0 otherwise. `DirectionScore` turns f into a two-column output, (N, 2): column 0 is the
score of moving up, column 1 the score of moving down, so captum's `target=` index picks the
direction per query and every map comes out signed the same way: positive = evidence toward the
target.

Scores (`SCORES`), chosen by name:
- `logit`: z and -z. Gradients do not vanish when p saturates, and on a logistic-linear
  classifier the gradient is exactly the weight vector. Default.
- `posterior`: p and 1 - p, the raw output.
- `log_posterior`: log p and log(1 - p), the (negative) cross-entropy of the target class that
  the second-order method of Singla et al. (2019) expands.

Only a classifier given as a plain callable of posteriors has its logit recovered from p
(clamped), and carries no gradient where p rounds to exactly 0 or 1.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cfgen.errors import ConfigError
from cfgen.explain.base import Classifier, resolve_target
from cfgen.models.blackbox_adapter import BlackBox

# Keeps log(p) finite; 1 - 1e-7 is still distinct from 1 in float32.
_EPS = 1e-7


def posterior_logit(posterior: torch.Tensor) -> torch.Tensor:
    """Logit of a posterior, (N,) -> (N,), finite for p in [0, 1]."""
    posterior = posterior.clamp(_EPS, 1 - _EPS)
    return torch.log(posterior) - torch.log1p(-posterior)


def explained_logit(classifier: Classifier, images: torch.Tensor) -> torch.Tensor:
    """Logit of the explained class, (N, C, H, W) -> (N,): a `BlackBox`'s own (`BlackBox.logit`),
    else the log-odds of the callable's posterior."""
    if isinstance(classifier, BlackBox):
        return classifier.logit(images)
    return posterior_logit(classifier(images))


def _logit_scores(logit: torch.Tensor) -> torch.Tensor:
    return torch.stack([logit, -logit], dim=1)


def _posterior_scores(logit: torch.Tensor) -> torch.Tensor:
    posterior = torch.sigmoid(logit)
    return torch.stack([posterior, 1 - posterior], dim=1)


def _log_posterior_scores(logit: torch.Tensor) -> torch.Tensor:
    return torch.stack([F.logsigmoid(logit), F.logsigmoid(-logit)], dim=1)


SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "logit": _logit_scores,
    "posterior": _posterior_scores,
    "log_posterior": _log_posterior_scores,
}

UP, DOWN = 0, 1


def check_score(score: str) -> str:
    """`score` if it names an entry of `SCORES`, else a `ConfigError` listing them."""
    if score not in SCORES:
        raise ConfigError(f"unknown score {score!r}; choose one of {sorted(SCORES)}")
    return score


class DirectionScore(nn.Module):
    """(N, C, H, W) -> (N, 2): the classifier's score of moving up (col 0) and down (col 1).

    An `nn.Module` holding the classifier as a submodule (when it is one), so that methods that
    hook layers (Guided Backprop, Grad-CAM) find the classifier's ReLUs and convolutions.
    """

    def __init__(self, classifier: Classifier, score: str = "logit") -> None:
        super().__init__()
        self.classifier = classifier
        self.score = check_score(score)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SCORES[self.score](explained_logit(self.classifier, x))


def direction_index(
    classifier: Classifier, x: torch.Tensor, target: float | torch.Tensor | None
) -> torch.Tensor:
    """Column of `DirectionScore` per query, (N,) long: `UP` if target >= f(x), else `DOWN`."""
    target = resolve_target(classifier, x, target)
    with torch.no_grad():
        posterior = classifier(x)
    return torch.where(target >= posterior, UP, DOWN).long()


def direction_sign(index: torch.Tensor) -> torch.Tensor:
    """+1 for `UP`, -1 for `DOWN`, as a float (N,) tensor."""
    return 1.0 - 2.0 * index.float()
