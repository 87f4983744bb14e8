"""Training data of the explainer: images with their classifier posterior, sampled bin-balanced.

The explainer needs f(x) of every training image to pick the images it trains on: a confident
classifier puts most images in the two end bins, so without balancing the discriminator would
see few real images of the middle bins (docs/DESIGN.md, "Official defaults": at most 5,000
images per bin). The posterior of every training image is computed ONCE, in batches, when the
training loader is first built, and reused by every epoch.

Sampling schemes, by name (`BALANCE`): `cap` (official: at most `max_per_bin` images per bin,
uniform over what is kept), `uniform` (every bin equally likely), `none`.

Under DDP (`--trainer.strategy ddp`) Lightning wraps the `WeightedRandomSampler` in a
`DistributedSamplerWrapper`: every process draws the same `steps_per_epoch * batch_size` indices
(same posteriors, broadcast from rank 0, same seed) and keeps its own 1/world_size share, so an
epoch is `steps_per_epoch / world_size` steps per process with `batch_size` images each.

In-memory datasets (the synthetic world keeps its tensors in `.images`) are served a whole batch
per index lookup, with no per-item Python work.
"""

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler, default_collate

from cfgen.bins import posterior_to_bin
from cfgen.data.datamodule import AttributeDataModule
from cfgen.errors import ConfigError, DataError
from cfgen.models.blackbox import classifier_facts, load_blackbox


def _cap_weights(bins: torch.Tensor, n_bins: int, max_per_bin: int, seed: int) -> torch.Tensor:
    """Weight 1 for a random subset of at most `max_per_bin` images per bin, 0 elsewhere."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(bins.numel(), generator=generator)
    # Rank of each image among the images of its bin, in random order; keep ranks < cap.
    shuffled = bins[order]
    rank = torch.empty_like(bins)
    for b in range(n_bins):
        members = (shuffled == b).nonzero().squeeze(1)
        rank[order[members]] = torch.arange(members.numel())
    return (rank < max_per_bin).float()


def _uniform_weights(bins: torch.Tensor, n_bins: int, max_per_bin: int, seed: int) -> torch.Tensor:
    """Weight 1 / (images in the bin): every non-empty bin is drawn equally often."""
    counts = torch.bincount(bins, minlength=n_bins).float()
    return 1.0 / counts[bins]


def _no_weights(bins: torch.Tensor, n_bins: int, max_per_bin: int, seed: int) -> torch.Tensor:
    return torch.ones(bins.numel())


BALANCE: dict[str, Callable[[torch.Tensor, int, int, int], torch.Tensor]] = {
    "cap": _cap_weights,
    "uniform": _uniform_weights,
    "none": _no_weights,
}


def dataset_images(dataset: Dataset, indices: torch.Tensor | None = None) -> torch.Tensor:
    """Images of a dataset as one (N, C, H, W) tensor: its `.images` if it keeps them in memory."""
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        return images if indices is None else images[indices]
    indices = torch.arange(len(dataset)) if indices is None else indices
    return torch.stack([dataset[int(i)]["image"] for i in indices])


@torch.no_grad()
def compute_posteriors(
    classifier: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> torch.Tensor:
    """f(x) of every image of `dataset`, (N,) on the CPU, in batches run on `device`."""
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        chunks = images.split(batch_size)
    else:
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
        chunks = (batch["image"] for batch in loader)
    return torch.cat([classifier(chunk.to(device)).cpu() for chunk in chunks])


class PosteriorDataset(Dataset):
    """Items `{"image": (C, H, W), "posterior": ()}`, plus `"context": (1, H, W)` in [0, 1] when
    `context_masks` (N, H, W) are given; `__getitems__` serves whole batches."""

    def __init__(
        self,
        dataset: Dataset,
        posteriors: torch.Tensor,
        context_masks: torch.Tensor | None = None,
    ) -> None:
        self.dataset = dataset
        self.posteriors = posteriors
        self.context_masks = context_masks
        images = getattr(dataset, "images", None)
        self.images = images if isinstance(images, torch.Tensor) else None

    def __len__(self) -> int:
        return len(self.posteriors)

    def _context(self, index) -> dict[str, torch.Tensor]:
        if self.context_masks is None:
            return {}
        return {"context": self.context_masks[index].float().unsqueeze(-3) / 255.0}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"image": self.dataset[index]["image"], "posterior": self.posteriors[index]}
        return item | self._context(index)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor] | list[dict]:
        if self.images is None:
            return [self[i] for i in indices]
        index = torch.as_tensor(indices)
        batch = {"image": self.images[index], "posterior": self.posteriors[index]}
        return batch | self._context(index)


def region_masks(dataset: Dataset, region: str) -> torch.Tensor:
    """The masks (N, H, W) uint8 (0..255) of `region` for every image of `dataset`, from its
    `masks` (N, R, H, W) and `region_names`; a clear error when it has none."""
    masks, names = getattr(dataset, "masks", None), getattr(dataset, "region_names", None)
    if not isinstance(masks, torch.Tensor) or names is None:
        raise ConfigError(
            f"context_region {region!r} needs region masks, and this data set has none; "
            "leave context_region unset (the synthetic world has masks)"
        )
    if region not in names:
        raise ConfigError(f"unknown context_region {region!r}; the data set has {list(names)}")
    return masks[:, list(names).index(region)]


class QueryDataset(Dataset):
    """Items `{"image": (C, H, W)}` of an image tensor (N, C, H, W); whole batches at once."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index]}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return {"image": self.images[torch.as_tensor(indices)]}


def collate_batch(batch: dict[str, torch.Tensor] | list[dict]) -> dict[str, torch.Tensor]:
    """Batches fetched whole pass through; lists of items are stacked as usual."""
    return batch if isinstance(batch, dict) else default_collate(batch)


class ExplainerDataModule(AttributeDataModule):
    """`AttributeDataModule` whose training batches are bin-balanced and carry f(x).

    Train batches: `{"image": (B, C, H, W), "posterior": (B,)}`, plus `"context"` (B, 1, H, W),
    the mask of `context_region` (where the explanation may change the image, for the context
    loss) when that is set and the data set has region masks; an epoch is `steps_per_epoch`
    batches drawn with replacement from the balanced weights. Validation: the first
    `val_queries` images of the validation split as one batch `{"image": (V, C, H, W)}`, the
    fixed queries the explainer is scored on.

    The posteriors are the trained module's classifier's (read as that module reads it) when
    the data module trains an explainer; `classifier` (a file) names it otherwise, and fills
    the target, image size and channels a cfgen bundle records. `n_bins` defaults to the
    module's. The CLI links both from `model.*`.
    """

    def __init__(
        self,
        classifier: str | None = None,
        n_bins: int | None = None,
        balance: str = "cap",
        max_per_bin: int = 5000,
        steps_per_epoch: int = 200,
        val_queries: int = 256,
        context_region: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # `n_bins` is the explainer module's: kept out of these hyper-parameters (and of their
        # initial copy), which Lightning compares with the module's when a logger records them.
        self.remove_ignored_hparams(["n_bins"])
        self.save_hyperparameters(dict(self.hparams))
        if classifier is not None:  # its target, size and channels
            self.use_classifier(classifier_facts(classifier), classifier)
        if balance not in BALANCE:
            raise ConfigError(f"unknown balance {balance!r}; choose one of {sorted(BALANCE)}")
        self.classifier_path = classifier
        self.requested_bins = n_bins
        self.balance = balance
        self.max_per_bin = max_per_bin
        self.steps_per_epoch = steps_per_epoch
        if val_queries < 1:
            raise ConfigError(f"val_queries must be at least 1, got {val_queries}")
        self.val_queries = val_queries
        self.context_region = context_region
        self.train_posteriors: torch.Tensor | None = None

    @property
    def explainer(self) -> Any:
        """The module this data module trains, when it is attached to a trainer."""
        trainer = self.trainer
        return trainer.lightning_module if trainer is not None else None

    @property
    def n_bins(self) -> int:
        """The posterior bins the sampling balances: the option, else the module's, else 10."""
        if self.requested_bins is not None:
            return self.requested_bins
        return getattr(getattr(self.explainer, "hparams", {}), "n_bins", None) or 10

    def _posteriors(self) -> torch.Tensor:
        if self.train_posteriors is None:
            trainer = self.trainer
            # Under DDP rank 0 computes and sends them: every process must draw the same
            # indices (same weights, same seed) for their shards of one draw to add up, and
            # two GPUs may round a posterior on a bin edge differently.
            distributed = trainer is not None and trainer.world_size > 1
            posteriors = None
            if not distributed or trainer.is_global_zero:
                posteriors = self._compute_posteriors()
            if distributed:
                posteriors = trainer.strategy.broadcast(posteriors, src=0)
            self.train_posteriors = posteriors
        return self.train_posteriors

    def _compute_posteriors(self) -> torch.Tensor:
        # On the training device: a GPU run must not wait for a CPU pass over CelebA.
        module = self.explainer
        device = module.device if module is not None else torch.device("cpu")
        classifier = getattr(module, "classifier", None)
        if classifier is None:
            if self.classifier_path is None:
                raise ConfigError(
                    "the explainer's training data need the classifier: give `classifier` (a "
                    "file), or train the data module with an ExplainerModule"
                )
            classifier = load_blackbox(self.classifier_path)
        return compute_posteriors(
            classifier.to(device),
            self.train_dataset,
            device=device,
            num_workers=self.hparams.num_workers,
        )

    def sample_weights(self) -> torch.Tensor:
        """Sampling weight of every training image, (N,), by the `balance` scheme."""
        posteriors = self._posteriors()
        bins = posterior_to_bin(posteriors, self.n_bins)
        weights = BALANCE[self.balance](bins, self.n_bins, self.max_per_bin, self.hparams.seed)
        if not bool((weights > 0).any()):
            raise DataError("no training image left to sample; check the training split")
        if self.trainer is None or self.trainer.is_global_zero:
            warn_narrow_posteriors(posteriors, bins, self.n_bins)
        return weights

    def train_dataloader(self) -> DataLoader:
        batch_size = self.hparams.batch_size
        generator = torch.Generator().manual_seed(self.hparams.seed)
        sampler = WeightedRandomSampler(
            self.sample_weights(),
            num_samples=self.steps_per_epoch * batch_size,
            replacement=True,
            generator=generator,
        )
        context = None
        if self.context_region is not None:
            context = region_masks(self.train_dataset, self.context_region)
        return DataLoader(
            PosteriorDataset(self.train_dataset, self._posteriors(), context),
            batch_size=batch_size,
            sampler=sampler,
            drop_last=True,
            collate_fn=collate_batch,
            num_workers=self.hparams.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        queries = self.query_images(self.val_queries)
        return DataLoader(QueryDataset(queries), batch_size=len(queries), collate_fn=collate_batch)

    def query_images(self, n: int, split: str = "val") -> torch.Tensor:
        """The first `n` images of a split, (n, C, H, W): fixed queries to monitor training."""
        dataset = self.val_dataset if split == "val" else self.test_dataset
        n = min(n, len(dataset))
        return dataset_images(dataset, torch.arange(n))


def warn_narrow_posteriors(posteriors: torch.Tensor, bins: torch.Tensor, n_bins: int) -> None:
    """Say so on stderr when the classifier reads every training image in one bin, or on one
    side of its decision: the critic then sees no real image of the bins the strips are drawn
    toward, and the classifier term alone says what they look like."""
    low, high = float(posteriors.min()), float(posteriors.max())
    seen = f"all {posteriors.numel()} training images"
    if int(torch.unique(bins).numel()) == 1:
        where = f"in one bin of {n_bins} (bin {int(bins[0])})"
    elif high < 0.5 or low >= 0.5:
        where = "as absent" if high < 0.5 else "as present"
    else:
        return
    print(
        f"warning: the classifier reads {seen} {where} (posteriors {low:.3f} to {high:.3f}): "
        "the critic sees no real image of the other bins, so the strips are drawn toward bins "
        "no training image shows; give the explainer images the classifier reads on both sides "
        "of its decision, or check the classifier's output and activation "
        "(--model.classifier_output, --model.classifier_activation)",
        file=sys.stderr,
    )
