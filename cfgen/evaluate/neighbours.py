"""Judges that no classifier learned: nearest real images in pixel space.

A counterfactual that moves the explained classifier through a pattern only learned networks
read (a colour smudge, a few bright pixels) is read the same way by any network trained on the
same data. Nearest neighbours among real images answer to what the images look like instead:

- `NearestNeighbourJudge`: the posterior of an image is the share of its k nearest real
  training images (Euclidean distance over pixels, or over any fixed embedding) that carry the
  attribute: CARLA's "yNN" read as a classifier. Its flip rate along a strip is scored like the
  classifier's (`cfgen.evaluate.shift.flip_rate`).
- `manifold_distance`: each image's distance to its nearest real training image; the suite
  reports the far frames' mean over the same for the real queries themselves, so 1 means "as
  close to real images as real images are" (the queries scored in place of the frames give 1
  exactly) and an implausible edit scores above 1.

The reference set must be disjoint from the queries (the training split; the queries come from
the test split).
"""

from collections.abc import Callable

import torch

Embedding = Callable[[torch.Tensor], torch.Tensor]
_CHUNK = 512  # images per distance block: bounds the (chunk, M) distance matrix


def pixels(images: torch.Tensor) -> torch.Tensor:
    """The identity embedding: images (N, C, H, W) -> (N, C*H*W)."""
    return images.reshape(len(images), -1).float()


class NearestNeighbourJudge:
    """Share of the k nearest reference images that carry the attribute: (N, C, H, W) -> (N,).

    reference: real images (M, C, H, W) disjoint from every query; labels: (M,) 0/1 ground truth
    of the explained attribute (NaN rows are dropped); embed: the space distances are taken in
    (default: pixels, a space no classifier learned).
    """

    def __init__(
        self,
        reference: torch.Tensor,
        labels: torch.Tensor,
        k: int = 15,
        embed: Embedding = pixels,
    ) -> None:
        known = torch.isfinite(labels)
        if int(known.sum()) < k:
            raise ValueError(
                f"the nearest-neighbour judge needs at least k={k} labelled reference images, "
                f"got {int(known.sum())}"
            )
        self.embed, self.k = embed, k
        self.reference = embed(reference[known])
        self.labels = labels[known].float()
        self._squared_norms = (self.reference**2).sum(dim=1)

    def distances(self, images: torch.Tensor) -> torch.Tensor:
        """Euclidean distances (N, M) of images to every reference image."""
        points = self.embed(images)
        squared = (points**2).sum(dim=1, keepdim=True) - 2 * points @ self.reference.T
        return (squared + self._squared_norms[None]).clamp_min(0).sqrt()

    def nearest(self, images: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances (N, k) and indices (N, k) of the k nearest reference images, in chunks."""
        values, indices = [], []
        for start in range(0, len(images), _CHUNK):
            found = self.distances(images[start : start + _CHUNK]).topk(k, largest=False)
            values.append(found.values)
            indices.append(found.indices)
        return torch.cat(values), torch.cat(indices)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        _, indices = self.nearest(images, self.k)
        return self.labels[indices].mean(dim=1)

    @torch.no_grad()
    def manifold_distance(self, images: torch.Tensor) -> torch.Tensor:
        """Distance of each image (N, C, H, W) to its nearest reference image, (N,)."""
        distances, _ = self.nearest(images, 1)
        return distances[:, 0]
