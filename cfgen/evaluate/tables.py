"""The evaluation's tables: what each column of the headline tables is, and how rows are made.

Pure functions of the suite's `results` dict: the report, the demo's closing summary and the
W&B summary all read the same tables.
"""

import math

# Headline tables: (label, metric group, key) per column; the timing column is added from
# `timing`. Counterfactual methods get their own table (what their images do, read by the
# explained classifier, the true counterfactual, the oracle, judges of other kinds, realism and
# preservation); every method's relevance map (|x - x_far| for counterfactuals) is scored in
# the second. `GLOSSARY` says what each column measures.
# Two tables, so that each fits a page: whether the cause changed (the explained classifier,
# the true counterfactual, the oracle's reading, the judges), then what is kept and how real.
CAUSE_COLUMNS = [
    ("flip", "shift", "flip_rate"),
    ("compat MAE", "shift", "compat_mae"),
    ("monotonicity", "shift", "monotonicity"),
    ("truth far ×", "truth", "truth_far"),
    ("truth near ×", "truth", "truth_near"),
    ("truth far × blurred", "truth", "truth_far_blur"),
    ("oracle reading flip", "validity", "reading_flip"),
    ("judge flip", "judge", "judge_flip_rate"),
    ("robust judge flip", "robust_judge", "robust_flip_rate"),
    ("kNN flip", "neighbours", "knn_flip_rate"),
]
KEPT_COLUMNS = [
    ("manifold ×", "neighbours", "manifold_ratio"),
    ("identity L1", "identity", "identity_l1"),
    ("FID", "realism", "fid_overall"),
    ("sFID", "realism", "sfid"),
    ("foreign drift", "preservation", "foreign_drift"),
    ("MNAC", "preservation", "mnac"),
]
COUNTERFACTUAL_COLUMNS = CAUSE_COLUMNS + KEPT_COLUMNS
MAP_COLUMNS = [
    ("deletion AUC", "faithfulness", "deletion_auc"),
    ("insertion AUC", "faithfulness", "insertion_auc"),
    ("COUT", "faithfulness", "cout"),
    ("COUT own", "faithfulness", "cout_own"),
    ("relevance mass", "localisation", "relevance_mass"),
    ("pointing game", "localisation", "pointing_game"),
    ("max-sensitivity", "robustness", "max_sensitivity"),
    ("randomised Spearman", "robustness", "randomised_spearman_all"),
]
GLOSSARY = {
    "flip": "share of strips whose far frame crosses the explained classifier's decision (↑)",
    "compat MAE": "mean |posterior - bin centre| over every frame: does each frame land in "
    "its bin (↓)",
    "monotonicity": "mean Spearman correlation of the posterior with the target bin (↑)",
    "truth far ×": "distance of the far frame to the nearest true counterfactual (the query "
    "re-rendered with only the explained factor moved across the threshold) over the same "
    "distance for the unedited query: 0 = the truth, 1 = no better than doing nothing (↓)",
    "truth near ×": "the same for the first frame across the decision (↓)",
    "truth far × blurred": "truth far × after a 3x3 blur of frame and truth, forgiving "
    "strokes one pixel off (↓)",
    "oracle reading flip": "share of far frames across the attribute's threshold as the "
    "oracle network reads it (a CNN of the same data: fooled by what fools the classifier) (↑)",
    "judge flip": "flip rate as a second classifier of the attribute sees it, trained like "
    "the explained one on other images (↑)",
    "robust judge flip": "flip rate as an adversarially trained classifier of the attribute "
    "sees it, trained on other images (↑)",
    "kNN flip": "flip rate as the labels of the k nearest real training images in pixel "
    "space read it: no network (↑)",
    "manifold ×": "the far frames' distance to the nearest real training image over the real "
    "queries' own: 1 = as close to real images as real images are (↓)",
    "identity L1": "mean |x - I(x, c_x)|: what the method changes when asked for the query's "
    "own bin (↓)",
    "FID": "Fréchet distance of every frame to real images in the oracle's features (↓)",
    "sFID": "FID of far frames against the queries, split so none meets its own query (↓)",
    "foreign drift": "mean change of the oracle's reading of every other factor (↓)",
    "MNAC": "mean number of other binary attributes that change, over successful "
    "counterfactuals (DiVE / ACE) (↓)",
}


def _format(value) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def metric(entry: dict, group: str, key: str):
    """A method entry's figure `group.key`, or None when it was not measured."""
    return entry.get("metrics", {}).get(group, {}).get(key)


def interval(entry: dict, group: str, key: str) -> list[float] | None:
    """A method entry's 95% interval of `group.key`, or None when it has none."""
    return entry.get("intervals", {}).get(group, {}).get(key)


def _cell(entry: dict, group: str, key: str, intervals: bool) -> str:
    text = _format(metric(entry, group, key))
    bounds = interval(entry, group, key) if intervals else None
    if bounds is None or text == "–" or any(math.isnan(b) for b in bounds):
        return text
    return f"{text} [{_format(bounds[0])}, {_format(bounds[1])}]"


def _table(
    results: dict,
    columns: list,
    kinds: set[str],
    with_kind: bool,
    intervals: bool,
    timing: bool = True,
) -> tuple:
    labels = ["method", *(["kind"] if with_kind else []), "n"]
    labels += [label for label, _, _ in columns]
    rows = []
    for name, entry in results["methods"].items():
        if entry.get("kind") not in kinds:
            continue
        # The map table holds every method at one n; the counterfactual table states each's.
        n = results.get("n_map_queries") if with_kind else entry.get("n_queries")
        row = [name, *([entry.get("kind", "")] if with_kind else []), _format(n)]
        row += [_cell(entry, group, key, intervals) for _, group, key in columns]
        if timing:
            row.append(_format(results.get("timing", {}).get(name, {}).get("ms_per_query")))
        rows.append(row)
    return [*labels, *(["ms / query"] if timing else [])], rows


def counterfactual_table(
    results: dict, intervals: bool = True, columns: list | None = None
) -> tuple[list[str], list[list[str]]]:
    """Columns and rows (one per counterfactual method, every one on the same n queries); '–'
    where not measured; 95% intervals in brackets unless `intervals` is False. `columns`: a part
    of `COUNTERFACTUAL_COLUMNS` (default all, with the timing); a part gets the timing when it
    ends the table (`KEPT_COLUMNS`)."""
    if columns is None:
        return _table(results, COUNTERFACTUAL_COLUMNS, {"counterfactual"}, False, intervals)
    timing = columns[-1] == COUNTERFACTUAL_COLUMNS[-1]
    return _table(results, columns, {"counterfactual"}, False, intervals, timing)


def counterfactual_tables(results: dict, intervals: bool = True) -> dict[str, tuple]:
    """The counterfactual table in its two halves, by title: whether the cause changed, then what
    is kept and how real."""
    return {
        "Counterfactuals": counterfactual_table(results, intervals, CAUSE_COLUMNS),
        "What the counterfactuals keep": counterfactual_table(results, intervals, KEPT_COLUMNS),
    }


def map_table(results: dict, intervals: bool = True) -> tuple[list[str], list[list[str]]]:
    """Columns and rows (one per method, saliency or counterfactual, every one on the same
    n_map queries) of the relevance maps."""
    return _table(results, MAP_COLUMNS, {"counterfactual", "saliency"}, True, intervals)


def headline_tables(results: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The report's headline tables by title: counterfactuals (two halves), then relevance maps."""
    return {**counterfactual_tables(results), "Relevance maps": map_table(results)}


def skipped_groups(results: dict) -> dict[str, list[str]]:
    """Every skipped metric group with its reason -> the methods it was skipped for."""
    skipped: dict[str, list[str]] = {}
    for name, entry in results["methods"].items():
        for group, why in entry.get("skipped", {}).items():
            skipped.setdefault(f"{group}: {why}", []).append(name)
    return skipped


def timing_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Per method: queries scored, seconds to explain them, ms per query, seconds of metrics."""
    rows = []
    for name, t in results.get("timing", {}).items():
        entry = results["methods"].get(name, {})
        metric_seconds = sum(entry.get("metric_seconds", {}).values())
        queries = entry.get("n_queries", results.get("n_queries"))
        rows.append(
            [name, _format(queries), _format(t["seconds"]), _format(t["ms_per_query"])]
            + [_format(metric_seconds)]
        )
    columns = ["method", "queries", "seconds", "ms / query", "metrics (s)"]
    return columns, rows


def detail_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Every figure measured: one row per (method, group.key), and every skipped group's reason."""
    rows = []
    for name, entry in results["methods"].items():
        for group, values in entry.get("metrics", {}).items():
            rows += [[name, f"{group}.{key}", _format(value)] for key, value in values.items()]
        rows += [
            [name, group, f"skipped: {why}"] for group, why in entry.get("skipped", {}).items()
        ]
    return ["method", "metric", "value"], rows
