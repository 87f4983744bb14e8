import math

import pytest
import torch

from cfgen.evaluate.faithfulness import (
    area_under_curve,
    blur_baseline,
    cout,
    deletion_auc,
    insertion_auc,
    perturbation_curve,
    pixel_ranks,
)

SIZE, STEPS = 32, 16  # the read region is 8x8 = 1/16 of the image: exactly one step


def corner_classifier(images: torch.Tensor) -> torch.Tensor:
    """Stub black box that reads only the top-left 8x8 corner: f = sigmoid(8 (mean - 0.5))."""
    return torch.sigmoid(8 * (images[:, :, :8, :8].mean(dim=(1, 2, 3)) - 0.5))


def _corner_map(n: int, first: bool) -> torch.Tensor:
    """Relevance ranking the corner first (or last)."""
    relevance = torch.full((n, 1, SIZE, SIZE), 0.5)
    relevance[:, :, :8, :8] = 1.0 if first else 0.0
    return relevance


def _queries(n: int, corner: float) -> torch.Tensor:
    images = torch.rand(n, 3, SIZE, SIZE) * 2 - 1
    images[:, :, :8, :8] = corner
    return images


HIGH, LOW = torch.sigmoid(torch.tensor(4.0)).item(), torch.sigmoid(torch.tensor(-4.0)).item()


def test_pixel_ranks_order_by_channel_summed_absolute_relevance():
    relevance = torch.tensor([[[[0.1, -3.0], [2.0, 0.0]], [[0.1, 0.0], [0.0, 0.5]]]])
    torch.testing.assert_close(pixel_ranks(relevance), torch.tensor([[[3, 0], [1, 2]]]))


def test_area_under_curve_is_the_trapezoid_on_unit_interval():
    curve = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(area_under_curve(curve), torch.tensor([0.75, 1.0]))


def test_perturbation_curve_swaps_the_ranked_pixels_in_equal_chunks():
    start, end = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    relevance = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])
    curve = perturbation_curve(lambda x: x.mean(dim=(1, 2, 3)), start, end, relevance, steps=4)
    torch.testing.assert_close(curve, torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]]))


def test_deletion_auc_is_minimal_for_the_true_map_and_maximal_for_its_inverse():
    x = _queries(4, corner=1.0)  # f(x) = sigmoid(4); the grey baseline gives sigmoid(-4)
    best = deletion_auc(corner_classifier, x, _corner_map(4, True), STEPS, baseline="grey")
    worst = deletion_auc(corner_classifier, x, _corner_map(4, False), STEPS, baseline="grey")
    random_map = deletion_auc(corner_classifier, x, torch.rand(4, 3, SIZE, SIZE), STEPS, "grey")
    # True map: the corner goes in the first step, then f stays at the baseline value.
    torch.testing.assert_close(best, torch.full((4,), ((HIGH + LOW) / 2 + 15 * LOW) / 16))
    # Inverse map: the corner goes last, f stays high until the final step.
    torch.testing.assert_close(worst, torch.full((4,), (15 * HIGH + (HIGH + LOW) / 2) / 16))
    assert (best < random_map).all() and (random_map < worst).all()


def test_deletion_scores_the_decided_class_of_negative_queries():
    x = _queries(2, corner=0.0)  # f(x) = sigmoid(-4): decided negative, score 1 - f
    baseline = torch.ones_like(x)  # pushes f to sigmoid(4), i.e. removes the negative evidence
    best = deletion_auc(corner_classifier, x, _corner_map(2, True), STEPS, baseline=baseline)
    torch.testing.assert_close(best, torch.full((2,), ((HIGH + LOW) / 2 + 15 * LOW) / 16))


def test_insertion_auc_is_maximal_for_the_true_map():
    x = _queries(4, corner=1.0)
    best = insertion_auc(corner_classifier, x, _corner_map(4, True), STEPS, baseline="grey")
    random_map = insertion_auc(corner_classifier, x, torch.rand(4, 3, SIZE, SIZE), STEPS, "grey")
    torch.testing.assert_close(best, torch.full((4,), ((HIGH + LOW) / 2 + 15 * HIGH) / 16))
    assert (random_map < best).all()


def test_cout_rewards_a_change_ordered_by_its_magnitude():
    x = _queries(3, corner=0.0)  # decided negative
    counterfactual = x.clone()
    counterfactual[:, :, :8, :8] = 1.0  # the counterfactual only changes the corner: flips f
    # Default order |x - x_c| swaps the corner first: transition -> 2 sigmoid(4) - 1 after a step.
    expected = ((2 * LOW - 1) + (2 * HIGH - 1)) / 2 / 16 + 15 / 16 * (2 * HIGH - 1)
    torch.testing.assert_close(
        cout(corner_classifier, x, counterfactual, steps=STEPS), torch.full((3,), expected)
    )
    late = cout(corner_classifier, x, counterfactual, _corner_map(3, False), steps=STEPS)
    assert (late < expected).all()


def test_cout_is_negative_when_the_counterfactual_does_not_flip():
    x = _queries(2, corner=0.0)
    unchanged_decision = x + 0.01
    assert (cout(corner_classifier, x, unchanged_decision, steps=4) < 0).all()


def test_blur_baseline_keeps_constant_images_and_smooths_edges():
    constant = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(blur_baseline(constant), constant)
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 1
    blurred = blur_baseline(edge)
    assert 0 < blurred[0, 0, 0, 7].item() < 0.5 < blurred[0, 0, 0, 8].item() < 1
    assert math.isclose(blurred.mean().item(), 0.5, abs_tol=1e-5)


def test_unknown_baseline_and_bad_shapes_fail_clearly():
    x = _queries(1, 1.0)
    with pytest.raises(ValueError, match="unknown baseline"):
        deletion_auc(corner_classifier, x, x, baseline="noise")
    with pytest.raises(ValueError, match="must share N, H and W"):
        perturbation_curve(corner_classifier, x, x, torch.ones(1, 8, 8))
