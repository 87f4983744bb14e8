"""Strips of every query of an input, written to a folder: the work of `cfgen generate`.

    explainer = ProgressiveExaggeration.from_checkpoint("explainer.pt")
    queries = open_input("photos/", n=0, image_size=32, channels=explainer.generator.channels)
    generate_strips(explainer, queries, Path("strips"), batch_size=64)

Queries are read one batch ahead in a background thread, the model explains a batch while the
writer's threads encode and write the previous ones (`cfgen.explain.writer`), and only a small
record per query is kept until `strips.json` is written; `overview.png` shows the first
`OVERVIEW_QUERIES` queries. The distributed path (`cfgen.explain.distributed`) writes the same
files with the same pieces.
"""

from collections.abc import Callable
from pathlib import Path

import torch

from cfgen.data.inputs import QueryInput, prefetched
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.explain.strip import Strip
from cfgen.explain.writer import StripWriter, strip_to_cpu
from cfgen.figures import strip_figure
from cfgen.io import atomic_write_bytes, atomic_write_json

OVERVIEW_QUERIES = 16


class Overview:
    """The first `size` queries and their strips, kept as batches arrive, drawn at the end."""

    def __init__(self, size: int = OVERVIEW_QUERIES) -> None:
        self.size = size
        self.queries: list[torch.Tensor] = []
        self.strips: list[Strip] = []

    @property
    def full(self) -> bool:
        return sum(len(queries) for queries in self.queries) >= self.size

    def add(self, queries: torch.Tensor, strip: Strip) -> None:
        """Keep the first queries (N, C, H, W) of a batch and their strip, until full."""
        if not self.full:
            first = slice(0, self.size)
            self.queries.append(queries[first].cpu())
            self.strips.append(strip_to_cpu(strip.select(first)))

    def png(self) -> bytes:
        """One row per query: the query, then its frames, the posterior under each."""
        first = slice(0, self.size)
        queries = torch.cat(self.queries)[first]
        strip = Strip.concat(self.strips).select(first)
        return strip_figure(
            strip.images.numpy(),
            strip.posteriors.numpy(),
            queries.numpy(),
            strip.query_posteriors.numpy(),
            "overview",
        )


def write_summary(
    out: Path, checkpoint: str, records: list[dict], overview: Overview, placement_steps: int
) -> None:
    """`overview.png`, then `strips.json` last: its presence means every strip is written."""
    if overview.queries:
        atomic_write_bytes(out / "overview.png", overview.png())
    summary = {"checkpoint": checkpoint, "placement_steps": placement_steps, "queries": records}
    atomic_write_json(out / "strips.json", summary)


def generate_strips(
    explainer: ProgressiveExaggeration,
    queries: QueryInput,
    out: Path,
    batch_size: int,
    checkpoint: str = "",
    gif: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Write the strips of all `queries` to `out`; return their number.

    The queries' images must already have the explainer's size and channels (`open_input`);
    they go to the generator's device. `on_batch(n)` is called after each batch of n queries
    (a progress bar); `checkpoint` is recorded in `strips.json`.
    """
    device = next(explainer.generator.parameters()).device
    overview = Overview()
    with StripWriter(out, gif=gif) as writer:
        for batch in prefetched(queries.batches(batch_size)):
            strip = explainer.exaggerate(batch.images.to(device))
            writer.submit(batch, strip)
            overview.add(batch.images, strip)
            if on_batch is not None:
                on_batch(len(batch.ids))
        records = writer.records()
    write_summary(out, checkpoint, records, overview, explainer.placement_steps)
    return len(records)
