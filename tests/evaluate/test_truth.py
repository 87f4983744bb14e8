"""The true counterfactual on cases whose answer is known by construction."""

import pytest
import torch

from cfgen.data.synthetic import SyntheticFaces
from cfgen.evaluate.context import EvalContext, plain
from cfgen.evaluate.scoring import COUNTERFACTUAL_SCORES
from cfgen.evaluate.truth import (
    TrueCounterfactuals,
    box_blur,
    crossing_frames,
    nearest_true_frames,
    true_strip,
)
from cfgen.explain.strip import Strip

SIZE, N_BINS = 32, 10
BINS = torch.arange(N_BINS)


def world(n: int = 6) -> tuple[SyntheticFaces, TrueCounterfactuals]:
    faces = SyntheticFaces(n, SIZE, seed=0, split="test")
    indices = torch.arange(n)
    truth = TrueCounterfactuals.from_renderer(
        lambda value: faces.render_with(indices, "smile", value)[0], threshold=0.5
    )
    return faces, truth


def smile_reader(faces: SyntheticFaces):
    """A classifier that reads the true smile of the face nearest to an image (exact on the
    world's own renderings): the decision lies where the attribute's threshold does."""
    grid = torch.linspace(0, 1, 41)
    renders = torch.stack(
        [faces.render_with(torch.arange(len(faces)), "smile", float(v))[0] for v in grid]
    )

    flat = renders.flatten(0, 1).flatten(1)  # (V * N, D), every face at every smile
    smiles = grid.repeat_interleave(len(faces))

    def classify(images: torch.Tensor) -> torch.Tensor:
        nearest = torch.cdist(images.flatten(1), flat).argmin(dim=1)
        return torch.sigmoid((smiles[nearest] - 0.5) * 40)

    return classify


def context(faces: SyntheticFaces, truth: TrueCounterfactuals, classifier) -> EvalContext:
    return EvalContext(
        classifier=classifier,
        queries=faces.images,
        masks=faces.masks.float() / 255,
        region_names=list(faces.region_names),
        target_region="mouth",
        truth=truth,
    )


def strip_of(images: torch.Tensor, classifier, queries: torch.Tensor) -> Strip:
    posteriors = torch.stack([classifier(frame) for frame in images])
    return Strip(images, BINS, posteriors, classifier(queries))


def test_re_rendered_strips_score_zero_and_the_query_scores_one():
    faces, truth = world()
    classifier = smile_reader(faces)
    ctx = context(faces, truth, classifier)
    images, _ = true_strip(truth, classifier, BINS, N_BINS)
    scores = plain(COUNTERFACTUAL_SCORES["truth"](ctx, strip_of(images, classifier, faces.images)))
    for name in ("truth_far", "truth_near", "truth_far_blur", "truth_near_blur"):
        assert scores[name] == pytest.approx(0.0, abs=1e-7)
    repeated = faces.images[None].repeat(N_BINS, 1, 1, 1, 1)
    scores = plain(
        COUNTERFACTUAL_SCORES["truth"](ctx, strip_of(repeated, classifier, faces.images))
    )
    for name in ("truth_far", "truth_near", "truth_far_blur", "truth_near_blur"):
        assert scores[name] == pytest.approx(1.0)


def test_a_colour_patch_over_the_mouth_is_further_than_doing_nothing():
    faces, truth = world()
    classifier = smile_reader(faces)
    ctx = context(faces, truth, classifier)
    mouth = faces.masks[:, faces.region_names.index("mouth")].float()[:, None] / 255  # (N,1,H,W)
    pink = torch.tensor([1.0, 0.2, 0.6]).view(1, 3, 1, 1)
    smudged = faces.images * (1 - mouth) + pink * mouth
    images = torch.stack([faces.images if b < 5 else smudged for b in range(N_BINS)])
    scores = plain(COUNTERFACTUAL_SCORES["truth"](ctx, strip_of(images, classifier, faces.images)))
    assert scores["truth_far"] > 1.0 and scores["truth_far_blur"] > 1.0
    # The error of a smudge painted over the mouth lies on the mouth.
    assert scores["truth_region_share"] > 0.9


def test_every_true_frame_lies_on_its_bin_s_side_and_is_its_own_nearest_truth():
    faces, truth = world(4)
    classifier = smile_reader(faces)
    images, posteriors = true_strip(truth, classifier, BINS, N_BINS)
    smiles = torch.stack(
        [
            truth.values[(truth.renders.flatten(2) - f.flatten(1)).abs().sum(-1).argmin(0)]
            for f in images
        ]
    )
    present = smiles > 0.5  # (S, N)
    asked = (BINS.float() + 0.5) / N_BINS > 0.5
    torch.testing.assert_close(present, asked[:, None].expand_as(present))
    nearest, gaps = nearest_true_frames(images, truth, BINS, N_BINS)
    torch.testing.assert_close(nearest, images)
    torch.testing.assert_close(gaps, torch.zeros_like(gaps))


def test_far_and_near_frames_follow_the_query_s_decision():
    posteriors = torch.tensor([0.2, 0.7])
    far, near = crossing_frames(posteriors, BINS, N_BINS)
    assert far.tolist() == [9, 0] and near.tolist() == [5, 4]


def test_box_blur_keeps_flat_images_and_spreads_a_point():
    flat = torch.full((2, 3, 5, 5), 0.3)
    torch.testing.assert_close(box_blur(flat), flat)
    point = torch.zeros(1, 1, 5, 5)
    point[0, 0, 2, 2] = 9.0
    blurred = box_blur(point)
    torch.testing.assert_close(blurred[0, 0, 1:4, 1:4], torch.ones(3, 3))
    assert blurred.sum() == pytest.approx(9.0)
