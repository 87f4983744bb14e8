"""The nearest-neighbour judge and the manifold distance on point sets of known geometry."""

import pytest
import torch

from cfgen.evaluate.context import EvalContext, plain
from cfgen.evaluate.neighbours import NearestNeighbourJudge
from cfgen.evaluate.scoring import COUNTERFACTUAL_SCORES
from cfgen.explain.strip import Strip


def line_images(values: torch.Tensor) -> torch.Tensor:
    """One-pixel images whose only pixel holds each value: (N,) -> (N, 1, 1, 1)."""
    return values.view(-1, 1, 1, 1)


def test_the_posterior_is_the_share_of_the_k_nearest_labels():
    reference = line_images(torch.arange(10.0))
    labels = (torch.arange(10) >= 5).float()  # 0..4 absent, 5..9 present
    judge = NearestNeighbourJudge(reference, labels, k=3)
    # 0.1: nearest 0, 1, 2 (all absent); 4.4: 4, 5, 3 -> 1/3; 8.0: 8, 7, 9 -> 1.
    torch.testing.assert_close(
        judge(line_images(torch.tensor([0.1, 4.4, 8.0]))), torch.tensor([0.0, 1 / 3, 1.0])
    )


def test_unlabelled_references_are_left_out_and_too_few_are_refused():
    reference = line_images(torch.arange(4.0))
    labels = torch.tensor([0.0, float("nan"), 1.0, 1.0])
    judge = NearestNeighbourJudge(reference, labels, k=1)
    torch.testing.assert_close(judge(line_images(torch.tensor([1.1]))), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="at least k=4"):
        NearestNeighbourJudge(reference, labels, k=4)


def test_manifold_distance_is_the_distance_to_the_nearest_reference():
    judge = NearestNeighbourJudge(
        line_images(torch.tensor([0.0, 10.0])), torch.tensor([0.0, 1.0]), k=1
    )
    torch.testing.assert_close(
        judge.manifold_distance(line_images(torch.tensor([2.0, 7.0]))), torch.tensor([2.0, 3.0])
    )


def neighbour_context(queries: torch.Tensor) -> EvalContext:
    reference = line_images(torch.linspace(-1, 1, 21))
    labels = (reference.flatten() > 0).float()
    return EvalContext(
        classifier=lambda x: (x.flatten(1).mean(1) + 1) / 2,
        queries=queries,
        neighbours=NearestNeighbourJudge(reference, labels, k=3),
    )


def test_frames_on_the_other_side_flip_and_frames_equal_to_the_queries_score_manifold_one():
    queries = line_images(torch.tensor([-0.83, -0.62, 0.74]))  # between references
    ctx = neighbour_context(queries)
    bins = torch.arange(2)
    # Each far frame a real image of the other label: every strip flips for the judge.
    frames = torch.stack(
        [line_images(torch.tensor([-0.8, -0.6, -0.7])), line_images(torch.tensor([0.8, 0.6, 0.7]))]
    )
    strip = Strip(
        frames, bins, ctx.classifier(frames.flatten(0, 1)).view(2, 3), ctx.classifier(queries)
    )
    scores = plain(COUNTERFACTUAL_SCORES["neighbours"](ctx, strip))
    assert scores["knn_flip_rate"] == pytest.approx(1.0)
    # The queries themselves as frames: exactly as close to real images as real images are.
    same = queries[None].repeat(2, 1, 1, 1, 1)
    strip = Strip(same, bins, ctx.classifier(queries).repeat(2, 1), ctx.classifier(queries))
    scores = plain(COUNTERFACTUAL_SCORES["neighbours"](ctx, strip))
    assert scores["manifold_ratio"] == pytest.approx(1.0) and scores["knn_flip_rate"] == 0.0
    # Frames far off the reference line are further from real images than the queries.
    off = torch.full_like(same, 5.0)
    strip = Strip(off, bins, torch.ones(2, 3), ctx.classifier(queries))
    assert plain(COUNTERFACTUAL_SCORES["neighbours"](ctx, strip))["manifold_ratio"] > 10
