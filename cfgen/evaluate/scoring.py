"""What a counterfactual method's images do: the metric groups of the counterfactual table.

Each group is a function `(context, strip) -> dict[str, float | Figure]` registered by name in
`COUNTERFACTUAL_SCORES`; the suite's config lists the names to run. A strip holds S frames for
each of the N queries; the *far frame* of a query is the strip end opposite to the classifier's
decision on it. The figures are read by judges of several kinds, so that a change only the
explained classifier reads does not pass for the attribute:

- `shift`: the explained classifier (flip rate, compatibility MAE, monotonicity);
- `validity`: the oracle's *reading* of the explained attribute (a network regressing the
  synthetic world's factors, or an attribute classifier of a folder);
- `judge`, `robust_judge`: a second classifier of the attribute trained like the explained one,
  and one trained adversarially on other images;
- `neighbours`: the labels of the nearest real training images in pixel space (no network), and
  the far frames' distance to the nearest real image against the real queries' own;
- `truth`: the distance to the true counterfactual (`cfgen.evaluate.truth`, synthetic world);
- `identity`, `realism`, `preservation`, `closeness`, `lpips`: what the method keeps and how
  real its images look.

The relevance maps of every method (|x - x_far| here) are scored in `cfgen.evaluate.maps`. The
metrics themselves live in `shift.py`, `truth.py`, `neighbours.py`, `realism.py`,
`preservation.py`, `judges.py` and `closeness.py`; this file adapts them to the suite's inputs.
Each image set is encoded once (torch-fidelity's staging): the real reference set and the
queries once per context (`EvalContext.encoded`), a strip once per realism group.
"""

from collections.abc import Callable

import torch

from cfgen.evaluate import closeness, preservation, realism
from cfgen.evaluate.context import EvalContext, Figure, NoGroundTruth
from cfgen.evaluate.intervals import bootstrap_loop
from cfgen.evaluate.judges import identity_l1_per_query, real_gap
from cfgen.evaluate.preservation import predict
from cfgen.evaluate.shift import compatibility_errors, flips, spearman_per_query
from cfgen.evaluate.truth import truth_distances
from cfgen.explain.strip import Strip

Scores = dict[str, float | Figure]


def counterfactual_map(queries: torch.Tensor, strip: Strip) -> torch.Tensor:
    """The counterfactual's relevance map |x - x_far|, (N, C, H, W)."""
    return (queries - strip.far_end()).abs()


def judged(
    prefix: str,
    posteriors: torch.Tensor,
    query_posteriors: torch.Tensor,
    target_bins: torch.Tensor,
    n_bins: int,
    threshold: float = 0.5,
) -> Scores:
    """Flip rate, compatibility MAE and monotonicity of a strip as one reader sees it.

    posteriors: (S, N), the reader's posterior of every frame; query_posteriors: (N,). The flip
    of each query is in the direction the reader itself reads on the query.
    """
    return {
        f"{prefix}flip_rate": Figure.mean(flips(posteriors, query_posteriors, threshold).float()),
        f"{prefix}compat_mae": Figure.mean(compatibility_errors(posteriors, target_bins, n_bins)),
        f"{prefix}monotonicity": Figure.mean(spearman_per_query(posteriors, target_bins)),
    }


def score_shift(context: EvalContext, strip: Strip) -> Scores:
    """The explained classifier's flip rate, compatibility MAE and monotonicity (`shift.py`)."""
    return judged("", strip.posteriors, strip.query_posteriors, strip.target_bins, context.n_bins)


def curve(context: EvalContext, strip: Strip) -> dict[str, list[float]]:
    """Target vs achieved posterior per bin, as lists for `results.json` and the report."""
    from cfgen.evaluate.shift import compatibility_curve

    values = compatibility_curve(strip.posteriors, strip.target_bins, context.n_bins)
    return {key: value.tolist() for key, value in values.items()}


def _read(reader, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A judge's posteriors of images (..., C, H, W) -> (...,)."""
    return predict(reader, images, batch_size).float()


def score_validity(context: EvalContext, strip: Strip) -> Scores:
    """The oracle's reading of the explained attribute along the strip: `reading_flip` (the far
    frame's reading across the attribute's threshold), `reading_spearman` (with the target bin),
    `reading_change` (last frame minus first), next to the same change between real absent and
    present images (`reading_change_real`) when the reference set has labels."""
    oracle, reading = context.need("oracle"), context.reading
    readings = reading(oracle, strip.images, context.batch_size)
    query_readings = reading(oracle, context.queries, context.batch_size)
    scores: Scores = {
        "reading_flip": Figure.mean(flips(readings, query_readings, reading.threshold).float()),
        "reading_spearman": Figure.mean(spearman_per_query(readings, strip.target_bins)),
        "reading_change": Figure.mean(readings[-1] - readings[0]),
    }
    if context.real_images is not None and context.real_labels is not None:
        key = ("real_reading", reading)
        if key not in context.cache:
            context.cache[key] = reading(oracle, context.real_images, context.batch_size)
        scores["reading_change_real"] = real_gap(context.cache[key], context.real_labels)
    return scores


def _judge_group(name: str, prefix: str) -> Callable[[EvalContext, Strip], Scores]:
    def score(context: EvalContext, strip: Strip) -> Scores:
        judge = context.need(name)
        posteriors = _read(judge, strip.images, context.batch_size)
        query_posteriors = _read(judge, context.queries, context.batch_size)
        return judged(prefix, posteriors, query_posteriors, strip.target_bins, context.n_bins)

    score.__doc__ = f"The strips as the `{name}` of the same attribute sees them."
    return score


def score_neighbours(context: EvalContext, strip: Strip) -> Scores:
    """The nearest-neighbour judge's flip rate, compat MAE and monotonicity (`knn_*`), and the
    far frames' distance to the nearest real training image over the real queries' own
    (`manifold_ratio`: 1 = as close to real images as real images are)."""
    neighbours = context.need("neighbours")
    scores = _judge_group("neighbours", "knn_")(context, strip)
    far = neighbours.manifold_distance(strip.far_end())
    real = neighbours.manifold_distance(context.queries)
    scores["manifold_ratio"] = Figure.ratio(far, real)
    return scores


def score_truth(context: EvalContext, strip: Strip) -> Scores:
    """Distance of the far and near frames to the true counterfactual over doing nothing, plain
    and blurred, and the share of the far frame's error on the factor's region (`truth.py`)."""
    truth = context.need("truth")
    try:
        region = context.target_region_masks()
    except NoGroundTruth:
        region = None
    gaps = truth_distances(
        strip.images,
        context.queries,
        strip.query_posteriors,
        strip.target_bins,
        truth,
        context.n_bins,
        region,
    )
    scores: Scores = {}
    for name in ("far", "near", "far_blur", "near_blur"):
        base, _, blur = name.partition("_")
        query = gaps[f"{base}_query" + (f"_{blur}" if blur else "")]
        scores[f"truth_{name}"] = Figure.ratio(gaps[name], query)
    if "far_region" in gaps:
        scores["truth_region_share"] = Figure.ratio(gaps["far_region"], gaps["far_error"])
    return scores


def _need_identity(context: EvalContext) -> torch.Tensor:
    if context.identity is None:
        raise NoGroundTruth("no identity images: the suite makes them from the scored method")
    return context.identity


def score_identity(context: EvalContext, strip: Strip) -> Scores:
    """L1 between each query and the method's counterfactual at its own posterior, I(x, c_x)."""
    distances = identity_l1_per_query(context.queries, _need_identity(context))
    return {"identity_l1": Figure.mean(distances)}


def score_realism(context: EvalContext, strip: Strip) -> Scores:
    """FID per bin, Present / Absent / Overall (PE's protocol), overall KID, and sFID of the far
    frames against the queries (ACE's split protocol) (`realism.py`). FID overall carries a
    bootstrap interval over the queries."""
    if context.real_images is None or context.real_posteriors is None:
        raise NoGroundTruth("no real reference images: realism needs `n_real` > 0")
    real = context.encoded("real_images")
    fake = realism.encode(context.need("features"), strip.images, context.batch_size)
    by_bin = realism.realism_of_features(
        real, context.real_posteriors, fake, strip.target_bins, context.n_bins
    )
    scores: Scores = {f"fid_{k}": v for k, v in by_bin.items() if not k.startswith("n_")}
    interval = bootstrap_loop(
        lambda picks: realism.fid_of_features(real, fake[:, picks].reshape(-1, fake.shape[-1])),
        fake.shape[1],
        seed=context.seed,
    )
    scores["fid_overall"] = Figure(by_bin["overall"], interval=interval)
    scores["kid_overall"] = realism.kid_of_features(real, fake.reshape(-1, fake.shape[-1]))[0]
    goes_up = (strip.query_posteriors < 0.5).to(fake.device)[:, None]
    far = torch.where(goes_up, fake[-1], fake[0])
    scores["sfid"] = realism.sfid(context.encoded("queries"), far, seed=context.seed)
    return scores


def score_preservation(context: EvalContext, strip: Strip) -> Scores:
    """Oracle-measured: foreign factor drift along the strip (per factor, and the mean over the
    foreign ones per query); MNAC (`preservation.mnac`), CD and FVA of the far frames."""
    oracle, target = context.need("oracle"), context.target_factor_index
    outputs = predict(oracle, strip.images, context.batch_size).float()
    query_outputs = predict(oracle, context.queries, context.batch_size).float()
    change = (outputs - query_outputs[None]).abs()  # (S, N, K)
    foreign = [k for k in range(change.shape[-1]) if k != target]
    scores: Scores = {"foreign_drift": Figure.mean(change[..., foreign].mean(dim=(0, 2)))}
    for k in foreign:
        scores[f"drift_{context.factor_names[k]}"] = change[..., k].mean().item()
    far = strip.far_end()
    if context.attribute_readings:
        # DiVE's and ACE's MNAC: binary attributes, successful counterfactuals only.
        changed = preservation.attributes_changed(
            oracle, context.attribute_readings, far, context.queries, context.batch_size
        )
        successful = flips(strip.posteriors, strip.query_posteriors).to(changed.device)
        if bool(successful.any()):
            scores["mnac"] = Figure.mean(changed[successful])
    if context.real_images is not None:
        try:
            scores["cd"] = preservation.correlation_difference(
                oracle, far, context.queries, context.real_images, target
            )
        except ValueError:  # the counterfactuals leave the target unchanged: CD is undefined
            scores["cd"] = float("nan")
    if context.features is not None:
        scores["fva"] = preservation.face_verification_accuracy(
            context.features, far, context.queries
        )
    return scores


def score_closeness(context: EvalContext, strip: Strip) -> Scores:
    """L1 and SSIM between query and far end, overall and outside the explained factor's region."""
    far = strip.far_end()
    scores: Scores = {
        "l1": Figure.mean(closeness.l1_distance(context.queries, far)),
        "ssim": closeness.ssim(context.queries, far).mean().item(),
    }
    try:
        outside = 1 - context.target_region_masks()
    except NoGroundTruth:
        return scores
    scores["l1_outside"] = closeness.l1_distance(context.queries, far, outside).mean().item()
    scores["ssim_outside"] = closeness.ssim(context.queries, far, outside).mean().item()
    return scores


def score_lpips(context: EvalContext, strip: Strip) -> Scores:
    """LPIPS between query and far end, and between query and I(x, c_x) (`identity_lpips`);
    skipped with the file to place when the weights are absent."""
    if "lpips" not in context.cache:
        context.cache["lpips"] = closeness.build_lpips()
    metric = context.cache["lpips"]
    scores: Scores = {
        "lpips": closeness.lpips_distance(metric, context.queries, strip.far_end()).mean().item()
    }
    if context.identity is not None:
        identity = closeness.lpips_distance(metric, context.queries, context.identity)
        scores["identity_lpips"] = identity.mean().item()
    return scores


COUNTERFACTUAL_SCORES: dict[str, Callable[[EvalContext, Strip], Scores]] = {
    "shift": score_shift,
    "truth": score_truth,
    "validity": score_validity,
    "judge": _judge_group("judge", "judge_"),
    "robust_judge": _judge_group("robust_judge", "robust_"),
    "neighbours": score_neighbours,
    "identity": score_identity,
    "realism": score_realism,
    "preservation": score_preservation,
    "closeness": score_closeness,
    "lpips": score_lpips,
}
