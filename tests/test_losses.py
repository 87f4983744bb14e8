import math

import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.losses import LOSSES, get_loss


def test_hinge_discriminator_known_value():
    real = torch.tensor([2.0, 0.5])  # relu(1 - s): 0, 0.5 -> mean 0.25
    fake = torch.tensor([-2.0, 1.0])  # relu(1 + s): 0, 2 -> mean 1
    torch.testing.assert_close(get_loss("hinge_discriminator")(real, fake), torch.tensor(1.25))


def test_hinge_fake_windows_averages_the_marked_windows_only():
    scores = torch.tensor([[[-2.0, 1.0], [0.5, 9.0]]])  # relu(1 + s): 0, 2, 1.5, 10
    windows = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])  # the 10 is not marked
    torch.testing.assert_close(
        get_loss("hinge_fake_windows")(scores, windows), torch.tensor(3.5 / 3)
    )
    # G's side over the same windows: -mean of -2, 1, 0.5; the real half over every score
    torch.testing.assert_close(
        get_loss("hinge_generator_windows")(scores, windows), torch.tensor(0.5 / 3)
    )
    torch.testing.assert_close(get_loss("hinge_real")(scores), torch.tensor((3 + 0 + 0.5) / 4))
    # no window marked (a frame that edits nothing): no term, not 0 / 0
    for name in ("hinge_fake_windows", "hinge_generator_windows"):
        assert get_loss(name)(scores, torch.zeros_like(windows)).item() == 0.0


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


def test_classifier_logit_l1_known_value_and_sign_of_its_gradient():
    loss = get_loss("classifier_logit_l1")
    target = torch.tensor([0.2, 0.9])
    torch.testing.assert_close(loss(torch.logit(target), target), torch.tensor(0.0))
    logits = torch.tensor([0.0, 0.0], requires_grad=True)
    value = loss(logits, target)
    torch.testing.assert_close(value, torch.logit(target).abs().mean())
    value.backward()
    # descending the gradient moves each logit towards its target: down for 0.2, up for 0.9
    torch.testing.assert_close(logits.grad, torch.tensor([0.5, -0.5]))


@pytest.mark.parametrize(
    "name", ["classifier_cross_entropy", "classifier_kl", "classifier_logit_l1"]
)
def test_a_gradient_step_on_every_classifier_loss_moves_the_posterior_towards_the_target(name):
    # The sign bug of a published port (the term pushed the posterior away from the bin) fails
    # here: from 0.5, one descent step must approach 0.1 and 0.9 alike.
    logits = torch.zeros(2, requires_grad=True)
    target = torch.tensor([0.1, 0.9])
    get_loss(name)(logits, target).backward()
    stepped = (logits - 0.5 * logits.grad).sigmoid()
    before = (torch.full((2,), 0.5) - target).abs()
    assert bool(((stepped - target).abs() < before).all())


def test_mask_area_and_total_variation_known_values():
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])  # left column on: area 1/2
    torch.testing.assert_close(get_loss("mask_area")(mask), torch.tensor(0.5))
    # vertical neighbours equal (0), horizontal ones differ by 1 in both rows (mean 1)
    torch.testing.assert_close(get_loss("total_variation")(mask), torch.tensor(1.0))
    torch.testing.assert_close(
        get_loss("total_variation")(torch.full((1, 1, 3, 3), 0.7)), torch.tensor(0.0)
    )


def test_mask_binary_is_zero_for_opaque_or_clear_masks_and_one_for_half():
    binary = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    torch.testing.assert_close(get_loss("mask_binary")(binary), torch.tensor(0.0))
    torch.testing.assert_close(
        get_loss("mask_binary")(torch.full((1, 1, 2, 2), 0.5)), torch.tensor(1.0)
    )
    # a faint mask costs more than an opaque one of the same area (mean 0.25 each)
    faint = torch.full((1, 1, 2, 2), 0.25)
    opaque = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert get_loss("mask_binary")(faint) > get_loss("mask_binary")(opaque)


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
