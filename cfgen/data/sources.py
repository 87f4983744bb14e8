"""The data sources of `cfgen.data.datamodule.AttributeDataModule`, by name (`SOURCES`).

Each builder takes the data module (its options, and the target, image size and channels it
resolved) and returns the train / val / test datasets. `training_half` keeps one fixed half of a
training split (`data.train_part`): a judge trained on the "second" half never sees an image of
the classifier's "first".
"""

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from cfgen.data.chexpert import chexpert_splits
from cfgen.data.folders import CelebA, folder_splits
from cfgen.data.synthetic import SyntheticFaces
from cfgen.errors import ConfigError

# The builders' argument: the `AttributeDataModule` asking (not imported: it imports this module).
DataModule = Any

SYNTHETIC_TARGET = "Smiling"

Splits = tuple[Dataset, Dataset, Dataset]


def _synthetic(module: DataModule) -> Splits:
    options = module.hparams
    if module.requested_channels not in (None, 3):
        raise ConfigError("the synthetic faces are RGB: leave data.channels unset or set it to 3")

    def split(name: str, n: int) -> SyntheticFaces:
        return SyntheticFaces(
            n,
            image_size=module.image_size,
            seed=options.seed,
            split=name,
            confound_factor=options.confound_factor,
            confound_strength=options.confound_strength,
            target=module.target or SYNTHETIC_TARGET,
        )

    return (
        split("train", options.n_train),
        split("val", options.n_val),
        split("test", options.n_test),
    )


def _require_root(module: DataModule) -> str:
    if module.hparams.root is None:
        raise ConfigError(
            f"data source {module.hparams.source!r} needs `root`: the folder that holds the data"
        )
    return module.hparams.root


def _folder(module: DataModule) -> Splits:
    root, options = _require_root(module), module.hparams
    return folder_splits(
        root,
        csv=options.csv or "attributes.csv",
        image_size=module.image_size,
        seed=options.seed,
        attributes=options.attributes,
        channels=module.requested_channels,
        target=module.target,
    )


def _celeba(module: DataModule) -> Splits:
    root, options = _require_root(module), module.hparams
    return tuple(
        CelebA(root, name, module.image_size, options.attributes, module.requested_channels)
        for name in ("train", "val", "test")
    )


def _chexpert(module: DataModule) -> Splits:
    root, options = _require_root(module), module.hparams
    return chexpert_splits(
        root,
        csv=options.csv,
        image_size=module.image_size,
        uncertain=options.uncertain,
        seed=options.seed,
        labels=options.attributes,
        channels=module.requested_channels,
    )


# The halves of a training split do not depend on the data seed: a judge trained with other seeds
# on the "second" half never sees an image of the classifier's "first".
HALVES_SEED = 20261207


class _Part(Subset):
    """Some items of a dataset that still answers for its facts (attribute names, classes)."""

    def __getattr__(self, name: str):
        if name in ("dataset", "indices"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def training_half(dataset: Dataset, part: str) -> Dataset:
    """The `part` ("first" or "second") half of a fixed random order of `dataset`'s items."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(HALVES_SEED))
    middle = len(order) // 2
    chosen = order[:middle] if part == "first" else order[middle:]
    return _Part(dataset, sorted(chosen.tolist()))


SOURCES: dict[str, Callable[[DataModule], Splits]] = {
    "synthetic": _synthetic,
    "folder": _folder,
    "celeba": _celeba,
    "chexpert": _chexpert,
}
