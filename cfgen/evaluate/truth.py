"""The true counterfactual: how far each frame lies from its query re-rendered with the cause moved.

Where the data's generative process is known (the synthetic world), the counterfactual a method
should draw is known too: the same face, grain included, with only the explained factor moved
to the other side of the attribute's threshold. Every frame of a strip asks for one side (its
target bin's centre above or below 0.5); its distance to the truth is the L1 distance (mean over
pixels and channels) to the *nearest* re-rendering of its query on that side, the factor on a
grid of values (`TrueCounterfactuals`). A method is scored against doing nothing, the query put
in the frame's place:

    truth ratio = mean over queries of d(frame, truth) / mean over queries of d(query, truth)

so re-rendered frames score 0, the unedited query 1, and a frame further from every valid
re-rendering than the query was scores above 1. The ratio is given for the far frame (the strip
end opposite to the query's decision) and the near frame (the first frame across the decision),
plainly and after a 3x3 box blur of frame and truth alike (`blur`), which forgives strokes drawn
one pixel off. `region_share` is the share of the far frame's error that lies on the explained
factor's region (the mouth for Smiling): an edit in the right place but of the wrong kind has a
high share and a high ratio.

Every function returns per-query values, so that the suite can give bootstrap intervals.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cfgen.bins import bin_centre

GRID_SIZE = 41
DECISION = 0.5
_CHUNK = 64  # queries per distance computation: bounds (V, chunk, C, H, W) temporaries


@dataclass
class TrueCounterfactuals:
    """The queries re-rendered on a grid of values of the explained factor.

    renders: (V, N, C, H, W), render `v` of query `n` with the factor set to `values[v]`, all
    else (texture grain too) kept; present: (V,) bool, whether the attribute is present at each
    value (the factor above its threshold, or below it for an attribute present below).
    """

    renders: torch.Tensor
    values: torch.Tensor
    present: torch.Tensor

    @classmethod
    def from_renderer(
        cls,
        render: Callable[[float], torch.Tensor],
        threshold: float,
        present_above: bool = True,
        grid_size: int = GRID_SIZE,
    ) -> "TrueCounterfactuals":
        """Render the grid with `render(value) -> (N, C, H, W)`; present per the rule."""
        values = torch.linspace(0.0, 1.0, grid_size)
        renders = torch.stack([render(float(value)) for value in values])
        present = values > threshold if present_above else values < threshold
        return cls(renders, values, present)

    def head(self, k: int) -> "TrueCounterfactuals":
        """The same grid for the first `k` queries."""
        return TrueCounterfactuals(self.renders[:, :k], self.values, self.present)


def box_blur(images: torch.Tensor) -> torch.Tensor:
    """3x3 box blur of images (..., C, H, W), edges replicated: the same shape."""
    flat = images.reshape(-1, *images.shape[-3:]).float()
    padded = F.pad(flat, (1, 1, 1, 1), mode="replicate")
    return F.avg_pool2d(padded, 3, stride=1).reshape(images.shape)


def nearest_on_side(
    frames: torch.Tensor, truth: TrueCounterfactuals, asked_present: torch.Tensor, blur: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance of each frame to the nearest re-rendering of its query on its asked side.

    frames: (S, N, C, H, W); asked_present: (S, N) bool. Returns distances (S, N), L1 mean over
    channels and pixels, and the index (S, N) of the nearest grid render.
    """
    renders = truth.renders
    distances = frames.new_empty(frames.shape[:2])
    nearest = torch.empty(frames.shape[:2], dtype=torch.long, device=frames.device)
    for start in range(0, frames.shape[1], _CHUNK):
        part = slice(start, start + _CHUNK)
        candidates, shown = renders[:, part].float(), frames[:, part].float()
        if blur:
            candidates, shown = box_blur(candidates), box_blur(shown)
        # (S, V, n): every frame against every grid value of its own query.
        gaps = (shown[:, None] - candidates[None]).abs().mean(dim=(-3, -2, -1))
        wrong_side = truth.present.to(frames.device)[None, :, None] != asked_present[:, None, part]
        gaps = gaps.masked_fill(wrong_side, float("inf"))
        distances[:, part], nearest[:, part] = gaps.min(dim=1)
    return distances, nearest


def asked_sides(target_bins: torch.Tensor, n_queries: int, n_bins: int) -> torch.Tensor:
    """Whether each frame asks for the attribute present: (S,) bins -> (S, N) bool."""
    centres = bin_centre(target_bins.long(), n_bins)
    return (centres > DECISION)[:, None].expand(-1, n_queries)


def crossing_frames(query_posteriors: torch.Tensor, target_bins: torch.Tensor, n_bins: int):
    """Indices (N,) of each query's far frame and near frame.

    A query the classifier calls absent (f < 0.5) is explained upwards: its far frame is the
    last, its near frame the first whose bin centre lies above 0.5; a present query the reverse.
    """
    centres = bin_centre(target_bins.long(), n_bins)
    above = torch.nonzero(centres > DECISION).flatten()
    below = torch.nonzero(centres <= DECISION).flatten()
    goes_up = query_posteriors.cpu() < DECISION
    last = len(target_bins) - 1
    far = torch.where(goes_up, last, 0)
    near_up = int(above[0]) if len(above) else last
    near_down = int(below[-1]) if len(below) else 0
    near = torch.where(goes_up, near_up, near_down)
    return far, near


def _pick(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (S, N, ...) at step index[n] for every query n -> (N, ...)."""
    return values[index.to(values.device), torch.arange(values.shape[1], device=values.device)]


def truth_distances(
    images: torch.Tensor,
    queries: torch.Tensor,
    query_posteriors: torch.Tensor,
    target_bins: torch.Tensor,
    truth: TrueCounterfactuals,
    n_bins: int,
    region: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-query distances to the true counterfactual of the far and near frames.

    images: the strip (S, N, C, H, W); queries (N, C, H, W) with the classifier's posteriors
    (N,); region: the explained factor's region (N, H, W) in [0, 1], or None. Returns (N,)
    tensors: `far`, `near` (the frame's distance) and `far_query`, `near_query` (the query's
    distance to the same side's truth), each again with the suffix `_blur`; and `far_region`,
    `far_error` (the far frame's L1 error inside the region, and overall) when a region is given.
    """
    far, near = crossing_frames(query_posteriors, target_bins, n_bins)
    asked = asked_sides(target_bins, queries.shape[0], n_bins).to(images.device)
    repeated = queries[None].expand_as(images)
    out: dict[str, torch.Tensor] = {}
    for suffix, blur in (("", False), ("_blur", True)):
        frame_gap, nearest = nearest_on_side(images, truth, asked, blur)
        query_gap, _ = nearest_on_side(repeated, truth, asked, blur)
        for name, index in (("far", far), ("near", near)):
            out[f"{name}{suffix}"] = _pick(frame_gap, index)
            out[f"{name}_query{suffix}"] = _pick(query_gap, index)
        if not blur and region is not None:
            columns = torch.arange(queries.shape[0])
            closest = truth.renders[_pick(nearest, far).cpu(), columns].to(images)
            error = (_pick(images, far) - closest).abs().sum(dim=1)  # (N, H, W)
            out["far_region"] = (error * region.to(error)).flatten(1).sum(dim=1)
            out["far_error"] = error.flatten(1).sum(dim=1)
    return out


def truth_figures(distances: dict[str, torch.Tensor]) -> dict[str, float]:
    """The ratios of `truth_distances`' per-query values (module docstring)."""
    figures = {}
    for name in ("far", "near", "far_blur", "near_blur"):
        base, _, suffix = name.partition("_")
        query = distances[f"{base}_query{'_' + suffix if suffix else ''}"]
        figures[f"truth_{name}"] = ratio(distances[name], query)
    if "far_region" in distances:
        figures["truth_region_share"] = ratio(distances["far_region"], distances["far_error"])
    return figures


def ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> float:
    """mean(numerator) / mean(denominator); NaN when the denominator's mean is 0."""
    below = denominator.double().mean()
    if below <= 0:
        return float("nan")
    return (numerator.double().mean() / below).item()


def true_strip(
    truth: TrueCounterfactuals,
    classifier: Callable[[torch.Tensor], torch.Tensor],
    target_bins: torch.Tensor,
    n_bins: int,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The re-rendered strip: for every query and bin, the grid render on the bin's side of the
    attribute's threshold whose classifier posterior lies nearest the bin's centre. Returns
    images (S, N, C, H, W) and their posteriors (S, N): the reference that shows what a perfect
    counterfactual method scores on every figure (its frames are true counterfactuals, so its
    distance to the truth is 0)."""
    flat = truth.renders.flatten(0, 1)
    with torch.no_grad():
        posteriors = torch.cat(
            [classifier(flat[i : i + batch_size].float()) for i in range(0, len(flat), batch_size)]
        ).view(truth.renders.shape[:2])
    centres = bin_centre(target_bins.long(), n_bins).to(posteriors)
    # (S, V, N): how far each grid render's posterior lies from each bin's centre.
    gaps = (posteriors[None] - centres[:, None, None]).abs()
    wrong_side = truth.present.to(gaps.device)[None, :] != (centres > DECISION)[:, None]
    choice = gaps.masked_fill(wrong_side[..., None], float("inf")).argmin(dim=1)
    columns = torch.arange(truth.renders.shape[1])
    images = truth.renders[choice, columns[None]].float()
    return images, posteriors[choice, columns[None]]


def nearest_true_frames(
    images: torch.Tensor, truth: TrueCounterfactuals, target_bins: torch.Tensor, n_bins: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every frame of a strip (S, N, C, H, W), the true counterfactual it is measured
    against (the nearest re-rendering on its asked side) and its distance: (S, N, C, H, W) and
    (S, N). What the report draws under each strip."""
    asked = asked_sides(target_bins, images.shape[1], n_bins).to(images.device)
    gaps, nearest = nearest_on_side(images, truth, asked, blur=False)
    columns = torch.arange(images.shape[1])[None]
    return truth.renders[nearest.cpu(), columns].float(), gaps
