"""Does a relevance map point at the right place? (Needs ground-truth regions.)

On the synthetic world the region where the explained factor is drawn is known (`masks[:, r]` for
`r = region_names.index(FACTOR_REGION[factor])`), so any map, saliency or |x - x_c|, can be
checked against it:

- relevance mass (Arras et al., 2022): the share of the positive relevance that lies inside the
  region; a uniform map scores the region's share of the image, a perfect one 1;
- pointing game (Zhang et al., 2016): whether the map's maximum lies inside the region (grown by
  `tolerance` pixels, as the original protocol allows).

Maps are (N, C, H, W) (summed over channels first) or (N, H, W); regions (N, H, W) in [0, 1], a
pixel belongs to the region when its mask value is at least 0.5 (soft, anti-aliased edges).
"""

import torch
import torch.nn.functional as F


def _heatmap(relevance: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """The map as (N, H, W), checked against the region (N, H, W)."""
    heatmap = relevance.sum(dim=1) if relevance.dim() == 4 else relevance
    if heatmap.shape != region.shape:
        raise ValueError(
            f"relevance {tuple(relevance.shape)} does not match the region masks "
            f"{tuple(region.shape)}; expected (N, C, H, W) or (N, H, W) with the masks' N, H, W"
        )
    return heatmap


def relevance_mass(relevance: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Share of the positive relevance inside the region, per image: (N,) in [0, 1].

    A map without positive relevance scores 0.
    """
    positive = _heatmap(relevance, region).clamp_min(0).double()
    inside = (region >= 0.5).to(positive)
    total = positive.flatten(1).sum(dim=1)
    mass = (positive * inside).flatten(1).sum(dim=1) / total.clamp_min(1e-12)
    return torch.where(total > 0, mass, 0.0).float()


def pointing_game(
    relevance: torch.Tensor, region: torch.Tensor, tolerance: int = 0
) -> torch.Tensor:
    """1.0 where the map's maximum lies inside the region (grown by `tolerance` pixels), else
    0.0, per image: (N,). Ties go to the first maximum in raster order."""
    heatmap = _heatmap(relevance, region)
    inside = (region >= 0.5).float()
    if tolerance > 0:
        inside = F.max_pool2d(inside[:, None], 2 * tolerance + 1, stride=1, padding=tolerance)[:, 0]
    peak = heatmap.flatten(1).argmax(dim=1)
    return inside.flatten(1).gather(1, peak[:, None])[:, 0]


def localisation_summary(
    relevance: torch.Tensor, region: torch.Tensor, tolerance: int = 0
) -> dict[str, float]:
    """Mean relevance mass and pointing-game accuracy over the images, plus the regions' mean
    area share: the relevance mass a uniform map would get, the chance level to compare with."""
    return {
        "relevance_mass": relevance_mass(relevance, region).mean().item(),
        "pointing_game": pointing_game(relevance, region, tolerance).mean().item(),
        "region_share": (region >= 0.5).float().flatten(1).mean(dim=1).mean().item(),
    }
