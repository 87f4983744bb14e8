"""`cfgen generate --devices N`: strips through Lightning's predict loop, on several processes.

    cfgen generate --checkpoint explainer.pt --input photos/ --out strips/ --devices 2 \\
        --strategy ddp                       # 2 processes on this machine (CPU: gloo)
    srun cfgen generate ... --device cuda --devices 4 --num-nodes 2   # SLURM, 8 GPUs

Process `rank` of `world` explains query batches rank, rank + world, ... (`QueryInput.batches`'
shard): it reads only those images and its `StripWriter` threads write their `strips/<id>.png`
(and `gifs/<id>.gif`), so memory stays bounded as in the single-process path. At the end rank 0
gathers the small per-query records and the first queries' strips, and writes `strips.json`
(records in input order) and `overview.png`: the same files as one process would write
(`cfgen.explain.generate.write_summary`). Any launcher Lightning knows works: its own (it
re-runs the command once per extra device), torchrun, SLURM. The process of global rank 0 claims
the folder (`cfgen.explain.strip_folder`); every process journals the strips it writes, so a
stopped run is finished by `--resume` as in the single-process path.
"""

import warnings
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader, IterableDataset

from cfgen.data.inputs import QueryBatch, open_input
from cfgen.explain.generate import (
    OVERVIEW_QUERIES,
    Overview,
    describe_run,
    overview_of_a_resumed_run,
    write_summary,
)
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.explain.strip import Strip
from cfgen.explain.strip_folder import StripFolder, journaled
from cfgen.explain.writer import StripWriter, strip_to_cpu

# `--device` names a torch device; Lightning wants an accelerator name.
ACCELERATORS = {"cpu": "cpu", "cuda": "gpu", "mps": "mps"}


class QueryBatches(IterableDataset):
    """The query batches of one process, read lazily (built from the `--input` arguments, so
    that it pickles for launchers that spawn)."""

    def __init__(
        self, spec: str, n: int, size: int, channels: int, batch_size: int, shard, skip=()
    ):
        self.spec, self.n, self.size, self.channels = spec, n, size, channels
        self.batch_size, self.shard, self.skip = batch_size, shard, frozenset(skip)

    def __iter__(self) -> Iterator[QueryBatch]:
        queries = open_input(self.spec, self.n, self.size, self.channels).without(self.skip)
        return queries.batches(self.batch_size, self.shard)


class StripPredictor(pl.LightningModule):
    """`predict_step`: one batch of queries -> `(QueryBatch, Strip)`."""

    def __init__(
        self, explainer: ProgressiveExaggeration, spec: str, n: int, batch_size: int, skip=()
    ):
        super().__init__()
        self.explainer = explainer
        self.spec, self.n, self.batch_size, self.skip = spec, n, batch_size, frozenset(skip)

    def predict_dataloader(self) -> DataLoader:
        shard = (self.trainer.global_rank, self.trainer.world_size)
        generator = self.explainer.generator
        batches = QueryBatches(
            self.spec,
            self.n,
            generator.image_size,
            generator.channels,
            self.batch_size,
            shard,
            self.skip,
        )
        return DataLoader(batches, batch_size=None)  # already batched

    def on_predict_start(self) -> None:
        self.explainer.to(self.device)

    def predict_step(self, batch: QueryBatch, batch_idx: int) -> tuple[QueryBatch, Strip]:
        return QueryBatch(*batch), self.explainer.exaggerate(batch[2])


def _gather(value: Any) -> list[Any]:
    """`value` of every process, by rank (just `[value]` without torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


class StripPredictionWriter(BasePredictionWriter):
    """Hands each batch's strips to a `StripWriter` where they were made; rank 0 writes the
    merged `strips.json` and `overview.png` at the end."""

    def __init__(
        self,
        folder: StripFolder,
        ids: list[str],
        checkpoint: str,
        batch_size: int,
        gif: bool = False,
        overview: bool = True,
    ) -> None:
        super().__init__(write_interval="batch")
        self.folder, self.ids, self.checkpoint = folder, ids, checkpoint
        self.batch_size, self.gif, self.draw_overview = batch_size, gif, overview
        self.writer: StripWriter | None = None
        self.records: dict[int, Future] = {}  # by batch number in the input order
        self.overview: dict[int, tuple[torch.Tensor, Strip]] = {}
        self.written = 0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.writer = StripWriter(self.folder.path, gif=self.gif, on_written=self.folder.record)

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        queries, strip = prediction
        number = batch_idx * trainer.world_size + trainer.global_rank
        self.records[number] = self.writer.submit(queries, strip)
        if self.draw_overview and number * self.batch_size < OVERVIEW_QUERIES:
            first = slice(0, OVERVIEW_QUERIES)
            self.overview[number] = (queries.images[first].cpu(), strip_to_cpu(strip.select(first)))

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.writer is not None:
            self.writer.close(cancel=True)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.writer.close()
        written = {number: future.result() for number, future in self.records.items()}
        records, parts = {}, {}
        for part_records, part_overview in _gather((written, self.overview)):
            records |= part_records
            parts |= part_overview
        if not trainer.is_global_zero:
            return
        overview = Overview() if self.draw_overview else None
        for number in sorted(parts):
            overview.add(*parts[number])
        made = [record for number in sorted(records) for record in records[number]]
        ordered = self.folder.in_order(made, self.ids)
        placement = pl_module.explainer.placement_steps
        write_summary(self.folder.path, self.checkpoint, ordered, overview, placement)
        self.folder.complete()
        self.written = len(ordered)


def predict_strips(explainer: ProgressiveExaggeration, args: Any) -> int | None:
    """Run generation on `args.devices` x `args.num_nodes` processes; rank 0 returns the count.

    `args` are `cfgen generate`'s: checkpoint, input, n, out, batch_size, gif, overwrite,
    resume, device, devices, num_nodes, strategy. Other processes return None.
    """
    generator = explainer.generator
    queries = open_input(args.input, args.n, generator.image_size, generator.channels)
    if rank_zero_only.rank == 0:  # from the launcher's environment, before any process group
        run = describe_run(explainer, queries, args.gif)
        with StripFolder.claim(args.out, run, args.overwrite, args.resume) as folder:
            return _predict(explainer, queries, folder, args)
    # Rank 0 claims (and, with --overwrite, clears) the folder before the process group forms.
    return _predict(explainer, queries, journaled(args.out, args.resume), args)


def _predict(explainer, queries, folder: StripFolder, args: Any) -> int | None:
    skip = set(folder.done)
    earlier = None
    if rank_zero_only.rank == 0:
        earlier = overview_of_a_resumed_run(explainer, queries, folder, args.batch_size)
    if earlier is not None:
        earlier.save(folder.path)
    overview = not folder.done and not (folder.path / "overview.png").is_file()
    writer = StripPredictionWriter(
        folder, queries.ids, str(args.checkpoint), args.batch_size, args.gif, overview
    )
    trainer = pl.Trainer(
        accelerator=ACCELERATORS[torch.device(args.device).type],
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=args.strategy,
        callbacks=[writer],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=str(folder.path),
    )
    predictor = StripPredictor(explainer, args.input, args.n, args.batch_size, skip)
    with warnings.catch_warnings():
        # Lightning cannot know a query batch's indices in an iterable data set;
        # `StripPredictionWriter` numbers the batches itself.
        warnings.filterwarnings("ignore", message=".*infer the batch indices.*")
        trainer.predict(predictor, return_predictions=False)
    return writer.written if trainer.is_global_zero else None
