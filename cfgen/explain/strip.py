"""The exaggeration strip: one query's images moved bin by bin across the decision boundary."""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Strip:
    """Counterfactuals of N queries at S target bins.

    images: (S, N, C, H, W) in [-1, 1]; target_bins: (S,) long; posteriors: (S, N), the
    classifier's posterior of each image; query_posteriors: (N,), its posterior of each query.
    """

    images: torch.Tensor
    target_bins: torch.Tensor
    posteriors: torch.Tensor
    query_posteriors: torch.Tensor

    def __post_init__(self) -> None:
        steps, n = self.images.shape[:2]
        if self.target_bins.shape != (steps,) or self.posteriors.shape != (steps, n):
            raise ValueError(
                f"inconsistent strip: images {tuple(self.images.shape)}, target_bins "
                f"{tuple(self.target_bins.shape)}, posteriors {tuple(self.posteriors.shape)}"
            )
        if self.query_posteriors.shape != (n,):
            raise ValueError(f"query_posteriors must be ({n},), got {self.query_posteriors.shape}")

    @property
    def num_queries(self) -> int:
        return self.images.shape[1]

    def select(self, queries: slice | torch.Tensor) -> "Strip":
        """The strip restricted to some queries."""
        return Strip(
            self.images[:, queries],
            self.target_bins,
            self.posteriors[:, queries],
            self.query_posteriors[queries],
        )

    def far_end(self) -> torch.Tensor:
        """Each query's counterfactual at the strip end opposite to its decision, (N, C, H, W).

        A query the classifier calls absent (f < 0.5) is explained by its last (most present)
        image, a present one by its first: the same direction `flip_rate` scores.
        """
        goes_up = (self.query_posteriors < 0.5).view(-1, *([1] * (self.images.dim() - 2)))
        return torch.where(goes_up.to(self.images.device), self.images[-1], self.images[0])

    @staticmethod
    def concat(strips: "list[Strip]") -> "Strip":
        """Join strips of the same bins along the query axis."""
        return Strip(
            torch.cat([s.images for s in strips], dim=1),
            strips[0].target_bins,
            torch.cat([s.posteriors for s in strips], dim=1),
            torch.cat([s.query_posteriors for s in strips]),
        )
