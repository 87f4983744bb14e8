"""A split whose target holds one class: training refuses it, validation and test warn, and an
AUC that cannot exist is printed as undefined, not as the 0 torchmetrics reports."""

import pytest
import pytorch_lightning as pl

from cfgen.cli import main
from cfgen.data.datamodule import AttributeDataModule
from cfgen.errors import DataError
from cfgen.train.classifier import ClassifierModule
from tests.data.fakes import random_pixels, write_csv, write_png


def folder(root, labels: dict[str, list[int]]):
    """An attribute folder with a split column: `labels[split]` of `Smiling`, one image each."""
    rows = []
    for split, values in labels.items():
        for label in values:
            name = f"images/{len(rows):03d}.png"
            write_png(root / name, random_pixels(len(rows), 16, 16))
            rows.append([name, split, label])
    return write_csv(root / "attributes.csv", ["file", "split", "Smiling"], rows).parent


def fit_args(data, run) -> list[str]:
    return ["classifier", "fit", "--data.source", "folder", "--data.root", str(data),
            "--data.target", "Smiling", "--data.image_size", "16", "--trainer.max_steps", "2",
            "--trainer.default_root_dir", str(run), "--logger", "none",
            "--trainer.enable_progress_bar", "false"]  # fmt: skip


def test_a_test_split_of_one_class_is_warned_about_and_its_auc_is_undefined(tmp_path, capsys):
    data = folder(tmp_path / "data", {"train": [1, 0, 1, 0], "val": [1, 0], "test": [0, 0]})
    assert main(fit_args(data, tmp_path / "run")) == 0
    out, err = capsys.readouterr()
    assert "warning: the test split has no positive 'Smiling' image (2 negative, 0 positive)" in err
    assert "warning: the val split" not in err
    summary = next(line for line in out.splitlines() if line.startswith("classifier target"))
    assert summary.startswith("classifier target 'Smiling': test auc undefined, acc ")
    assert (tmp_path / "run" / "classifier.pt").is_file()


def test_a_test_split_of_both_classes_prints_its_auc(tmp_path, capsys):
    data = folder(tmp_path / "data", {"train": [1, 0, 1, 0], "val": [1, 0], "test": [0, 1]})
    assert main(fit_args(data, tmp_path / "run")) == 0
    out, err = capsys.readouterr()
    assert "warning: the" not in err
    assert "undefined" not in out and "classifier target 'Smiling': test auc " in out


def test_the_module_refuses_a_train_split_of_one_class_outside_the_command_line(tmp_path):
    data = folder(tmp_path / "data", {"train": [1, 1], "val": [1, 0], "test": [1, 0]})
    module = AttributeDataModule(
        source="folder", root=str(data), target="Smiling", image_size=16, batch_size=2
    )
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with pytest.raises(DataError, match=r"the train split has no negative 'Smiling' image \(0 "):
        trainer.fit(ClassifierModule(), datamodule=module)
    assert module.target_counts("val") == (1, 1)
