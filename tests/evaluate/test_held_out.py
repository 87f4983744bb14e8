"""Held out by construction: bundles record their training data, the evaluation checks it."""

import pytest

from cfgen.cli import main
from cfgen.errors import ConfigError
from cfgen.evaluate.held_out import check_held_out, overlap, recorded_data
from tests.model_files import write_classifier_bundle
from tests.tiny_runs import tiny_classifier_args

SYNTHETIC = {
    "source": "synthetic",
    "root": None,
    "csv": None,
    "seed": 0,
    "splits": ["train", "val"],
}


def test_a_split_the_model_read_overlaps_and_other_faces_or_splits_do_not():
    assert "read the val split" in overlap(SYNTHETIC, "synthetic", None, "val", seed=0)
    assert overlap(SYNTHETIC, "synthetic", None, "test", seed=0) is None
    # The synthetic world draws other faces for another seed, whatever the split.
    assert overlap(SYNTHETIC, "synthetic", None, "train", seed=1) is None
    assert overlap(SYNTHETIC, "folder", "/data", "train", seed=0) is None


def test_a_folder_split_by_another_seed_may_hold_training_images(tmp_path):
    folder = {**SYNTHETIC, "source": "folder", "root": str(tmp_path.resolve()), "seed": 3}
    assert overlap(folder, "folder", str(tmp_path), "test", seed=3) is None
    assert "set seed: 3" in overlap(folder, "folder", str(tmp_path), "test", seed=0)
    assert overlap(folder, "folder", str(tmp_path / "other"), "test", seed=0) is None


def test_a_trained_classifier_records_its_data_and_queries_from_its_splits_are_refused(tmp_path):
    run = tmp_path / "run"
    args = tiny_classifier_args(run, max_steps=1) + ["--data.seed", "5"]
    assert main(["classifier", *args]) == 0
    bundle = str(run / "classifier.pt")
    record = recorded_data(bundle)
    assert record == {**SYNTHETIC, "seed": 5, "train_part": "all"}
    assert check_held_out({"judge": bundle}, "synthetic", None, "test", seed=5) == []
    with pytest.raises(ConfigError, match=r"not held out from the judge .*classifier\.pt: it read"):
        check_held_out({"judge": bundle}, "synthetic", None, "train", seed=5)
    # A bundle written without a record is listed as unchecked, never refused.
    other = write_classifier_bundle(tmp_path / "other.pt")
    assert check_held_out({"judge": other}, "synthetic", None, "train", seed=5) == ["judge"]
