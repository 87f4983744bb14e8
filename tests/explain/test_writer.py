import threading

import numpy as np
import pytest
import torch
from PIL import Image

from cfgen.data.inputs import QueryBatch
from cfgen.errors import CfgenError
from cfgen.explain import writer as writer_module
from cfgen.explain.strip import Strip
from cfgen.explain.writer import (
    PADDING,
    SEPARATOR,
    StripWriter,
    gif_bytes,
    label,
    strip_pictures,
    to_uint8,
)


def eight_bit(shape) -> torch.Tensor:
    """Images in [-1, 1] that are exactly 8-bit pixels p / 127.5 - 1."""
    return torch.randint(0, 256, shape).float() / 127.5 - 1.0


def make_strip(n: int, channels: int, size: int, steps: int = 3) -> tuple[torch.Tensor, Strip]:
    queries = eight_bit((n, channels, size, size))
    posteriors = torch.rand(steps, n)
    strip = Strip(eight_bit((steps, n, channels, size, size)), torch.arange(steps), posteriors,
                  torch.rand(n))  # fmt: skip
    return queries, strip


@pytest.mark.parametrize("channels, size", [(3, 32), (1, 8)])
def test_strip_picture_holds_every_frame_exactly_with_its_posterior_under_it(channels, size):
    queries, strip = make_strip(n=2, channels=channels, size=size)
    pictures = strip_pictures(queries, strip)
    assert len(pictures) == 2 and pictures[1].mode == ("RGB" if channels == 3 else "L")
    pixels = torch.from_numpy(np.array(pictures[1])).reshape(pictures[1].height, -1, channels)
    pixels = pixels.permute(2, 0, 1)  # (C, H, W)
    frames = [queries[1], *strip.images[:, 1]]
    texts = [f"{p:.2f}" for p in [strip.query_posteriors[1], *strip.posteriors[:, 1]]]
    cell = (pictures[1].width - PADDING) // len(frames) - PADDING
    left = (cell - size) // 2
    for step, (frame, text) in enumerate(zip(frames, texts, strict=True)):
        x = PADDING + step * (cell + PADDING)
        torch.testing.assert_close(pixels[:, PADDING : PADDING + size, x + left : x + left + size],
                                   to_uint8(frame))  # fmt: skip
        band = label(text, cell)
        assert band.min() == 0  # text is drawn
        below = pixels[:, PADDING + size : PADDING + size + band.shape[0], x : x + cell]
        torch.testing.assert_close(below, band.expand_as(below))
    assert pictures[1].height == PADDING + size + band.shape[0] + PADDING
    assert (pixels[:, :, PADDING + cell + 1] == SEPARATOR).all()  # query | strip


def test_labels_differ_with_the_posterior():
    assert not torch.equal(label("0.25", 30), label("0.26", 30))


def test_gif_has_one_frame_per_step():
    _, strip = make_strip(n=1, channels=1, size=8, steps=4)
    gif = Image.open(
        __import__("io").BytesIO(gif_bytes(strip.images[:, 0], strip.posteriors[:, 0]))
    )
    assert gif.n_frames == 4 and gif.size[0] == 8 * writer_module.GIF_SCALE


def batch_of(ids: list[str]) -> tuple[QueryBatch, Strip]:
    queries, strip = make_strip(n=len(ids), channels=3, size=8)
    return QueryBatch(ids, [f"src/{i}" for i in ids], queries), strip


def test_writer_writes_pngs_and_records_in_submission_order(tmp_path):
    with StripWriter(tmp_path, gif=True, workers=2) as writer:
        submitted = [batch_of(["a", "b"]), batch_of(["c"])]
        for batch, strip in submitted:
            writer.submit(batch, strip)
        records = writer.records()
    assert [r["id"] for r in records] == ["a", "b", "c"]
    batch, strip = submitted[0]
    assert records[1]["source"] == "src/b" and records[1]["target_bins"] == [0, 1, 2]
    torch.testing.assert_close(torch.tensor(records[1]["posteriors"]), strip.posteriors[:, 1])
    torch.testing.assert_close(
        torch.tensor(records[1]["query_posterior"]), strip.query_posteriors[1]
    )
    expected = np.array(strip_pictures(batch.images, strip)[1])
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "strips" / "b.png")), expected)
    assert Image.open(tmp_path / "gifs" / "c.gif").n_frames == 3


def test_writer_blocks_when_pending_batches_are_full(tmp_path, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(writer_module, "write_strips", lambda *args: release.wait() and [])
    writer = StripWriter(tmp_path, workers=1, pending=2)
    writer.submit(*batch_of(["a"]))
    writer.submit(*batch_of(["b"]))
    third = threading.Thread(target=writer.submit, args=batch_of(["c"]))
    third.start()
    third.join(timeout=0.3)
    assert third.is_alive()  # waits for a free slot
    release.set()
    third.join(timeout=10)
    assert not third.is_alive()
    writer.close()


def test_a_failing_write_stops_the_next_submit(tmp_path, monkeypatch):
    def full_disk(*args):
        raise CfgenError("no space left on the device while writing x.png")

    monkeypatch.setattr(writer_module, "write_strips", full_disk)
    with StripWriter(tmp_path, workers=1) as writer:
        future = writer.submit(*batch_of(["a"]))
        with pytest.raises(CfgenError, match="no space left"):
            future.result()
        with pytest.raises(CfgenError, match="no space left"):
            writer.submit(*batch_of(["b"]))
        with pytest.raises(CfgenError, match="no space left"):
            writer.records()
