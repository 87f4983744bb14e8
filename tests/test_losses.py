import math

import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.losses import LOSSES, get_loss


def test_hinge_discriminator_known_value():
    real = torch.tensor([2.0, 0.5])  # relu(1 - s): 0, 0.5 -> mean 0.25
    fake = torch.tensor([-2.0, 1.0])  # relu(1 + s): 0, 2 -> mean 1
    torch.testing.assert_close(get_loss("hinge_discriminator")(real, fake), torch.tensor(1.25))


def test_hinge_generator_known_value():
    torch.testing.assert_close(
        get_loss("hinge_generator")(torch.tensor([1.0, 3.0])), torch.tensor(-2.0)
    )


def test_classifier_cross_entropy_known_value_and_minimum_at_target():
    loss = get_loss("classifier_cross_entropy")
    value = loss(torch.tensor([0.0]), torch.tensor([0.25]))  # p = 0.5: -log 0.5
    torch.testing.assert_close(value, torch.tensor(math.log(2.0)))
    logits = torch.zeros(1, requires_grad=True)
    loss(logits, torch.tensor([0.25])).backward()
    torch.testing.assert_close(logits.grad, torch.tensor([0.25]))  # sigmoid(0) - target


def test_classifier_kl_is_zero_at_the_target_and_keeps_gradient_when_saturated():
    loss = get_loss("classifier_kl")
    target = torch.tensor([0.05, 0.95])
    torch.testing.assert_close(
        loss(torch.logit(target), target), torch.tensor(0.0), atol=1e-6, rtol=0
    )
    logits = torch.tensor([40.0], requires_grad=True)  # posterior exactly 1.0 in float32
    loss(logits, torch.tensor([0.05])).backward()
    torch.testing.assert_close(logits.grad, torch.tensor([0.95]))


def test_pixel_and_embedding_losses_known_values():
    x = torch.zeros(1, 1, 2, 2)
    y = torch.tensor([[[[1.0, -1.0], [0.0, 2.0]]]])
    torch.testing.assert_close(get_loss("cycle_l1")(x, y), torch.tensor(1.0))
    torch.testing.assert_close(get_loss("identity_l1")(x, y), torch.tensor(1.0))
    torch.testing.assert_close(get_loss("embedding_l2")(x, y), torch.tensor(1.5))


def test_context_l1_ignores_changes_inside_the_mask():
    x = torch.zeros(1, 1, 2, 2)
    y = torch.tensor([[[[9.0, 1.0], [1.0, 3.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # top-left may change
    torch.testing.assert_close(get_loss("context_l1")(x, y, mask), torch.tensor(5.0 / 3.0))


def test_every_loss_is_registered_and_unknown_names_fail():
    assert set(LOSSES) >= {"hinge_discriminator", "cycle_l1", "embedding_l2", "context_l1"}
    with pytest.raises(ConfigError, match="unknown loss 'l3'"):
        get_loss("l3")
