"""What a counterfactual keeps, measured by an oracle: factor drift, MNAC, CD, FVA.

The oracle is any callable `(N, C, H, W) -> (N, K)` with outputs in [0, 1]: on the synthetic world
the `FactorOracle` (K generative factors, so a drift is a fraction of each factor's range), on real
data a multi-label attribute classifier returning probabilities. `target_index` is the column of
the explained factor/attribute; every other column is *foreign* and should not move.

Counterfactual images come either as one set `(N, C, H, W)` or as strips `(S, N, C, H, W)`; the
queries `(N, C, H, W)` are paired with them along N.
"""

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Oracle = Callable[[torch.Tensor], torch.Tensor]
Embedder = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def predict(model: Oracle, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Apply `model` to images (..., C, H, W) in batches -> (..., K)."""
    flat = images.reshape(-1, *images.shape[-3:])
    outputs = [model(flat[start : start + batch_size]) for start in range(0, len(flat), batch_size)]
    outputs = torch.cat(outputs)
    return outputs.reshape(*images.shape[:-3], *outputs.shape[1:])


def _as_steps(counterfactuals: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Counterfactuals as strips (S, N, C, H, W), checked against the queries (N, C, H, W)."""
    if counterfactuals.dim() == 4:
        counterfactuals = counterfactuals[None]
    if counterfactuals.dim() != 5 or counterfactuals.shape[1:] != query.shape:
        raise ValueError(
            f"counterfactuals must be (N, C, H, W) or (S, N, C, H, W) matching the queries "
            f"{tuple(query.shape)}, got {tuple(counterfactuals.shape)}"
        )
    return counterfactuals


def _paired_outputs(
    oracle: Oracle, counterfactuals: torch.Tensor, query: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Oracle outputs of the counterfactuals (S, N, K) and of the queries (N, K)."""
    steps = _as_steps(counterfactuals, query)
    return predict(oracle, steps, batch_size), predict(oracle, query, batch_size)


def _foreign(num_columns: int, target_index: int | Sequence[int]) -> torch.Tensor:
    """Boolean (K,) mask of the columns that are not the target's."""
    foreign = torch.ones(num_columns, dtype=torch.bool)
    foreign[torch.as_tensor(target_index, dtype=torch.long)] = False
    return foreign


def factor_drift(
    oracle: Oracle, strip_images: torch.Tensor, query: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Mean |oracle(x_s) - oracle(x)| over the queries, per step and factor: (S, K).

    strip_images: (S, N, C, H, W) (or (N, C, H, W), read as one step); query: (N, C, H, W).
    """
    outputs, query_outputs = _paired_outputs(oracle, strip_images, query, batch_size)
    return (outputs - query_outputs).abs().mean(dim=1)


def foreign_drift(
    drift: torch.Tensor, target_index: int, names: Sequence[str] | None = None
) -> dict[str, float]:
    """Summary of `factor_drift` (S, K): each foreign factor's drift averaged along the strip,
    keyed by name (or `factor_<k>`), and `mean`, the mean over every foreign factor."""
    names = list(names) if names is not None else [f"factor_{k}" for k in range(drift.shape[1])]
    if len(names) != drift.shape[1]:
        raise ValueError(f"{len(names)} names for {drift.shape[1]} factors")
    foreign = _foreign(drift.shape[1], target_index)
    per_factor = drift.mean(dim=0)
    summary = {names[k]: per_factor[k].item() for k in torch.nonzero(foreign).flatten().tolist()}
    summary["mean"] = per_factor[foreign].mean().item()
    return summary


def mnac(
    oracle: Oracle,
    counterfactuals: torch.Tensor,
    query: torch.Tensor,
    target_index: int,
    threshold: float = 0.5,
    batch_size: int = 256,
) -> float:
    """Mean number of attributes changed: foreign attributes whose binarised oracle output
    (> `threshold`) differs between a counterfactual and its query, averaged over all pairs."""
    outputs, query_outputs = _paired_outputs(oracle, counterfactuals, query, batch_size)
    flips = (outputs > threshold) != (query_outputs > threshold)
    foreign = _foreign(outputs.shape[-1], target_index).to(flips.device)
    return flips[..., foreign].sum(dim=-1).float().mean().item()


def attribute_correlation(attributes: torch.Tensor) -> torch.Tensor:
    """Pearson correlation matrix (K, K) of attributes (M, K); constant columns correlate 0."""
    centred = attributes.double() - attributes.double().mean(dim=0)
    scale = centred.norm(dim=0)
    correlation = (centred.T @ centred) / (scale[:, None] * scale[None, :]).clamp_min(1e-12)
    return correlation.float()


def correlation_difference(
    oracle: Oracle,
    counterfactuals: torch.Tensor,
    query: torch.Tensor,
    reference: torch.Tensor,
    target_index: int,
    batch_size: int = 256,
) -> float:
    """CD, after DiVE (Rodriguez et al., ICCV 2021): does a counterfactual move the other
    attributes as much as they co-vary with the target in real data?

    For each foreign attribute j, the data correlation rho(target, j) on `reference` real images
    (M, C, H, W) is compared with the counterfactual's relative change mean(Δ_j) / mean(Δ_target)
    (oracle outputs, counterfactual minus query, over all pairs); CD = Σ_j |rho - relative change|.
    0 means the explainer changes the other attributes exactly as the data correlates them; with
    independent factors (the synthetic world) it is the summed leakage into foreign attributes.
    """
    outputs, query_outputs = _paired_outputs(oracle, counterfactuals, query, batch_size)
    change = (outputs - query_outputs).reshape(-1, outputs.shape[-1]).double().mean(dim=0)
    target_change = change[target_index]
    if target_change.abs() < 1e-6:
        raise ValueError(
            "the counterfactuals do not change the target attribute on average "
            f"(mean change {target_change.item():.2e}); CD is undefined"
        )
    relative_change = (change / target_change).float().cpu()
    data_correlation = attribute_correlation(predict(oracle, reference, batch_size)).cpu()
    foreign = _foreign(change.shape[0], target_index)
    difference = data_correlation[target_index] - relative_change
    return difference[foreign].abs().sum().item()


def face_verification_accuracy(
    embedder: Embedder,
    counterfactuals: torch.Tensor,
    query: torch.Tensor,
    threshold: float = 0.5,
    batch_size: int = 256,
) -> float:
    """FVA: share of (query, counterfactual) pairs whose embeddings have cosine similarity
    > `threshold`, i.e. that an identity embedder still calls the same person.

    `embedder` maps (N, C, H, W) -> (N, D). Default in cfgen: the oracle's trunk features
    (`FactorOracle.features`), a domain embedding of every generative factor, since a face
    recognition network is not available offline; on real faces pass a face embedder.
    """
    embeddings, query_embeddings = _paired_outputs(embedder, counterfactuals, query, batch_size)
    similarity = F.cosine_similarity(embeddings, query_embeddings[None].expand_as(embeddings), -1)
    return (similarity > threshold).float().mean().item()


fva = face_verification_accuracy
