import pytest
import torch
from torch.utils.data import DataLoader

from cfgen.bins import posterior_to_bin
from cfgen.data.synthetic import SyntheticFaces
from cfgen.errors import ConfigError
from cfgen.train.explainer_data import (
    BALANCE,
    PosteriorDataset,
    collate_batch,
    compute_posteriors,
    region_masks,
    warn_narrow_posteriors,
)


def test_cap_keeps_at_most_the_cap_per_bin():
    bins = torch.tensor([0] * 10 + [1] * 3 + [2] * 1)
    weights = BALANCE["cap"](bins, 3, 4, 0)
    kept = torch.bincount(bins[weights > 0], minlength=3)
    torch.testing.assert_close(kept, torch.tensor([4, 3, 1]))
    torch.testing.assert_close(weights.unique(), torch.tensor([0.0, 1.0]))


def test_uniform_gives_every_non_empty_bin_the_same_total_weight():
    bins = torch.tensor([0] * 10 + [1] * 3 + [3] * 1)
    weights = BALANCE["uniform"](bins, 4, 5000, 0)
    totals = torch.zeros(4).index_add_(0, bins, weights)
    torch.testing.assert_close(totals, torch.tensor([1.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(BALANCE["none"](bins, 4, 5000, 0), torch.ones(14))


class InMemory(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return {"image": self.images[index], "labels": torch.zeros(1), "index": index}


class ItemsOnly(InMemory):
    """The same data without the in-memory `.images` tensor: served item by item."""

    def __init__(self, images):
        self.data = images

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return {"image": self.data[index], "labels": torch.zeros(1), "index": index}


def test_batches_are_the_same_whole_or_item_by_item():
    images = torch.rand(6, 3, 4, 4)
    classifier = lambda x: x.mean(dim=(1, 2, 3))  # noqa: E731
    posteriors = compute_posteriors(classifier, InMemory(images), batch_size=4)
    torch.testing.assert_close(posteriors, compute_posteriors(classifier, ItemsOnly(images), 4))
    for dataset in (InMemory(images), ItemsOnly(images)):
        loader = DataLoader(
            PosteriorDataset(dataset, posteriors),
            batch_size=3,
            sampler=[5, 0, 2],
            collate_fn=collate_batch,
        )
        batch = next(iter(loader))
        torch.testing.assert_close(batch["image"], images[[5, 0, 2]])
        torch.testing.assert_close(batch["posterior"], posteriors[[5, 0, 2]])


def test_context_masks_of_a_region_come_with_each_batch_in_zero_one():
    faces = SyntheticFaces(6, image_size=16, seed=0, split="train")
    masks = region_masks(faces, "mouth")
    mouth = faces.region_names.index("mouth")
    torch.testing.assert_close(masks, faces.masks[:, mouth])
    posteriors = torch.linspace(0, 1, 6)
    for dataset in (faces, ItemsOnly(faces.images)):
        loader = DataLoader(
            PosteriorDataset(dataset, posteriors, masks),
            batch_size=3,
            sampler=[5, 0, 2],
            collate_fn=collate_batch,
        )
        batch = next(iter(loader))
        expected = faces.masks[[5, 0, 2], mouth].float().unsqueeze(1) / 255.0
        torch.testing.assert_close(batch["context"], expected)
        assert float(batch["context"].max()) == 1.0  # the mouth is drawn in every face


def test_a_context_region_needs_a_data_set_with_that_region():
    with pytest.raises(ConfigError, match="has none"):
        region_masks(InMemory(torch.rand(2, 3, 4, 4)), "mouth")
    with pytest.raises(ConfigError, match="unknown context_region 'nose'"):
        region_masks(SyntheticFaces(2, image_size=16), "nose")


def test_posteriors_on_one_side_or_in_one_bin_are_warned_about_and_a_spread_is_not(capsys):
    def warning(posteriors: list[float]) -> str:
        posteriors = torch.tensor(posteriors)
        warn_narrow_posteriors(posteriors, posterior_to_bin(posteriors, 4), 4)
        return capsys.readouterr().err

    assert warning([0.1, 0.3, 0.6, 0.9]) == ""
    assert "all 2 training images in one bin of 4 (bin 2) (posteriors 0.550 to 0.600)" in warning(
        [0.55, 0.6]
    )
    assert "all 3 training images as absent (posteriors 0.100 to 0.400)" in warning([0.1, 0.3, 0.4])
    assert "all 2 training images as present (posteriors 0.500 to 0.900)" in warning([0.5, 0.9])
