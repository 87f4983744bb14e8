import pytest
import torch

from cfgen.evaluate.localisation import localisation_summary, pointing_game, relevance_mass


def _square_region(n: int = 2, size: int = 16) -> torch.Tensor:
    region = torch.zeros(n, size, size)
    region[:, 4:8, 4:12] = 1.0  # 32 of 256 pixels: an area share of 1/8
    return region


def test_map_equal_to_the_mask_scores_one():
    region = _square_region()
    torch.testing.assert_close(relevance_mass(region, region), torch.ones(2))
    torch.testing.assert_close(pointing_game(region, region), torch.ones(2))


def test_uniform_map_mass_is_the_region_area_share():
    region = _square_region()
    uniform = torch.ones(2, 3, 16, 16)
    torch.testing.assert_close(relevance_mass(uniform, region), torch.full((2,), 1 / 8))
    summary = localisation_summary(uniform, region)
    torch.testing.assert_close(summary["relevance_mass"], summary["region_share"])


def test_only_positive_relevance_counts_and_empty_maps_score_zero():
    region = _square_region(1)
    relevance = torch.zeros(1, 16, 16)
    relevance[0, 5, 5] = 3.0  # inside
    relevance[0, 0, 0] = 1.0  # outside
    relevance[0, 15, 15] = -10.0  # negative: ignored
    torch.testing.assert_close(relevance_mass(relevance, region), torch.tensor([0.75]))
    torch.testing.assert_close(relevance_mass(-relevance.abs(), region), torch.tensor([0.0]))


def test_pointing_game_with_peak_outside_and_tolerance():
    region = _square_region(1)
    relevance = torch.zeros(1, 16, 16)
    relevance[0, 9, 6] = 1.0  # one row below the region's last row (7)
    torch.testing.assert_close(pointing_game(relevance, region), torch.tensor([0.0]))
    torch.testing.assert_close(pointing_game(relevance, region, tolerance=2), torch.tensor([1.0]))
    torch.testing.assert_close(pointing_game(relevance, region, tolerance=1), torch.tensor([0.0]))


def test_soft_masks_are_binarised_at_half():
    region = _square_region(1) * 0.6
    region[0, 0, :] = 0.4  # soft edge below one half: outside
    relevance = torch.zeros(1, 16, 16)
    relevance[0, 0, 3] = 1.0
    torch.testing.assert_close(pointing_game(relevance, region), torch.tensor([0.0]))
    torch.testing.assert_close(
        relevance_mass(region, region), torch.tensor([32 * 0.6 / (32 * 0.6 + 16 * 0.4)])
    )


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="does not match the region masks"):
        relevance_mass(torch.ones(2, 8, 8), _square_region())
