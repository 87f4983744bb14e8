"""The posterior bins that condition the explainer (docs/DESIGN.md, "Official defaults").

The posterior range [0, 1] is cut into `n_bins` equal bins; an image with posterior p lies in
bin floor(n_bins * p), with p = 1 put in the last bin.
"""

import torch


def posterior_to_bin(posterior: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin index of each posterior. `posterior`: (N,) in [0, 1] -> (N,) long in [0, n_bins)."""
    return (posterior * n_bins).floor().long().clamp(0, n_bins - 1)


def bin_centre(target_bin: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Posterior at the centre of each bin: (N,) long -> (N,) float."""
    return (target_bin.float() + 0.5) / n_bins


def bin_lower_edge(target_bin: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Posterior at the lower edge of each bin (the official code's target): (N,) -> (N,)."""
    return target_bin.float() / n_bins


BIN_TARGETS = {"centre": bin_centre, "lower": bin_lower_edge}


def bin_target(target_bin: torch.Tensor, n_bins: int, kind: str = "centre") -> torch.Tensor:
    """Target posterior of each bin, `kind` one of `BIN_TARGETS`."""
    try:
        return BIN_TARGETS[kind](target_bin, n_bins)
    except KeyError:
        raise ValueError(
            f"unknown bin target {kind!r}; choose one of {sorted(BIN_TARGETS)}"
        ) from None
