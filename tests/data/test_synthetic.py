import pytest
import torch

from cfgen.data.synthetic import (
    ATTRIBUTE_NAMES,
    FACTOR_NAMES,
    FACTOR_REGION,
    REGION_NAMES,
    SyntheticFaces,
    attributes_from_factors,
    render_faces,
    sample_factors,
)
from cfgen.errors import ConfigError


def _column(name: str) -> int:
    return FACTOR_NAMES.index(name)


def test_same_seed_and_index_give_the_same_face_whatever_n():
    small = SyntheticFaces(4, image_size=32, seed=3)
    large = SyntheticFaces(12, image_size=32, seed=3)
    torch.testing.assert_close(small.images, large.images[:4], rtol=0, atol=0)
    torch.testing.assert_close(small.factors, large.factors[:4], rtol=0, atol=0)
    other_seed = SyntheticFaces(4, image_size=32, seed=4)
    assert (other_seed.factors - small.factors).abs().amax() > 0.05


def test_splits_draw_different_faces():
    train = sample_factors(0, "train", torch.arange(200))[0]
    test = sample_factors(0, "test", torch.arange(200))[0]
    distance = torch.cdist(train, test).amin()
    assert distance > 1e-3


def test_factors_are_uniform_and_glasses_binary():
    factors, _ = sample_factors(0, "train", torch.arange(4000))
    assert factors.min() >= 0.0 and factors.max() <= 1.0
    glasses = factors[:, _column("glasses")]
    torch.testing.assert_close(glasses, glasses.round())
    expected = torch.full((len(FACTOR_NAMES),), 0.5)
    torch.testing.assert_close(factors.mean(0), expected, atol=0.03, rtol=0)
    # Quartiles of a uniform variable sit at 1/4 and 3/4.
    smile = factors[:, _column("smile")]
    quartiles = torch.quantile(smile, torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(quartiles, torch.tensor([0.25, 0.75]), atol=0.03, rtol=0)


def test_attributes_are_thresholds_of_their_factors():
    factors, _ = sample_factors(1, "val", torch.arange(300))
    labels = attributes_from_factors(factors)
    smile = factors[:, _column("smile")]
    skin = factors[:, _column("skin_tone")]
    index = ATTRIBUTE_NAMES.index
    torch.testing.assert_close(labels[:, index("Smiling")], (smile > 0.5).float())
    torch.testing.assert_close(labels[:, index("Pale_Skin")], (skin < 0.5).float())
    glasses = factors[:, _column("glasses")]
    torch.testing.assert_close(labels[:, index("Eyeglasses")], glasses)


def test_confounding_holds_in_train_only():
    strength = 0.9
    options = dict(image_size=16, confound_factor="glasses", confound_strength=strength)
    train = SyntheticFaces(3000, **options)
    test = SyntheticFaces(3000, split="test", **options)
    smiling, glasses = ATTRIBUTE_NAMES.index("Smiling"), ATTRIBUTE_NAMES.index("Eyeglasses")

    def agreement(data):
        return (data.labels[:, smiling] == data.labels[:, glasses]).float().mean()

    # Forced on a share `strength`, the other faces agree by chance half of the time.
    expected = torch.tensor(strength + (1 - strength) / 2)
    torch.testing.assert_close(agreement(train), expected, atol=0.015, rtol=0)
    torch.testing.assert_close(agreement(test), torch.tensor(0.5), atol=0.03, rtol=0)


@pytest.mark.parametrize(
    ("factor", "attribute"), [("hair_colour", "Dark_Hair"), ("skin_tone", "Pale_Skin")]
)
def test_confounding_a_continuous_factor_makes_its_attribute_follow(factor, attribute):
    data = SyntheticFaces(2000, image_size=16, confound_factor=factor, confound_strength=1)
    values = data.factors[:, _column(factor)]
    follows = data.labels[:, ATTRIBUTE_NAMES.index(attribute)]
    torch.testing.assert_close(follows, data.labels[:, ATTRIBUTE_NAMES.index("Smiling")])
    assert values.min() >= 0 and values.max() < 1
    # Folding keeps the factor uniform within each half: its mean over a half is a quarter in.
    lower = values[values < 0.5]
    torch.testing.assert_close(lower.mean(), torch.tensor(0.25), atol=0.02, rtol=0)


@pytest.mark.parametrize(
    "options",
    [
        {"split": "holdout"},
        {"target": "Young"},
        {"confound_factor": "smile", "confound_strength": 0.5},
        {"confound_factor": "hat", "confound_strength": 0.5},
        {"confound_factor": "glasses", "confound_strength": 1.5},
    ],
)
def test_bad_options_are_refused(options):
    with pytest.raises(ConfigError):
        SyntheticFaces(2, image_size=16, **options)


@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_render_shapes_and_range(size):
    factors, seeds = sample_factors(0, "train", torch.arange(3))
    images, masks = render_faces(factors, size, seeds)
    assert images.shape == (3, 3, size, size) and masks.shape == (3, len(REGION_NAMES), size, size)
    assert images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1 and masks.min() >= 0 and masks.max() <= 1


def test_render_does_not_depend_on_batching():
    factors, seeds = sample_factors(0, "train", torch.arange(40))
    images, masks = render_faces(factors, 64, seeds)
    one_image, one_mask = render_faces(factors[37:38], 64, seeds[37:38])
    torch.testing.assert_close(one_image, images[37:38], rtol=0, atol=0)
    torch.testing.assert_close(one_mask, masks[37:38], rtol=0, atol=0)


def test_render_refuses_wrong_factor_shape():
    with pytest.raises(ValueError, match="factors must have shape"):
        render_faces(torch.zeros(2, 3), 32)


CHANGES = {  # factor -> two values that must look different
    "smile": (0.0, 1.0),
    "eye_size": (0.0, 1.0),
    "glasses": (0.0, 1.0),
    "hair_colour": (0.0, 1.0),
    "skin_tone": (0.0, 1.0),
    "background": (0.0, 1.0),
}


@pytest.mark.parametrize("factor", sorted(CHANGES))
def test_changing_a_factor_changes_pixels_only_inside_its_region(factor):
    factors, seeds = sample_factors(5, "train", torch.arange(8))
    low, high = factors.clone(), factors.clone()
    low[:, _column(factor)], high[:, _column(factor)] = CHANGES[factor]
    image_low, masks_low = render_faces(low, 32, seeds)
    image_high, masks_high = render_faces(high, 32, seeds)
    region = REGION_NAMES.index(FACTOR_REGION[factor])
    # A region's mask is where it could paint for any value of its own factor.
    torch.testing.assert_close(masks_low[:, region], masks_high[:, region])
    changed = (image_low - image_high).abs().amax(1) > 1e-5
    outside = changed & (masks_low[:, region] == 0)
    assert outside.sum() == 0
    assert changed.flatten(1).sum(1).min() >= 2  # visible in every face


def test_a_small_smile_change_is_visible_at_32_px():
    factors, seeds = sample_factors(0, "test", torch.arange(16))
    flat_frown, flat_smile = factors.clone(), factors.clone()
    flat_frown[:, _column("smile")], flat_smile[:, _column("smile")] = 0.45, 0.55
    frown, masks = render_faces(flat_frown, 32, seeds)
    smile, _ = render_faces(flat_smile, 32, seeds)
    mouth = masks[:, REGION_NAMES.index("mouth")]
    change = ((smile - frown).abs().sum(1) * mouth).flatten(1).sum(1)
    # A tenth of the smile range moves at least a pixel's worth of colour in every face.
    assert change.min() > 1.0


def test_mouth_is_below_the_eyes_and_masks_cover_the_image():
    factors, seeds = sample_factors(0, "train", torch.arange(6))
    _, masks = render_faces(factors, 64, seeds)
    rows = torch.arange(64.0).view(1, 64, 1)

    def centre_row(region):
        mask = masks[:, REGION_NAMES.index(region)]
        return (mask * rows).sum((1, 2)) / mask.sum((1, 2))

    assert (centre_row("mouth") > centre_row("eyes") + 5).all()
    assert (centre_row("hair") < centre_row("eyes")).all()
    background = masks[:, REGION_NAMES.index("background")]
    torch.testing.assert_close(background[:, 0, 0], torch.ones(6))


def test_items_follow_the_dataset_contract():
    data = SyntheticFaces(5, image_size=32)
    item = data[2]
    assert set(item) == {"image", "labels", "index", "factors", "masks"}
    assert item["index"] == 2
    torch.testing.assert_close(item["image"], data.images[2])
    assert item["labels"].shape == (len(ATTRIBUTE_NAMES),)
    assert (
        item["masks"].shape == (len(REGION_NAMES), 32, 32) and item["masks"].dtype == torch.float32
    )
    assert data.attribute_names[data.target_index] == "Smiling"
    _, float_masks = render_faces(data.factors[2:3], 32, data.noise_seeds[2:3])
    torch.testing.assert_close(item["masks"], float_masks[0], atol=1 / 255, rtol=0)
    assert ((item["masks"] > 0) == (float_masks[0] > 0)).all()


def test_render_with_reproduces_and_intervenes():
    data = SyntheticFaces(6, image_size=32)
    indices = torch.tensor([1, 4])
    current = data.factors[indices, _column("glasses")]
    same, _ = data.render_with(indices, "glasses", current)
    torch.testing.assert_close(same, data.images[indices], rtol=0, atol=0)
    flipped, _ = data.render_with(indices, "glasses", 1 - current)
    assert (flipped - data.images[indices]).abs().amax() > 0.1
