"""`cfgen generate --devices N`: strips through Lightning's predict loop, on several processes.

    cfgen generate --checkpoint explainer.pt --input photos/ --out strips/ --devices 2 \\
        --strategy ddp                       # 2 processes on this machine (CPU: gloo)
    srun cfgen generate ... --device cuda --devices 4 --num-nodes 2   # SLURM, 8 GPUs

Process `rank` of `world` explains query batches rank, rank + world, ... (`open_input`'s shard):
it reads only those images and writes their `strips/<id>.png` and `gifs/<id>.gif` itself, a
batch at a time, so memory stays bounded as in the single-process path. At the end rank 0
gathers the small per-query records and the first queries' strips, and writes `strips.json`
(records in input order) and `overview.png`: the same files as one process would write.
Any launcher Lightning knows works: its own (it re-runs the command once per extra device),
torchrun, SLURM.
"""

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, IterableDataset

from cfgen.explain.cli import (
    OVERVIEW_QUERIES,
    Batch,
    _figure,
    _match_channels,
    open_input,
    write_batch,
)
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.explain.strip import Strip
from cfgen.io import atomic_write_bytes, atomic_write_json

# `--device` names a torch device; Lightning wants an accelerator name.
ACCELERATORS = {"cpu": "cpu", "cuda": "gpu", "mps": "mps"}


class QueryBatches(IterableDataset):
    """The query batches of one process: `(ids, sources, images (B, C, H, W))`, read lazily."""

    def __init__(self, spec: str, n: int, size: int, batch_size: int, shard: tuple[int, int]):
        self.args = (spec, n, size, batch_size, shard)

    def __iter__(self) -> Iterator[Batch]:
        return open_input(*self.args)[1]


class StripPredictor(pl.LightningModule):
    """`predict_step`: one batch of queries -> `(ids, sources, queries, Strip)`."""

    def __init__(self, explainer: ProgressiveExaggeration, spec: str, n: int, batch_size: int):
        super().__init__()
        self.explainer = explainer
        self.spec, self.n, self.batch_size = spec, n, batch_size

    def predict_dataloader(self) -> DataLoader:
        shard = (self.trainer.global_rank, self.trainer.world_size)
        size = self.explainer.generator.image_size
        batches = QueryBatches(self.spec, self.n, size, self.batch_size, shard)
        return DataLoader(batches, batch_size=None)  # already batched, in memory

    def on_predict_start(self) -> None:
        self.explainer.to(self.device)

    def predict_step(self, batch: Batch, batch_idx: int) -> tuple:
        ids, sources, images = batch
        images = _match_channels(images, self.explainer.generator.channels)
        return ids, sources, images, self.explainer.exaggerate(images)


def _to_cpu(strip: Strip) -> Strip:
    return Strip(*(getattr(strip, name).cpu() for name in Strip.__dataclass_fields__))


def _gather(value: Any) -> list[Any]:
    """`value` of every process, by rank (just `[value]` without torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


class StripWriter(BasePredictionWriter):
    """Writes each batch's strips where it was made; rank 0 writes the merged files at the end."""

    def __init__(self, out: Path, checkpoint: str, batch_size: int) -> None:
        super().__init__(write_interval="batch")
        self.out, self.checkpoint, self.batch_size = out, checkpoint, batch_size
        self.records: dict[int, list[dict]] = {}  # by batch number in the input order
        self.overview: dict[int, tuple[torch.Tensor, Strip]] = {}
        self.written = 0

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        ids, sources, images, strip = prediction
        number = batch_idx * trainer.world_size + trainer.global_rank
        self.records[number] = write_batch(self.out, ids, sources, images, strip)
        if number * self.batch_size < OVERVIEW_QUERIES:
            first = slice(0, OVERVIEW_QUERIES)
            self.overview[number] = (images[first].cpu(), _to_cpu(strip.select(first)))

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        records, overview = {}, {}
        for part_records, part_overview in _gather((self.records, self.overview)):
            records |= part_records
            overview |= part_overview
        if not trainer.is_global_zero:
            return
        ordered = [record for number in sorted(records) for record in records[number]]
        parts = [overview[number] for number in sorted(overview)]
        first = slice(0, OVERVIEW_QUERIES)
        queries = torch.cat([queries for queries, _ in parts])[first]
        shown = Strip.concat([strip for _, strip in parts]).select(first)
        atomic_write_bytes(self.out / "overview.png", _figure(queries, shown, "overview"))
        document = {"checkpoint": self.checkpoint, "queries": ordered}
        atomic_write_json(self.out / "strips.json", document)
        self.written = len(ordered)


def predict_strips(explainer: ProgressiveExaggeration, out: Path, args: Any) -> int | None:
    """Run generation on `args.devices` x `args.num_nodes` processes; rank 0 returns the count.

    `args` are `cfgen generate`'s: checkpoint, input, n, batch_size, device, devices,
    num_nodes, strategy. Other processes return None.
    """
    writer = StripWriter(out, str(args.checkpoint), args.batch_size)
    trainer = pl.Trainer(
        accelerator=ACCELERATORS[torch.device(args.device).type],
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=args.strategy,
        callbacks=[writer],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=str(out),
    )
    predictor = StripPredictor(explainer, args.input, args.n, args.batch_size)
    with warnings.catch_warnings():
        # Lightning cannot know a query batch's indices in an iterable data set; `StripWriter`
        # numbers the batches itself.
        warnings.filterwarnings("ignore", message=".*infer the batch indices.*")
        trainer.predict(predictor, return_predictions=False)
    return writer.written if trainer.is_global_zero else None
