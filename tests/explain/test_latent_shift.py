import pytest
import torch

from cfgen.bins import bin_centre, posterior_to_bin
from cfgen.errors import ClassifierError, ConfigError, DataError
from cfgen.explain.latent_shift import LatentShift
from cfgen.io import save_bundle
from cfgen.models.autoencoder import BUNDLE_KIND, Autoencoder
from cfgen.models.blackbox import BlackBox
from tests.helpers import (
    ChannelMeanLogit,
    LinearClassifier,
    RegionClassifier,
    TinyConvNet,
    TwoPartCode,
)


def queries(codes: list[list[float]]) -> torch.Tensor:
    """Images (N, 1, 8, 8) that `TwoPartCode` encodes exactly as `codes`."""
    return TwoPartCode().decode(torch.tensor(codes))


def test_the_shift_follows_the_classifier_gradient_in_code_space_to_the_known_code():
    autoencoder, classifier = TwoPartCode(), RegionClassifier()
    explainer = LatentShift(classifier, autoencoder, max_shift=4.0, search_steps=40, tolerance=1e-4)
    x = queries([[-0.3, 0.5], [0.4, -0.2], [0.0, 0.9]])
    target = torch.tensor([0.9, 0.1, 0.3])
    direction, start = explainer.direction(autoencoder.encode(x))
    torch.testing.assert_close(direction, torch.tensor([[1.0, 0.0]] * 3))
    torch.testing.assert_close(start, classifier(x))
    # The code reaching t is (logit(t) / 4, z_1): only the part the classifier reads moves.
    expected = autoencoder.decode(torch.stack([torch.logit(target) / 4, x[:, 0, 0, 7]], dim=1))
    counterfactual = explainer.counterfactual(x, target)
    torch.testing.assert_close(counterfactual, expected, atol=2e-4, rtol=0)
    torch.testing.assert_close(classifier(counterfactual), target, atol=1e-4, rtol=0)


def test_strips_land_on_every_bin_in_reach_and_report_the_bins_beyond_it():
    # z = (0, 1): ||z|| = 1, so max_shift 0.5 reaches posteriors sigmoid(4 * [-0.5, 0.5]),
    # [0.119, 0.881]: bins 1..8 are in reach, the centres of bins 0 (0.05) and 9 (0.95) are not.
    classifier = RegionClassifier()
    explainer = LatentShift(classifier, TwoPartCode(), max_shift=0.5, tolerance=0.01)
    x = queries([[0.0, 1.0]])
    strip, reached = explainer.exaggerate_with_reach(x, n_bins=10)
    expected = torch.tensor([False] + [True] * 8 + [False])
    torch.testing.assert_close(reached[:, 0], expected)
    targets = bin_centre(torch.arange(10), 10)
    errors = (strip.posteriors[:, 0] - targets).abs()
    assert bool((errors[expected] <= 0.01).all()), errors
    torch.testing.assert_close(
        posterior_to_bin(strip.posteriors[expected, 0], 10), torch.arange(1, 9)
    )
    # Out of reach: the end of the search range, as near the target as the shift gets.
    ends = torch.sigmoid(torch.tensor([-2.0, 2.0]))
    torch.testing.assert_close(strip.posteriors[[0, 9], 0], ends)
    torch.testing.assert_close(strip.query_posteriors, classifier(x))


def test_the_scan_takes_the_nearest_crossing_when_f_turns_back_along_the_line():
    # f(decode(z)) = sigmoid(6 sin(2 z_0)) from z = (0, 1): up the line f reaches 0.9 first at
    # λ = asin(logit(0.9) / 6) / 2 = 0.187, peaks at λ = π / 4 and falls below 0.5 after π / 2.
    region = RegionClassifier()

    def classifier(images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(6 * torch.sin(2 * region.region_mean(images)))

    x, target = queries([[0.0, 1.0]]), torch.tensor([0.9])
    nearest = torch.asin(torch.logit(target) / 6) / 2
    scanned = LatentShift(classifier, TwoPartCode(), max_shift=3.0, search_steps=20,
                          tolerance=1e-4).search(x, target[None])  # fmt: skip
    torch.testing.assert_close(scanned.shifts[0], nearest, atol=1e-3, rtol=0)
    assert bool(scanned.reached.all())
    # With the end of the line as its only point, f there (sin 6 < 0) has turned back: the pair
    # is reported unreached, and the best point (λ = 0, the reconstruction) is kept.
    end_only = LatentShift(classifier, TwoPartCode(), max_shift=3.0, scan_steps=1)
    search = end_only.search(x, target[None])
    assert not bool(search.reached.any())
    torch.testing.assert_close(search.shifts, torch.zeros(1, 1))
    torch.testing.assert_close(search.images[0], search.reconstructions)


def test_every_pair_moves_f_toward_its_target_along_the_gradient_of_a_linear_classifier():
    # f(decode(z)) = sigmoid(a z_0 + b z_1 + bias): the unit direction is (a, b) / ||(a, b)||.
    torch.manual_seed(0)
    classifier = LinearClassifier((1, 8, 8), bias=0.3)
    autoencoder = TwoPartCode()
    slopes = (classifier.weight[0] * autoencoder.parts).sum(dim=(1, 2)).detach()
    explainer = LatentShift(classifier, autoencoder, max_shift=1.0)
    x = queries([[0.2, -0.4], [-0.6, 0.3], [0.1, 0.1], [0.9, -0.8]])
    direction, _ = explainer.direction(autoencoder.encode(x))
    torch.testing.assert_close(direction, (slopes / slopes.norm()).expand(4, 2))
    targets = bin_centre(torch.arange(10), 10)[:, None].expand(-1, 4)
    search = explainer.search(x, targets)
    with torch.no_grad():
        start = classifier(x)
        again = classifier(search.images.flatten(0, 1)).view(10, 4)
    torch.testing.assert_close(again, search.posteriors)
    gained = (start - targets).abs() - (search.posteriors - targets).abs()
    assert bool((gained >= -1e-6).all()), gained
    assert bool(((search.posteriors - targets).abs()[search.reached] <= 0.02).all())
    assert 0 < int(search.reached.sum()) < 40  # some bins beyond max_shift = 1
    # Up means a positive shift, down a negative one.
    moved = search.shifts != 0
    torch.testing.assert_close(
        torch.sign(search.shifts[moved]), torch.where(targets > start, 1.0, -1.0)[moved]
    )


def test_explain_is_what_the_shift_changed_in_the_reconstruction():
    explainer = LatentShift(RegionClassifier(), TwoPartCode(), search_steps=30, tolerance=1e-4)
    x = queries([[-0.5, 0.7], [0.5, 0.1]])
    relevance = explainer.explain(x)  # toward the opposite decision: 1 for the first, 0 second
    outside = 1 - RegionClassifier().mask[0]
    torch.testing.assert_close(relevance * outside, torch.zeros_like(x))
    # Flipping reaches the far bin target 1 or 0 only in the limit: the shift runs to max_shift.
    assert bool((relevance[:, 0, 3, 3] > 0.5).all())
    torch.testing.assert_close(
        relevance, (explainer.search(x, torch.tensor([[1.0, 0.0]])).images[0] - x).abs()
    )


def test_autoencoder_of_another_image_size_is_refused_with_what_to_do():
    explainer = LatentShift(TinyConvNet(3), Autoencoder(image_size=16, channels=3, width=4))
    with pytest.raises(DataError, match=r"takes images \(N, 3, 16, 16\); got shape \(2, 3, 8, 8\)"):
        explainer.exaggerate(torch.zeros(2, 3, 8, 8))
    with pytest.raises(DataError, match="--data.image_size 8"):
        explainer.counterfactual(torch.zeros(2, 3, 8, 8), torch.tensor([0.2, 0.8]))


def test_classifiers_without_a_gradient_are_refused():
    autoencoder = Autoencoder(image_size=8, channels=3, width=4)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    detached = LatentShift(lambda images: TinyConvNet(3)(images).detach(), autoencoder)
    with pytest.raises(ClassifierError, match="output carries none"):
        detached.exaggerate(x)
    thresholded = LatentShift(lambda images: (images.mean(dim=(1, 2, 3)) > 0).float(), autoencoder)
    with pytest.raises(ClassifierError, match="output carries none"):
        thresholded.exaggerate(x)

    def rounded(images: torch.Tensor) -> torch.Tensor:  # differentiable graph, zero gradient
        return 0.25 + 0.5 * torch.round(torch.sigmoid(images.mean(dim=(1, 2, 3))))

    with pytest.raises(ClassifierError, match="piecewise constant"):
        LatentShift(rounded, autoencoder).exaggerate(x)


def test_missing_autoencoder_options_and_channel_mismatch_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cfgen autoencoder fit"):
        LatentShift(TinyConvNet(3))
    with pytest.raises(ConfigError, match="max_shift > 0"):
        LatentShift(TinyConvNet(3), TwoPartCode(), max_shift=0)
    grey = Autoencoder(image_size=8, channels=1, width=4)
    path = save_bundle(tmp_path / "autoencoder.pt", BUNDLE_KIND, grey.config(), grey.state_dict())
    rgb_box = BlackBox(ChannelMeanLogit(), in_channels=3)
    with pytest.raises(ConfigError, match="makes 1-channel images but the classifier takes 3"):
        LatentShift(rgb_box, str(path))
    assert (
        LatentShift(BlackBox(ChannelMeanLogit(), in_channels=1), path).autoencoder.code_channels
        == 16
    )


def test_batches_give_the_same_strip_as_one_search():
    torch.manual_seed(1)
    autoencoder = Autoencoder(
        image_size=8, channels=3, code_channels=4, downsamplings=2, width=8
    ).eval()
    x = torch.rand(5, 3, 8, 8) * 2 - 1
    classifier = TinyConvNet(3)
    whole = LatentShift(classifier, autoencoder).exaggerate(x, n_bins=4)
    chunked = LatentShift(classifier, autoencoder, batch_size=2).exaggerate(x, n_bins=4)
    torch.testing.assert_close(chunked.images, whole.images)
    torch.testing.assert_close(chunked.posteriors, whole.posteriors)
    assert chunked.images.shape == (4, 5, 3, 8, 8) and chunked.target_bins.tolist() == [0, 1, 2, 3]
