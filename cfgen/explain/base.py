"""One contract for every explainer, captum-like.

An explainer is built with the black-box classifier `f: (N, C, H, W) -> (N,)` (the posterior
of the explained class, see `cfgen.models.blackbox.BlackBox`) and has one verb,
`explain(x, target)`, returning a relevance map shaped like `x`. Counterfactual explainers also
produce images (`counterfactual`) and strips (`exaggerate`); their map is |x - x_c|.

`target` is a target posterior in [0, 1] (a float or an (N,) tensor), not a class index as in
captum: the explained class is fixed by the black box, and `target` says how strongly it should
be present. `None` means the far end opposite to the current decision: 1 for queries with
f(x) < 0.5, 0 otherwise.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from cfgen.bins import bin_centre
from cfgen.errors import ConfigError, DataError
from cfgen.explain.strip import Strip

Classifier = Callable[[torch.Tensor], torch.Tensor]


def resolve_target(
    classifier: Classifier, x: torch.Tensor, target: float | torch.Tensor | None
) -> torch.Tensor:
    """Target posterior per query, (N,), from a float, an (N,) tensor or None (flip); a
    `DataError` for an empty batch (every explainer reads its target first)."""
    if x.shape[0] == 0:
        raise DataError(
            f"no images to explain: the batch is empty (shape {tuple(x.shape)}); give at least "
            "one image"
        )
    if target is None:
        with torch.no_grad():
            return (classifier(x) < 0.5).float()
    return check_target(target, x)


def check_target(target: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Target posterior per query, (N,), from a float or an (N,) tensor; a `ConfigError` for
    another number of targets than the queries, or a target outside [0, 1] (NaN too)."""
    n = x.shape[0]
    target = torch.as_tensor(target, dtype=torch.float32, device=x.device)
    if target.numel() == 1:
        target = target.reshape(()).expand(n)
    if target.shape != (n,):
        raise ConfigError(
            f"target must be one posterior or one per query, shaped ({n},); got shape "
            f"{tuple(target.shape)}"
        )
    outside = ~((target >= 0) & (target <= 1))
    if bool(outside.any()):
        first = int(outside.nonzero()[0])
        raise ConfigError(
            f"target posteriors must lie in [0, 1] (how strongly the explained class should be "
            f"present, not a class index); got {target[first].item():g} for query {first} "
            f"({int(outside.sum())} of {n} outside)"
        )
    return target


class Explainer(ABC):
    """Built with the classifier; `explain(x, target)` returns a map shaped like `x`."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    @abstractmethod
    def explain(self, x: torch.Tensor, target: float | torch.Tensor | None = None) -> torch.Tensor:
        """Relevance map, (N, C, H, W), for queries `x`, (N, C, H, W)."""


class CounterfactualExplainer(Explainer):
    """An explainer that produces images whose posterior reaches a target."""

    @abstractmethod
    def counterfactual(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) close to `x` whose posterior is near `target`, (N,)."""

    def explain(self, x: torch.Tensor, target: float | torch.Tensor | None = None) -> torch.Tensor:
        target = resolve_target(self.classifier, x, target)
        return (x - self.counterfactual(x, target)).abs()

    def exaggerate(self, x: torch.Tensor, n_bins: int = 10, bins=None) -> Strip:
        """Counterfactuals of `x` at every bin centre (or the given `bins`)."""
        target_bins = torch.arange(n_bins) if bins is None else torch.as_tensor(bins).long()
        images = [
            self.counterfactual(x, bin_centre(b.expand(x.shape[0]), n_bins).to(x.device))
            for b in target_bins
        ]
        images = torch.stack(images)
        with torch.no_grad():
            posteriors = torch.stack([self.classifier(step) for step in images])
            query_posteriors = self.classifier(x)
        return Strip(images.detach(), target_bins, posteriors, query_posteriors)
