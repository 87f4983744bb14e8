"""Figures shared by the report, the training callbacks and `cfgen generate`: each a pure
function from arrays to PNG bytes.

Images come as numpy arrays in [-1, 1], channels first: queries (K, C, H, W), strips
(S, K, C, H, W) with posteriors (S, K), saliency maps (K, H, W).

Figures are matplotlib `Figure` objects drawn without pyplot: no backend is chosen or switched
(a notebook that imports cfgen keeps its own), nothing needs a display, and no global figure
list is kept, so figures can be drawn from several threads.
"""

import io

import numpy as np
from matplotlib.figure import Figure

FRAME_INCHES = 1.0


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, 3) in [0, 1] for imshow (grey images get 3 channels)."""
    image = np.clip((np.asarray(image, dtype=np.float32) + 1.0) / 2.0, 0.0, 1.0)
    image = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]
    return image.transpose(1, 2, 0)


def compatibility_plot(curves: dict[str, dict[str, list[float]]]) -> bytes:
    """Target vs achieved posterior per bin for each counterfactual method, with the diagonal."""
    figure = Figure(figsize=(4.2, 3.8))
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="ideal")
    for name, curve in curves.items():
        target, mean = np.array(curve["target"]), np.array(curve["achieved_mean"])
        std = np.array(curve["achieved_std"])
        axis.errorbar(target, mean, yerr=std, marker="o", capsize=2, label=name)
    axis.set(xlabel="target posterior (bin centre)", ylabel="achieved posterior", xlim=(0, 1))
    axis.set(ylim=(0, 1), title="compatibility")
    axis.legend(loc="upper left", fontsize=8)
    return _png(figure)


def strip_figure(
    strip: np.ndarray,
    posteriors: np.ndarray,
    queries: np.ndarray,
    query_posteriors: np.ndarray,
    title: str = "",
    truth: np.ndarray | None = None,
    truth_gaps: np.ndarray | None = None,
) -> bytes:
    """One row per query: the query, then one frame per bin, each with the classifier's
    posterior printed under it. With `truth` (S, K, C, H, W), each row is followed by the true
    counterfactual of every frame, labelled with the frame's L1 distance to it (`truth_gaps`)."""
    steps, queries_shown = strip.shape[:2]
    per_query = 1 if truth is None else 2
    rows = queries_shown * per_query
    height = rows * (FRAME_INCHES + 0.25)
    figure = Figure(figsize=((steps + 1) * FRAME_INCHES, height))
    axes = figure.subplots(rows, steps + 1, squeeze=False)
    # matplotlib's default top margin is a fraction of the height (12%): two inches of empty
    # band under the title of a 16-row figure. A fixed 0.3 inch holds the title, whatever the rows.
    figure.subplots_adjust(top=1 - 0.3 / height)
    for query in range(queries_shown):
        frames = [(queries[query], f"query {query_posteriors[query]:.2f}")]
        frames += [(strip[step, query], f"{posteriors[step, query]:.2f}") for step in range(steps)]
        _draw_row(axes[query * per_query], frames)
        if truth is not None:
            labelled = [(truth[s, query], f"L1 {truth_gaps[s, query]:.3f}") for s in range(steps)]
            _draw_row(axes[query * per_query + 1], labelled, "truth")
    if title:
        figure.suptitle(title, fontsize=10, y=1 - 0.1 / height, va="top")
    return _png(figure)


def _draw_row(axes, frames: list, first_label: str | None = None) -> None:
    """Images with a label under each; with `first_label`, the first axis holds only that text
    (the rows of true counterfactuals, which have no query of their own)."""
    if first_label is not None:
        axes[0].text(0.5, 0.5, first_label, ha="center", va="center", fontsize=9)
        axes[0].set_axis_off()
        axes = axes[1:]
    for axis, (image, label) in zip(axes, frames, strict=True):
        axis.imshow(to_rgb(image), interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_xlabel(label, fontsize=8, labelpad=2)


def maps_figure(
    queries: np.ndarray, counterfactuals: dict[str, np.ndarray], maps: dict[str, np.ndarray]
) -> bytes:
    """One row per query: the query, each method's counterfactual, then every relevance map."""
    columns = [("query", queries, False)]
    columns += [(f"{name} x_far", images, False) for name, images in counterfactuals.items()]
    columns += [(name, relevance, True) for name, relevance in maps.items()]
    rows = queries.shape[0]
    figure = Figure(figsize=(len(columns) * 1.1, rows * 1.2))
    axes = figure.subplots(rows, len(columns), squeeze=False)
    for column, (name, values, is_map) in enumerate(columns):
        for row in range(rows):
            axis = axes[row, column]
            if is_map:
                relevance = np.asarray(values[row], dtype=np.float32)
                # Per-map scaling: methods have unrelated units, only the pixel ranking matters.
                axis.imshow(relevance / max(relevance.max(), 1e-12), cmap="inferno")
            else:
                axis.imshow(to_rgb(values[row]), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
        axes[0, column].set_title(name.replace(" ", "\n", 1), fontsize=6)
    return _png(figure)


def bias_plot(bias: dict) -> bytes:
    """The confounder's drift per step along the strips of the biased and unbiased explainers."""
    figure = Figure(figsize=(4.2, 3.0))
    axis = figure.subplots()
    for label in ("biased", "unbiased"):
        values = bias[label]["curve"]
        axis.plot(range(len(values)), values, marker="o", label=f"{label} classifier")
    axis.set(xlabel="target bin", ylabel=f"|change in {bias['confounder']}|", ylim=(0, 1))
    axis.set(title=f"{bias['confounder']} along the strip")
    axis.legend(fontsize=8)
    return _png(figure)
