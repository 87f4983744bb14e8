import threading

import pytest
import torch

from cfgen.data.inputs import QueryInput, open_input, prefetched
from cfgen.data.synthetic import SyntheticFaces
from cfgen.errors import ConfigError, DataError
from tests.data.fakes import attribute_folder, random_pixels, write_png


def batch_ids(batches):
    return [query_id for batch in batches for query_id in batch.ids]


def test_synthetic_input_renders_the_faces_of_the_split_batch_by_batch():
    queries = open_input("synthetic:val", 5, 16)
    batches = list(queries.batches(2))
    assert [len(b.ids) for b in batches] == [2, 2, 1]
    assert batch_ids(batches) == [f"val_{i:06d}" for i in range(5)]
    assert batches[2].sources == ["synthetic:val[4]"]
    images = torch.cat([b.images for b in batches])
    torch.testing.assert_close(images, SyntheticFaces(5, image_size=16, split="val").images)


def test_shards_read_disjoint_batches_that_cover_the_input():
    loaded = []
    queries = open_input("synthetic:test", 5, 16)
    queries = QueryInput(queries.ids, queries.sources, lambda a, b: loaded.append(a) or b)
    # 5 queries in batches of 2: batches 0 and 2 go to rank 0, batch 1 to rank 1.
    assert batch_ids(queries.batches(2, shard=(0, 2))) == [f"test_{i:06d}" for i in (0, 1, 4)]
    assert loaded == [0, 4]  # the other rank's batch is not read
    assert batch_ids(queries.batches(2, shard=(1, 2))) == [f"test_{i:06d}" for i in (2, 3)]


def test_the_queries_left_to_do_load_the_same_images_in_runs_of_consecutive_ones():
    queries = open_input("synthetic:test", 7, 16)
    reads = []
    load = queries.load
    queries = QueryInput(
        queries.ids, queries.sources, lambda a, b: reads.append((a, b)) or load(a, b)
    )
    done = {"test_000001", "test_000002", "test_000005"}
    todo = queries.without(done)
    assert todo.ids == ["test_000000", "test_000003", "test_000004", "test_000006"]
    images = torch.cat([batch.images for batch in todo.batches(3)])
    torch.testing.assert_close(
        images, SyntheticFaces(7, image_size=16, split="test").images[[0, 3, 4, 6]]
    )
    assert reads == [(0, 1), (3, 5), (6, 7)]  # batch 1: queries 0, 3 and 4; batch 2: query 6
    with pytest.raises(ConfigError, match="batch_size must be at least 1, got 0"):
        todo.batches(0)


def test_image_folder_reads_its_images_in_name_order_resized(tmp_path):
    write_png(tmp_path / "b.png", random_pixels(1, height=8, width=8))
    write_png(tmp_path / "a.jpg", random_pixels(2, height=12, width=16))  # PNG data, any suffix
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    write_png(tmp_path / "sub" / "c.png", random_pixels(3))  # only the top level is read
    queries = open_input(str(tmp_path), 0, 8)
    (batch,) = queries.batches(4)
    assert batch.ids == ["a", "b"] and batch.sources == [
        str(tmp_path / n) for n in ("a.jpg", "b.png")
    ]
    assert batch.images.shape == (2, 3, 8, 8)
    exact = torch.from_numpy(random_pixels(1)).permute(2, 0, 1).float() / 127.5 - 1.0
    torch.testing.assert_close(batch.images[1], exact)  # same size: not resampled


def test_attribute_folder_reads_its_rows_in_order(tmp_path):
    attribute_folder(tmp_path, [None] * 3, [[1, 0], [0, 1], [1, 1]])
    (batch,) = open_input(str(tmp_path), 0, 8).batches(8)
    assert batch.ids == ["000", "001", "002"]
    exact = torch.from_numpy(random_pixels(2)).permute(2, 0, 1).float() / 127.5 - 1.0
    torch.testing.assert_close(batch.images[2], exact)


def test_files_are_read_with_the_explainers_channels(tmp_path):
    write_png(tmp_path / "colour.png", random_pixels(0))
    write_png(tmp_path / "grey.png", random_pixels(1, channels=1))
    colour = next(open_input(str(tmp_path), 0, 8).batches(2)).images
    grey = next(open_input(str(tmp_path), 0, 8, channels=1).batches(2)).images
    assert colour.shape == (2, 3, 8, 8) and grey.shape == (2, 1, 8, 8)
    exact = torch.from_numpy(random_pixels(1, channels=1)).float() / 127.5 - 1.0
    torch.testing.assert_close(grey[1, 0], exact)  # a grey file stays exact
    torch.testing.assert_close(colour[1], exact.expand(3, 8, 8))  # three equal channels
    luminance = colour[0] * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)  # ITU-R 601-2
    torch.testing.assert_close(grey[0, 0], luminance.sum(dim=0), atol=1 / 127.5, rtol=0)


def test_bad_inputs_are_refused_before_any_image_is_read(tmp_path):
    with pytest.raises(DataError, match="neither a folder nor 'synthetic:SPLIT'"):
        open_input(str(tmp_path / "missing"), 0, 8)
    with pytest.raises(DataError, match="no images in"):
        open_input(str(tmp_path), 0, 8)
    write_png(tmp_path / "face.png", random_pixels(0))
    write_png(tmp_path / "face.jpg", random_pixels(1))
    with pytest.raises(
        DataError, match="face.jpg and .*face.png would both be written as strips/face.png"
    ):
        open_input(str(tmp_path), 0, 8)


def test_prefetched_yields_every_item_and_raises_the_producers_error_in_place():
    assert list(prefetched(iter(range(10)), depth=2)) == list(range(10))

    def failing():
        yield 1
        raise DataError("cannot read image x.png")

    items = prefetched(failing())
    assert next(items) == 1
    with pytest.raises(DataError, match="cannot read image x.png"):
        next(items)


def test_prefetched_stops_its_thread_when_the_consumer_stops():
    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    items = prefetched(endless(), depth=2)
    assert next(items) == 0
    items.close()
    assert not any(t.name == "cfgen-prefetch" for t in threading.enumerate())
    assert len(produced) <= 4  # one taken, `depth` buffered, one waiting to be put
