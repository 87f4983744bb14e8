"""The logit every method reads: a BlackBox's own, not recovered from a saturated posterior."""

import math

import torch
from torch import nn

from cfgen.explain.registry import build_explainer
from cfgen.explain.score import DirectionScore, explained_logit
from cfgen.models.blackbox import BlackBox

SIZE = 8


class FixedScores(nn.Module):
    """Returns the same (N, K) scores whatever the images (one row per image)."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = nn.Parameter(scores)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores[: len(x)] + 0 * x.mean()


def test_the_explained_logit_of_a_softmax_head_is_the_log_odds_of_the_target_class():
    scores = torch.tensor([[0.0, 2.0, -1.0], [1.0, -3.0, 0.5], [0.0, 40.0, 0.0]])
    box = BlackBox(FixedScores(scores), target_index=1, output="logits", activation="softmax")
    images = torch.zeros(3, 3, SIZE, SIZE)
    box.check(images)
    logits = explained_logit(box, images)
    # log p / (1 - p) with p = softmax(scores)[1]: the target score minus logsumexp of the others.
    by_hand = torch.tensor(
        [
            2.0 - math.log(math.exp(0.0) + math.exp(-1.0)),
            -3.0 - math.log(math.exp(1.0) + math.exp(0.5)),
            40.0 - math.log(2.0),
        ]
    )
    torch.testing.assert_close(logits, by_hand)
    # Where the posterior is not saturated it is exactly the log-odds of what the box returns.
    torch.testing.assert_close(logits[:2], torch.logit(box(images).double())[:2].float())
    # Saturated (p = 1.0 in float32): still the true log-odds with a gradient, not a clamp.
    assert box(images)[2].item() == 1.0
    box.model.scores.requires_grad_(True)
    explained_logit(box, images)[2].backward()
    torch.testing.assert_close(box.model.scores.grad[2], torch.tensor([-0.5, 1.0, -0.5]))


def test_the_explained_logit_of_a_sigmoid_head_is_the_raw_target_score():
    scores = torch.tensor([[0.3, -7.0], [2.0, 30.0]])
    box = BlackBox(FixedScores(scores), target_index=1, output="logits", activation="sigmoid")
    images = torch.zeros(2, 3, SIZE, SIZE)
    box.check(images)
    torch.testing.assert_close(explained_logit(box, images), torch.tensor([-7.0, 30.0]))


def test_baselines_attribute_the_logit_where_the_posterior_saturates():
    """A linear logit of 40 on one pixel: the posterior is 1.0 in float32, its clamped log-odds
    carry no gradient, the model's own logit does."""
    weights = torch.zeros(3 * SIZE * SIZE)
    weights[0] = 40.0
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 1, bias=False))
    linear[1].weight.data = weights[None]
    box = BlackBox(linear, target_index=0, output="logits", activation="sigmoid")
    images = torch.zeros(1, 3, SIZE, SIZE)
    images[0, 0, 0, 0] = 1.0
    assert box(images).item() == 1.0
    scores = DirectionScore(box)(images.requires_grad_(True))
    (gradient,) = torch.autograd.grad(scores[0, 0], images)
    torch.testing.assert_close(gradient.flatten(), weights)
    relevance = build_explainer("gradient", box).explain(images.detach(), target=0.0)
    assert relevance.abs().flatten()[0] == relevance.abs().max() > 0
