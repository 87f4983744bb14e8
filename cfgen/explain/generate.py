"""Strips of every query of an input, written to a folder: the work of `cfgen generate`.

    explainer = ProgressiveExaggeration.from_checkpoint("explainer.pt")
    queries = open_input("photos/", n=0, image_size=32, channels=explainer.generator.channels)
    generate_strips(explainer, queries, Path("strips"), batch_size=64)
    generate_strips(explainer, queries, Path("strips"), batch_size=64, resume=True)  # if stopped

Queries are read one batch ahead in a background thread, the model explains a batch while the
writer's threads encode and write the previous ones (`cfgen.explain.writer`), and only a small
record per query is kept until `strips.json` is written; `overview.png` shows the first
`OVERVIEW_QUERIES` queries, written as soon as they are done. The folder is claimed for the run
(`cfgen.explain.strip_folder`): another run writing there is refused, each strip is journaled
once written, and a run stopped half-way is finished by `resume=True`, which makes only the
strips not written yet. The distributed path (`cfgen.explain.distributed`) writes the same
files with the same pieces.
"""

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cfgen.data.inputs import QueryInput, check_batch_size, prefetched
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.explain.strip import Strip
from cfgen.explain.strip_folder import StripFolder
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
        self.saved = False

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

    def save(self, out: Path) -> None:
        """Write `out/overview.png` once (nothing without queries)."""
        if self.queries and not self.saved:
            atomic_write_bytes(out / "overview.png", self.png())
            self.saved = True


def write_summary(
    out: Path,
    checkpoint: str,
    records: list[dict],
    overview: Overview | None,
    placement_steps: int,
) -> None:
    """`overview.png` (unless None or saved), then `strips.json` last: its presence means every
    strip is written."""
    if overview is not None:
        overview.save(out)
    summary = {"checkpoint": checkpoint, "placement_steps": placement_steps, "queries": records}
    atomic_write_json(out / "strips.json", summary)


def _sha256(module: object) -> str:
    """Content hash of a module's weights (of a plain callable: its type)."""
    digest = hashlib.sha256()
    if not isinstance(module, nn.Module):
        digest.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
        return digest.hexdigest()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def describe_run(explainer: ProgressiveExaggeration, queries: QueryInput, gif: bool) -> dict:
    """What a run makes: the same for a run resumed (`cfgen.explain.strip_folder`)."""
    listing = "\n".join(f"{i}\t{s}" for i, s in zip(queries.ids, queries.sources, strict=True))
    return {
        "generator_sha256": _sha256(explainer.generator),
        "classifier_sha256": _sha256(explainer.classifier),
        "placement_steps": explainer.placement_steps,
        "gif": gif,
        "queries_sha256": hashlib.sha256(listing.encode()).hexdigest(),
        "n_queries": len(queries),
    }


def overview_of_a_resumed_run(
    explainer: ProgressiveExaggeration, queries: QueryInput, folder: StripFolder, batch_size: int
) -> Overview | None:
    """The overview a run being resumed still lacks, or None when there is one or the run is
    new (it draws its own from its first batches). Drawn from the first queries again, without
    writing their strips (at most `OVERVIEW_QUERIES` of them)."""
    if not folder.done or (folder.path / "overview.png").is_file():
        return None
    first = queries.without(set(queries.ids[OVERVIEW_QUERIES:]))
    overview = Overview(len(first))
    device = next(explainer.generator.parameters()).device
    for batch in first.batches(batch_size):
        overview.add(batch.images, explainer.exaggerate(batch.images.to(device)))
    return overview


def generate_strips(
    explainer: ProgressiveExaggeration,
    queries: QueryInput,
    out: Path,
    batch_size: int,
    checkpoint: str = "",
    gif: bool = False,
    on_batch: Callable[[int], None] | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> int:
    """Write the strips of all `queries` to `out`; return their number.

    The queries' images must already have the explainer's size and channels (`open_input`);
    they go to the generator's device. `on_batch(n)` is called after each batch of n queries
    (a progress bar); `checkpoint` is recorded in `strips.json`. `out` must be empty unless
    `overwrite` (an earlier run's strips are deleted first) or `resume` (an unfinished run of
    the same explainer and queries is finished: `cfgen.explain.strip_folder`).
    """
    check_batch_size(batch_size)
    device = next(explainer.generator.parameters()).device
    run = describe_run(explainer, queries, gif)
    with StripFolder.claim(out, run, overwrite=overwrite, resume=resume) as folder:
        todo = queries.without(folder.done)
        if on_batch is not None and folder.done:
            on_batch(len(queries) - len(todo))  # made by the run this one finishes
        earlier = overview_of_a_resumed_run(explainer, queries, folder, batch_size)
        if earlier is not None:
            earlier.save(folder.path)
        # A new run's overview is saved once its queries are made, for a resumed run to keep.
        drawn = folder.done or (folder.path / "overview.png").is_file()
        overview = None if drawn else Overview(min(OVERVIEW_QUERIES, len(queries)))
        with StripWriter(folder.path, gif=gif, on_written=folder.record) as writer:
            for batch in prefetched(todo.batches(batch_size)):
                strip = explainer.exaggerate(batch.images.to(device))
                writer.submit(batch, strip)
                if overview is not None:
                    overview.add(batch.images, strip)
                    if overview.full:
                        overview.save(folder.path)
                if on_batch is not None:
                    on_batch(len(batch.ids))
            records = folder.in_order(writer.records(), queries.ids)
        write_summary(folder.path, checkpoint, records, overview, explainer.placement_steps)
        folder.complete()
    return len(records)
