import math

import pytest
import torch

from cfgen.evaluate.judges import AttributeReading
from cfgen.evaluate.preservation import (
    attribute_correlation,
    correlation_difference,
    face_verification_accuracy,
    factor_drift,
    foreign_drift,
    mnac,
    predict,
)


def channel_oracle(images: torch.Tensor) -> torch.Tensor:
    """Stub oracle: "factor" k is the mean of channel k mapped from [-1, 1] to [0, 1]: (N, C)."""
    return (images.mean(dim=(2, 3)) + 1) / 2


def _constant_images(values: torch.Tensor, size: int = 4) -> torch.Tensor:
    """Images (N, C, size, size) whose channel c is the constant values[n, c]."""
    return values[:, :, None, None].expand(-1, -1, size, size).clone()


def test_predict_keeps_leading_dimensions_and_batches():
    images = torch.rand(3, 5, 3, 4, 4) * 2 - 1
    outputs = predict(channel_oracle, images, batch_size=4)
    torch.testing.assert_close(outputs, channel_oracle(images.reshape(15, 3, 4, 4)).view(3, 5, 3))


def test_factor_drift_measures_the_change_of_each_factor_per_step():
    query = _constant_images(torch.zeros(6, 3))
    shifts = torch.tensor([0.0, 0.2, 0.6])  # channel 0 moved by these amounts at the 3 steps
    strip = query[None].repeat(3, 1, 1, 1, 1)
    strip[:, :, 0] += shifts[:, None, None, None]
    drift = factor_drift(channel_oracle, strip, query)
    expected = torch.zeros(3, 3)
    expected[:, 0] = shifts / 2  # a pixel shift of d is a factor shift of d / 2
    torch.testing.assert_close(drift, expected)


def test_foreign_drift_excludes_the_target_factor():
    drift = torch.tensor([[0.5, 0.1, 0.0], [0.9, 0.3, 0.2]])
    summary = foreign_drift(drift, target_index=0, names=["smile", "glasses", "hair"])
    torch.testing.assert_close(summary["glasses"], 0.2)
    torch.testing.assert_close(summary["hair"], 0.1)
    torch.testing.assert_close(summary["mean"], 0.15)
    assert "smile" not in summary
    assert set(foreign_drift(drift, target_index=1)) == {"factor_0", "factor_2", "mean"}


def test_mnac_counts_flipped_other_attributes_of_successful_counterfactuals():
    query = _constant_images(torch.full((4, 3), -0.5))  # every attribute 0.25: absent
    counterfactual = query.clone()
    counterfactual[:, 0] = 0.5  # the target flips: not counted (not among the readings)
    counterfactual[:2, 1] = 0.5  # one other attribute flips for half of the pairs
    counterfactual[0, 2] = 0.5  # a second one for a quarter
    others = [AttributeReading(1, "b"), AttributeReading(2, "c")]
    everyone = torch.ones(4, dtype=torch.bool)
    torch.testing.assert_close(mnac(channel_oracle, others, counterfactual, query, everyone), 0.75)
    # Only successful counterfactuals count (DiVE, ACE): the last two changed nothing else.
    succeeded = torch.tensor([False, False, True, True])
    torch.testing.assert_close(mnac(channel_oracle, others, counterfactual, query, succeeded), 0.0)
    succeeded = torch.tensor([True, False, False, False])
    torch.testing.assert_close(mnac(channel_oracle, others, counterfactual, query, succeeded), 2.0)
    assert math.isnan(mnac(channel_oracle, others, counterfactual, query, ~everyone))
    # An attribute present below its threshold is read mirrored: 0.25 -> 0.5 is "present" ->
    # "absent", still one change.
    mirrored = [AttributeReading(1, "b", present_above=False)]
    torch.testing.assert_close(mnac(channel_oracle, mirrored, counterfactual, query, everyone), 0.5)


def test_attribute_correlation_known_matrix():
    attributes = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    expected = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(attribute_correlation(attributes), expected)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ((0.4, 0.4, 0.0), 0.0),  # attribute 1 follows the target as in the data: no difference
        ((0.4, 0.0, 0.0), 1.0),  # attribute 1 should have followed (rho = 1) but did not
        ((0.4, 0.0, 0.2), 1.5),  # ... and attribute 2 (rho = 0) moved by half the target's change
    ],
)
def test_correlation_difference_known_cases(change, expected):
    # Reference data: attribute 1 equals attribute 0 (rho = 1), attribute 2 independent (rho = 0).
    reference = _constant_images(
        torch.tensor([[-0.5, -0.5, -0.5], [-0.5, -0.5, 0.5], [0.5, 0.5, -0.5], [0.5, 0.5, 0.5]])
    )
    query = _constant_images(torch.zeros(5, 3))
    counterfactual = query + torch.tensor(change)[None, :, None, None]
    measured = correlation_difference(channel_oracle, counterfactual, query, reference, 0)
    torch.testing.assert_close(measured, expected)


def test_correlation_difference_needs_a_target_change():
    query = _constant_images(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="do not change the target"):
        correlation_difference(channel_oracle, query, query, query, 0)


def test_fva_counts_pairs_with_cosine_similarity_above_half():
    query = torch.randn(4, 3, 4, 4)
    counterfactual = torch.cat([2 * query[:2], -query[2:]])  # same direction for 2, opposite for 2
    fva = face_verification_accuracy(lambda x: x.flatten(1), counterfactual, query)
    torch.testing.assert_close(fva, 0.5)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="matching the queries"):
        factor_drift(channel_oracle, torch.zeros(2, 3, 3, 4, 4), torch.zeros(5, 3, 4, 4))
