"""`AttributeDataModule`: one LightningDataModule for every image-attribute source.

The source is chosen by name (`SOURCES`): the built-in synthetic faces, a folder of images with
an attribute CSV, CelebA or CheXpert. Each builder returns the train / val / test datasets; the
module adds loaders and the facts models need (`attribute_names`, `target_index`, `channels`).
"""

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from cfgen.data.chexpert import chexpert_splits
from cfgen.data.folders import CelebA, folder_splits
from cfgen.data.synthetic import SyntheticFaces
from cfgen.errors import ConfigError, DataError

Splits = tuple[Dataset, Dataset, Dataset]


def _synthetic(module: "AttributeDataModule") -> Splits:
    options = module.hparams

    def split(name: str, n: int) -> SyntheticFaces:
        return SyntheticFaces(
            n,
            image_size=options.image_size,
            seed=options.seed,
            split=name,
            confound_factor=options.confound_factor,
            confound_strength=options.confound_strength,
            target=options.target,
        )

    return (
        split("train", options.n_train),
        split("val", options.n_val),
        split("test", options.n_test),
    )


def _require_root(module: "AttributeDataModule") -> str:
    if module.hparams.root is None:
        raise ConfigError(
            f"data source {module.hparams.source!r} needs `root`: the folder that holds the data"
        )
    return module.hparams.root


def _folder(module: "AttributeDataModule") -> Splits:
    root, options = _require_root(module), module.hparams
    csv = options.csv or "attributes.csv"
    return folder_splits(root, csv=csv, image_size=options.image_size, seed=options.seed)


def _celeba(module: "AttributeDataModule") -> Splits:
    root, size = _require_root(module), module.hparams.image_size
    return tuple(CelebA(root, split=name, image_size=size) for name in ("train", "val", "test"))


def _chexpert(module: "AttributeDataModule") -> Splits:
    root, options = _require_root(module), module.hparams
    return chexpert_splits(
        root,
        csv=options.csv,
        image_size=options.image_size,
        uncertain=options.uncertain,
        seed=options.seed,
    )


SOURCES: dict[str, Callable[["AttributeDataModule"], Splits]] = {
    "synthetic": _synthetic,
    "folder": _folder,
    "celeba": _celeba,
    "chexpert": _chexpert,
}


class AttributeDataModule(pl.LightningDataModule):
    """Images with binary attributes, split into train / val / test.

    Args:
        source: one of `SOURCES` (synthetic, folder, celeba, chexpert).
        root: data folder (not used by `synthetic`).
        csv: attribute CSV inside `root` (folder: default `attributes.csv`; chexpert: the
            training CSV, default `train.csv`).
        image_size: side of the square images fed to models, in pixels.
        batch_size, num_workers: loader settings.
        target: the attribute the black box explains; must be one of the source's attributes.
        n_train, n_val, n_test, seed: sizes and seed of the synthetic world (and the seed of
            the split of a folder without a split column).
        confound_factor, confound_strength: confound the synthetic training split.
        uncertain: CheXpert's uncertain labels: zeros, ones or ignore.
    """

    def __init__(
        self,
        source: str = "synthetic",
        root: str | None = None,
        csv: str | None = None,
        image_size: int = 32,
        batch_size: int = 128,
        num_workers: int = 0,
        target: str = "Smiling",
        n_train: int = 20000,
        n_val: int = 2000,
        n_test: int = 2000,
        seed: int = 0,
        confound_factor: str | None = None,
        confound_strength: float = 0.0,
        uncertain: str = "zeros",
    ):
        super().__init__()
        if source not in SOURCES:
            raise ConfigError(f"unknown data source {source!r}; choose one of {sorted(SOURCES)}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.save_hyperparameters()
        self._splits: Splits | None = None

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets once; later calls (one per Trainer stage) reuse them."""
        if self._splits is not None:
            return
        splits = SOURCES[self.hparams.source](self)
        for name, dataset in zip(("train", "val", "test"), splits, strict=True):
            if len(dataset) == 0:
                raise DataError(
                    f"the {name} split of data source {self.hparams.source!r} is empty; "
                    "check the split column of the CSV or the sizes requested"
                )
        self._splits = splits
        self.target_index  # noqa: B018 -- fail at setup, not at the first batch

    def _split(self, index: int) -> Dataset:
        if self._splits is None:
            raise RuntimeError("call AttributeDataModule.setup() before using its datasets")
        return self._splits[index]

    @property
    def train_dataset(self) -> Dataset:
        return self._split(0)

    @property
    def val_dataset(self) -> Dataset:
        return self._split(1)

    @property
    def test_dataset(self) -> Dataset:
        return self._split(2)

    @property
    def attribute_names(self) -> list[str]:
        return list(self.train_dataset.attribute_names)

    @property
    def target_index(self) -> int:
        names = self.attribute_names
        if self.hparams.target not in names:
            raise ConfigError(
                f"target attribute {self.hparams.target!r} is not in the data "
                f"(source {self.hparams.source!r}); available: {names}"
            )
        return names.index(self.hparams.target)

    @property
    def image_size(self) -> int:
        return self.hparams.image_size

    @property
    def channels(self) -> int:
        return int(self.train_dataset[0]["image"].shape[0])

    def _loader(self, dataset: Dataset, train: bool = False) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=train,
            # Dropping the last partial batch keeps batch statistics stable, unless that would
            # leave no batch at all.
            drop_last=train and len(dataset) >= self.hparams.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset)
