"""`AttributeDataModule`: one LightningDataModule for every image-attribute source.

The source is chosen by name (`SOURCES`): the built-in synthetic faces, a folder of images with
an attribute CSV, CelebA or CheXpert. Each builder returns the train / val / test datasets; the
module adds loaders and the facts models need (`attribute_names`, `target_index`, `channels`,
`image_size`, and `class_names` of a multi-class target).

Target, image size and channels left unset come, in this order, from the classifier that a
command explains (`use_classifier`, with what its bundle records), from the source (the synthetic
world explains `Smiling`; images are 32 px and keep their own channels), or fail with a message
naming the choices. A value that contradicts the classifier's is refused.
"""

from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from cfgen.data.columns import CLASS_SEPARATOR
from cfgen.data.sources import SOURCES, SYNTHETIC_TARGET, Splits, training_half
from cfgen.errors import ConfigError, DataError

SPLIT_NAMES = ("train", "val", "test")


DEFAULT_IMAGE_SIZE = 32
# Recorded by a classifier bundle (`classifier_facts`) -> the option it fills.
RECORDED = {"target": "target", "image_size": "image_size", "channels": "in_channels"}


class AttributeDataModule(pl.LightningDataModule):
    """Images with binary attributes, split into train / val / test.

    Args:
        source: one of `SOURCES` (synthetic, folder, celeba, chexpert).
        root: data folder (not used by `synthetic`).
        csv: attribute CSV inside `root` (folder: default `attributes.csv`; chexpert: the
            training CSV, default `train.csv`).
        attributes: the CSV columns to use as attributes (a non-binary one is a multi-class
            label); default: every binary column (folder), every attribute (CelebA), every
            observation (CheXpert).
        image_size: side of the square images fed to models, in pixels (default: the
            classifier's, else 32).
        channels: 1 (grey) or 3 (RGB) (default: the classifier's, else the images' own).
        batch_size, num_workers: loader settings.
        target: the attribute the black box explains, or one class of a multi-class column
            (`digit=8`, explained against the other classes); default: the classifier's, else
            the synthetic world's `Smiling`.
        n_train, n_val, n_test, seed: sizes and seed of the synthetic world (and the seed of
            the split of a folder without a split column).
        confound_factor, confound_strength: confound the synthetic training split.
        uncertain: CheXpert's uncertain labels: zeros, ones or ignore.
        train_part: the training images used: "all", or the "first" / "second" half of a
            fixed random order of the training split (the same halves whatever the seed), so
            that two models (the explained classifier and a judge of it) train on disjoint
            images of one folder.
    """

    def __init__(
        self,
        source: str = "synthetic",
        root: str | None = None,
        csv: str | None = None,
        attributes: list[str] | None = None,
        image_size: int | None = None,
        channels: int | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        target: str | None = None,
        n_train: int = 20000,
        n_val: int = 2000,
        n_test: int = 2000,
        seed: int = 0,
        confound_factor: str | None = None,
        confound_strength: float = 0.0,
        uncertain: str = "zeros",
        train_part: Literal["all", "first", "second"] = "all",
    ):
        super().__init__()
        if source not in SOURCES:
            raise ConfigError(f"unknown data source {source!r}; choose one of {sorted(SOURCES)}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if image_size is not None and image_size < 1:
            raise ConfigError(f"image_size must be at least 1 pixel (or unset), got {image_size}")
        if num_workers < 0:
            raise ConfigError(
                f"num_workers must be >= 0 (0: load in the main process), got {num_workers}"
            )
        if channels not in (None, 1, 3):
            raise ConfigError(f"channels must be 1 (grey), 3 (RGB) or unset, got {channels}")
        # Kept apart from `hparams`: unset they are resolved later, and Lightning refuses a
        # module and a data module whose hparams share a key with different values.
        self._given = {"target": target, "image_size": image_size, "channels": channels}
        self.save_hyperparameters(ignore=list(self._given))
        self._splits: Splits | None = None
        self._classifier = "the classifier"
        self._recorded: dict = {}

    # ---- options left unset: from the explained classifier, else the source -------------------
    def use_classifier(self, facts: dict, source: str) -> None:
        """Fill unset target, image size and channels from what classifier `source` records.

        `facts`: `cfgen.models.blackbox.classifier_facts(source)` (keys `target`, `image_size`,
        `in_channels`; empty for a classifier that records nothing).
        """
        self._classifier, self._recorded = source, dict(facts)

    def _setting(self, name: str):
        """Option `name` as given, else as the classifier records it; a contradiction fails."""
        given, recorded = self._given[name], self._recorded.get(RECORDED[name])
        if given is not None and recorded is not None and given != recorded:
            raise ConfigError(
                f"data.{name} is {given!r} but the classifier {self._classifier} was trained "
                f"with {recorded!r}; leave data.{name} unset to use the classifier's"
            )
        return given if given is not None else recorded

    @property
    def target(self) -> str | None:
        """The explained attribute or class, or None when nothing names it."""
        return self._setting("target") or (
            SYNTHETIC_TARGET if self.hparams.source == "synthetic" else None
        )

    @property
    def image_size(self) -> int:
        return self._setting("image_size") or DEFAULT_IMAGE_SIZE

    @property
    def requested_channels(self) -> int | None:
        """Channels asked for (option or classifier); None: the images' own."""
        return self._setting("channels")

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
        if self.hparams.train_part != "all":
            splits = (training_half(splits[0], self.hparams.train_part), *splits[1:])
        self._splits = splits
        if self.target is not None:
            self.target_index  # noqa: B018 -- fail at setup, not at the first batch

    def training_record(self) -> dict:
        """What a model trained on this module saw, for its bundle (`meta.data`): the source
        and where it lives, the seed (the synthetic faces, or a folder's split without a split
        column), the training part, and the splits it read (the weights' and the validation
        that chose among checkpoints). The evaluation refuses queries from any of them
        (`cfgen.evaluate.held_out`)."""
        options = self.hparams
        root = None if options.root is None else str(Path(options.root).resolve())
        return {
            "source": options.source,
            "root": root,
            "csv": options.csv,
            "seed": options.seed,
            "train_part": options.train_part,
            "splits": ["train", "val"],
        }

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
    def classes(self) -> dict[str, list[str]]:
        """Multi-class columns and the attribute names of their classes (`digit=0`, ...)."""
        return dict(getattr(self.train_dataset, "classes", {}))

    def class_names(self, target: str) -> list[str] | None:
        """All classes of the multi-class column `target` belongs to; None for a binary one."""
        return next((names for names in self.classes.values() if target in names), None)

    @property
    def target_index(self) -> int:
        names, target = self.attribute_names, self.target
        if target in names:
            return names.index(target)
        source = self.hparams.source
        left_out = getattr(self.train_dataset, "left_out", [])
        hint = f"; columns left out (not binary): {left_out}" if left_out else ""
        if target is None:
            raise ConfigError(
                f"no target: name the attribute to explain with --data.target (source "
                f"{source!r}); available: {names}{hint}"
            )
        raise ConfigError(
            f"target attribute {target!r} is not in the data (source {source!r}); available: "
            f"{names}{hint}. A class of a multi-class column is named COLUMN{CLASS_SEPARATOR}VALUE"
        )

    def target_counts(self, split: str) -> tuple[int, int]:
        """(negative, positive) images of the target in `split` (train, val or test); labels
        that are not known (CheXpert's uncertain ones, dropped) count as neither."""
        dataset = self._split(SPLIT_NAMES.index(split))
        column = torch.as_tensor(dataset.labels)[:, self.target_index]
        return int((column == 0).sum()), int((column == 1).sum())

    def missing_class(self, split: str) -> str | None:
        """What `split` lacks of the two classes of the target (None: it has both)."""
        negatives, positives = self.target_counts(split)
        if negatives and positives:
            return None
        lacking = "positive" if not positives else "negative"
        return (
            f"the {split} split has no {lacking} {self.target!r} image ({negatives} negative, "
            f"{positives} positive)"
        )

    @property
    def channels(self) -> int:
        """Channels of the images fed to models (looks at the data when nothing says it)."""
        if self.requested_channels is not None:
            return self.requested_channels
        if self.hparams.source == "synthetic":
            return 3
        self.setup()
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
