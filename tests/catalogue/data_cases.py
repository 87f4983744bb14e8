"""Catalogue cases of data: images, CSVs, splits and the queries' tensors."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cfgen.cli import main
from cfgen.data.datamodule import AttributeDataModule
from cfgen.data.folders import AttributeFolder
from cfgen.data.images import load_image
from cfgen.data.inputs import open_input
from tests.catalogue.workspace import (
    Case,
    Workspace,
    attribute_folder,
    autoencoder_file,
    evaluate_latent_shift,
    explainer,
    fit,
    generate,
    split_folder,
)
from tests.data.fakes import random_pixels, write_png
from tests.model_files import IMAGE_SIZE


def folder_with_file(ws: Workspace, content: bytes) -> Path:
    data = attribute_folder(ws, [["images/good.png", 1], ["images/bad.png", 0]])
    (data / "images" / "bad.png").write_bytes(content)
    return data


def same_stem_twice(ws: Workspace) -> Path:
    """`face.png` and `face.jpg`: one strip file name for two queries."""
    folder = ws.root / "photos"
    write_png(folder / "face.png", random_pixels(0, IMAGE_SIZE, IMAGE_SIZE))
    write_png(folder / "face.jpg", random_pixels(1, IMAGE_SIZE, IMAGE_SIZE))
    return folder


def small_pixel_limit(ws: Workspace) -> Path:
    """A folder of one 16 x 16 image, and PIL's decompression-bomb limit lowered to 100 pixels
    so that it counts as a bomb (a real one would take gigabytes to write)."""
    from PIL import Image

    ws.monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    return attribute_folder(ws, [["images/good.png", 1]])


def with_nan(ws: Workspace) -> object:
    pe = explainer(ws)
    images = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    pe.exaggerate(images)  # the classifier's first-use checks pass on clean images...
    images[1, 0, 3, 3] = float("nan")
    return pe.exaggerate(images)  # ...and a NaN later is still caught


def empty_test_split(ws: Workspace) -> None:
    rows = [["images/good.png", "train", 1], ["images/good.png", "val", 0]]
    data = attribute_folder(ws, rows, header=("file", "split", "Smiling"))
    AttributeDataModule(source="folder", root=str(data), image_size=16).setup()


def csv_folder(ws: Workspace, text: bytes) -> Path:
    """`data/` with one good image and an `attributes.csv` of exactly these bytes."""
    data = attribute_folder(ws, [["images/good.png", 1]])
    (data / "attributes.csv").write_bytes(text)
    return data


def grey_pixels() -> np.ndarray:
    """A grey 16 px image (H, W) uint8 that spans the whole 8-bit range."""
    pixels = random_pixels(0, IMAGE_SIZE, IMAGE_SIZE, channels=1)
    pixels[0, :2] = (0, 255)
    return pixels


def deep_images_read_as_eight_bit(ws: Workspace) -> None:
    """A 16-bit PNG and a float TIFF in [0, 1] read as the same image saved with 8 bits, by
    every loader (the queries of `cfgen generate`, data sets); PIL alone saturates them."""
    photos = ws.root / "photos"
    pixels = grey_pixels()
    write_png(photos / "a_eight.png", pixels)
    Image.fromarray(pixels.astype(np.uint16) * 257).save(photos / "b_sixteen.png")
    Image.fromarray(pixels.astype(np.float32) / 255).save(photos / "c_float.tif")
    modes = [Image.open(photos / name).mode for name in ("b_sixteen.png", "c_float.tif")]
    assert modes == ["I;16", "F"]
    (batch,) = open_input(str(photos), 0, IMAGE_SIZE, channels=1).batches(3)
    torch.testing.assert_close(batch.images[1], batch.images[0])
    torch.testing.assert_close(batch.images[2], batch.images[0])
    rgb = load_image(photos / "b_sixteen.png", IMAGE_SIZE, channels=3)
    torch.testing.assert_close(rgb, batch.images[0].expand(3, -1, -1))


def float_image_out_of_range(ws: Workspace) -> Path:
    """A float TIFF holding 0..255 (not [0, 1]): what it means is not for cfgen to guess."""
    photos = ws.root / "photos"
    photos.mkdir()
    Image.fromarray(grey_pixels().astype(np.float32)).save(photos / "scan.tif")
    return photos


def bom_csv_is_read(ws: Workspace) -> None:
    """Excel's "CSV UTF-8" starts with a byte-order mark: the first column is still `file`."""
    data = csv_folder(ws, "\ufefffile,Smiling\nimages/good.png,1\n".encode())
    folder = AttributeFolder(data, image_size=IMAGE_SIZE, target="Smiling")
    assert folder.attribute_names == ["Smiling"] and len(folder) == 1
    assert open_input(str(data), 0, IMAGE_SIZE).ids == ["good"]


def one_class_split(ws: Workspace, labels: dict[str, list[int]]) -> Path:
    """A split folder whose target `Smiling` holds `labels[split]` (one image per label)."""
    rows = [
        ["images/good.png", split, label] for split, values in labels.items() for label in values
    ]
    return attribute_folder(ws, rows, header=("file", "split", "Smiling"))


def fit_with_a_one_class_test_split(ws: Workspace) -> list:
    """Training a classifier whose test split has no positive (into a folder of its own: it
    succeeds)."""
    data = one_class_split(ws, {"train": [1, 0], "val": [1, 0], "test": [0]})
    return fit(ws, "--data.source", "folder", "--data.root", data, "--data.target", "Smiling",
               "--trainer.default_root_dir", ws.root / "one_class_run")  # fmt: skip


def one_attribute_oracle(ws: Workspace) -> None:
    """An attribute oracle of a folder with a single attribute column trains and exports."""
    data = one_class_split(ws, {"train": [1, 0, 1, 0], "val": [1, 0], "test": [1, 0]})
    run = ws.root / "oracle_run"
    argv = ["oracle", "fit", "--data.source", "folder", "--data.root", data, "--model.kind",
            "attributes", "--data.image_size", IMAGE_SIZE, "--trainer.max_steps", "1",
            "--trainer.default_root_dir", run, "--logger", "none"]  # fmt: skip
    assert main([str(arg) for arg in argv]) == 0
    assert (run / "oracle.pt").is_file()


DATA_CASES = [
    Case("data-corrupt-image",
         argv=lambda ws: generate(ws, folder_with_file(ws, b"not a png"))),
    Case("data-empty-image",
         argv=lambda ws: generate(ws, folder_with_file(ws, b""))),
    Case("data-decompression-bomb",
         argv=lambda ws: generate(ws, small_pixel_limit(ws))),
    Case("data-missing-image",
         argv=lambda ws: generate(ws, attribute_folder(ws, [["images/absent.png", 1]]))),
    Case("data-csv-missing-column",
         call=lambda ws: AttributeFolder(attribute_folder(ws, [["images/good.png", 1]],
                                                          header=("path", "Smiling")))),
    Case("data-csv-empty",
         call=lambda ws: (attribute_folder(ws, []) / "attributes.csv").write_text("")
         or AttributeFolder(ws.root / "data")),
    Case("data-label-not-binary",
         call=lambda ws: AttributeFolder(attribute_folder(ws, [["images/good.png", 2]]),
                                         target="Smiling")),
    Case("data-no-target",
         argv=lambda ws: fit(ws, "--data.source", "folder", "--data.root", split_folder(ws))),
    Case("data-blank-class-label",
         argv=lambda ws: fit(ws, "--data.source", "folder", "--data.target", "digit=3",
                             "--data.root", split_folder(ws, ["3", "", "4"]))),
    Case("data-unsafe-file-name",
         argv=lambda ws: generate(ws, attribute_folder(ws, [["../x.png", 1]]))),
    Case("data-empty-split",
         call=empty_test_split),
    Case("data-wrong-size",
         call=lambda ws: explainer(ws).exaggerate(torch.zeros(2, 3, 32, 32))),
    Case("data-wrong-channels",
         call=lambda ws: explainer(ws).exaggerate(torch.zeros(2, 1, 16, 16))),
    Case("data-not-scaled",
         call=lambda ws: explainer(ws).exaggerate(torch.linspace(0, 255, 1536).view(2, 3, 16, 16))),
    Case("data-nan-in-inputs", call=with_nan),
    Case("data-empty-batch",
         call=lambda ws: explainer(ws).exaggerate(torch.zeros(0, 3, 16, 16))),
    Case("data-duplicate-query-ids",
         argv=lambda ws: generate(ws, same_stem_twice(ws))),
    Case("data-input-missing",
         argv=lambda ws: generate(ws, ws.root / "absent")),
    Case("data-no-images",
         argv=lambda ws: generate(ws, (ws.root / "empty").mkdir() or ws.root / "empty")),
    Case("data-autoencoder-wrong-size",
         argv=lambda ws: evaluate_latent_shift(
             ws, f"{{latent_shift: {{autoencoder: {autoencoder_file(ws, 32)}}}}}")),
    Case("data-16-bit-image", accepted=deep_images_read_as_eight_bit),
    Case("data-float-image-out-of-range",
         argv=lambda ws: generate(ws, float_image_out_of_range(ws))),
    Case("data-csv-bom", accepted=bom_csv_is_read),
    Case("data-csv-header-only",
         argv=lambda ws: generate(ws, csv_folder(ws, b"file,Smiling\n"))),
    Case("data-csv-not-utf8",
         argv=lambda ws: generate(ws, csv_folder(
             ws, "file,Lächeln\nimages/good.png,1\n".encode("latin-1")))),
    Case("data-csv-duplicate-column",
         argv=lambda ws: fit(ws, "--data.source", "folder", "--data.root", csv_folder(
             ws, b"file,Smiling,Smiling\nimages/good.png,1,0\n"))),
    Case("data-csv-short-row",
         argv=lambda ws: fit(ws, "--data.source", "folder", "--data.root", csv_folder(
             ws, b"file,split,Smiling\nimages/good.png,train,1\nimages/good.png,val\n"))),
    Case("data-csv-long-row",
         argv=lambda ws: generate(ws, csv_folder(ws, b"file,Smiling\nimages/good.png,1,0\n"))),
    Case("data-csv-blank-file-name",
         argv=lambda ws: generate(ws, attribute_folder(ws, [["images/good.png", 1], ["", 0]]))),
    Case("data-synthetic-n-zero",
         argv=lambda ws: generate(ws, "synthetic:test", "--n", "0")),
    Case("data-train-split-one-class",
         argv=lambda ws: fit(ws, "--data.source", "folder", "--data.target", "Smiling",
                             "--data.root", one_class_split(
                                 ws, {"train": [1], "val": [1, 0], "test": [1, 0]}))),
    Case("data-test-split-one-class", argv=fit_with_a_one_class_test_split, exit_code=0),
    Case("data-one-attribute-oracle", accepted=one_attribute_oracle),
]  # fmt: skip
