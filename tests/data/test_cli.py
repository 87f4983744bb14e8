import subprocess
import sys

import numpy as np
import pytest
import torch

from cfgen.cli import main as cfgen_main
from cfgen.data.cli import main, split_sizes
from cfgen.data.folders import AttributeFolder, folder_splits
from cfgen.data.synthetic import REGION_NAMES, SyntheticFaces
from cfgen.errors import CfgenError, ConfigError


def test_split_sizes():
    assert split_sizes(20, "all") == {"train": 16, "val": 2, "test": 2}
    assert split_sizes(7, "val") == {"val": 7}


def test_written_world_reads_back_as_the_in_memory_one(tmp_path):
    options = ["--n", "20", "--size", "16", "--seed", "2"]
    confound = ["--confound-factor", "glasses", "--confound-strength", "0.9"]
    assert main(["synth", "--out", str(tmp_path), *options, *confound]) == 0
    train, val, test = folder_splits(tmp_path, image_size=16)
    memory = SyntheticFaces(
        16, image_size=16, seed=2, confound_factor="glasses", confound_strength=0.9
    )
    images = torch.stack([train[i]["image"] for i in range(len(train))])
    # PNGs hold 8 bits: at most half a step of 2 / 255 away.
    torch.testing.assert_close(images, memory.images, atol=1 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(train.labels, memory.labels)
    assert train.attribute_names == memory.attribute_names
    memory_test = SyntheticFaces(2, image_size=16, seed=2, split="test")
    torch.testing.assert_close(test.labels, memory_test.labels)
    stored = np.load(tmp_path / "masks.npz")
    assert list(stored["region_names"]) == list(REGION_NAMES)
    assert stored["masks"].shape == (20, len(REGION_NAMES), 16, 16)
    torch.testing.assert_close(torch.from_numpy(stored["masks"][:16]), memory.masks)
    factors = np.loadtxt(
        tmp_path / "factors.csv",
        delimiter=",",
        skiprows=1,
        usecols=range(2, 2 + memory.factors.shape[1]),
        max_rows=16,
    )
    torch.testing.assert_close(torch.from_numpy(factors).float(), memory.factors)


def test_one_split_and_bad_options(tmp_path):
    main(["synth", "--out", str(tmp_path / "val"), "--n", "3", "--size", "16", "--split", "val"])
    data = AttributeFolder(tmp_path / "val", split="val", image_size=16)
    torch.testing.assert_close(data.labels, SyntheticFaces(3, 16, split="val").labels)
    with pytest.raises(ConfigError, match="--size"):
        main(["synth", "--out", str(tmp_path / "small"), "--n", "3", "--size", "8"])
    with pytest.raises(ConfigError, match="confound_factor"):
        main(["synth", "--out", str(tmp_path / "x"), "--n", "3", "--confound-factor", "hat"])
    assert not (tmp_path / "small").exists() and not (tmp_path / "x").exists()
    with pytest.raises(CfgenError, match="not empty"):
        main(["synth", "--out", str(tmp_path / "val"), "--n", "3", "--size", "16"])


def test_cfgen_data_synth_command(tmp_path, capsys):
    out = tmp_path / "world"
    command = ["data", "synth", "--out", str(out), "--n", "10", "--size", "16"]
    done = subprocess.run(
        [sys.executable, "-m", "cfgen.cli", *command], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 10 faces" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "attributes.csv",
        "factors.csv",
        "images",
        "masks.npz",
        "world.json",
    ]
    # The dispatcher turns the refusal into exit status 2 and one line, no traceback.
    assert cfgen_main(command) == 2
    assert capsys.readouterr().err.startswith("error: output folder")
