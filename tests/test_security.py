"""Security: no file a user hands to cfgen can run code; outputs never leave their folder.

Every entry point that takes a model file is fed a crafted pickle whose loading would create a
marker file: it must be refused with a clear message, and the marker must not exist. Output
folders are not overwritten unless told, and names from CSVs cannot climb out (`../`).
"""

import sys

import pytest

from cfgen.cli import main
from cfgen.errors import CheckpointError, ConfigError
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.models.blackbox import load_blackbox
from cfgen.models.oracle import load_oracle
from tests.data.fakes import random_pixels, write_csv, write_png
from tests.model_files import write_crafted_export, write_crafted_pickle, write_model_pair

REFUSED = "would run code when unpickled"


@pytest.fixture
def marker(tmp_path):
    """The file a crafted pickle creates if it ever gets unpickled."""
    path = tmp_path / "code_ran.txt"
    yield path
    assert not path.exists(), "a crafted pickle ran code"


@pytest.fixture(params=[False, True], ids=["raw-pickle", "torch-zip"])
def crafted(request, tmp_path, marker):
    """A crafted pickle, raw or in torch's zip layout, named like a model file."""
    return write_crafted_pickle(tmp_path / "model.pt", marker, as_torch_zip=request.param)


@pytest.fixture
def models(tmp_path):
    return write_model_pair(tmp_path / "models")


def cfgen(argv, capsys) -> tuple[int, str]:
    """Run `cfgen ARGV` in-process; exit code and stderr."""
    code = main([str(arg) for arg in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "load",
    [
        lambda path: load_blackbox(str(path)),
        load_oracle,
        ProgressiveExaggeration.from_checkpoint,
    ],
    ids=["classifier", "oracle", "explainer"],
)
def test_python_api_refuses_crafted_pickles(crafted, load):
    with pytest.raises(CheckpointError, match=REFUSED):
        load(crafted)


def test_crafted_torch_export_classifier_is_refused(tmp_path, models, capsys):
    import torch

    marker = tmp_path / "export_code_ran.txt"
    crafted = write_crafted_export(tmp_path / "classifier.pt2", marker)
    with pytest.raises(CheckpointError, match="as pickles, which would run code"):
        load_blackbox(str(crafted))
    _, explainer = models
    argv = ["generate", "--checkpoint", explainer, "--classifier", crafted]
    argv += ["--allow-classifier-mismatch", "--input", "synthetic:test", "--out", tmp_path / "o"]
    code, err = cfgen(argv, capsys)
    assert code == 2
    assert "as pickles, which would run code" in err
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 -- torch fails after unpickling the weight...
        torch.export.load(str(crafted))
    assert marker.exists()  # ...so plain torch.export.load did run its code: the check matters


def test_crafted_training_checkpoint_as_explainer_is_refused(tmp_path, marker):
    ckpt = write_crafted_pickle(tmp_path / "last.ckpt", marker, as_torch_zip=True)
    with pytest.raises(CheckpointError, match=REFUSED):
        ProgressiveExaggeration.from_checkpoint(ckpt)


def test_generate_refuses_a_crafted_explainer(crafted, tmp_path, capsys):
    code, err = cfgen(
        ["generate", "--checkpoint", crafted, "--input", "synthetic:test", "--out", tmp_path / "o"],
        capsys,
    )
    assert code == 2
    assert REFUSED in err and str(crafted) in err


def test_generate_refuses_a_crafted_classifier(crafted, models, tmp_path, capsys):
    _, explainer = models
    argv = ["generate", "--checkpoint", explainer, "--classifier", crafted]
    argv += ["--allow-classifier-mismatch", "--input", "synthetic:test", "--out", tmp_path / "o"]
    code, err = cfgen(argv, capsys)
    assert code == 2
    assert REFUSED in err


def test_evaluate_refuses_a_crafted_explainer(crafted, tmp_path, capsys):
    code, err = cfgen(["evaluate", "--explainer", crafted, "--out", tmp_path / "eval"], capsys)
    assert code == 2
    assert REFUSED in err


def test_evaluate_refuses_a_crafted_oracle(crafted, models, tmp_path, capsys):
    _, explainer = models
    argv = ["evaluate", "--explainer", explainer, "--oracle", crafted, "--n_queries", "4"]
    code, err = cfgen([*argv, "--n_real", "0", "--out", tmp_path / "eval"], capsys)
    assert code == 2
    assert REFUSED in err


def test_explainer_training_refuses_a_crafted_classifier(crafted, tmp_path, capsys):
    argv = ["explainer", "fit", "--trainer.default_root_dir", tmp_path / "run"]
    code, err = cfgen([*argv, "--logger", "none", "--model.classifier", crafted], capsys)
    assert code == 2
    assert REFUSED in err


def test_training_refuses_to_resume_from_a_crafted_checkpoint(tmp_path, marker, capsys):
    ckpt = write_crafted_pickle(tmp_path / "last.ckpt", marker, as_torch_zip=True)
    argv = ["classifier", "fit", "--trainer.default_root_dir", tmp_path / "run"]
    code, err = cfgen([*argv, "--logger", "none", "--ckpt_path", ckpt], capsys)
    assert code == 2
    assert REFUSED in err and str(ckpt) in err


def test_resume_forces_weights_only_even_when_the_environment_disables_it(
    tmp_path, marker, capsys, monkeypatch
):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    ckpt = write_crafted_pickle(tmp_path / "last.ckpt", marker, as_torch_zip=True)
    argv = ["classifier", "fit", "--trainer.default_root_dir", tmp_path / "run"]
    code, err = cfgen([*argv, "--logger", "none", "--ckpt_path", ckpt], capsys)
    assert code == 2
    assert REFUSED in err


def test_import_path_classifier_needs_explicit_permission(tmp_path, monkeypatch):
    # A module that announces any import of it: the refusal must come before the import.
    (tmp_path / "user_classifier.py").write_text(
        "open(__file__ + '.imported', 'w').write('x')\ndef build():\n    return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="would import and run Python code"):
        load_blackbox("user_classifier:build")
    assert not (tmp_path / "user_classifier.py.imported").exists()
    assert "user_classifier" not in sys.modules


@pytest.mark.parametrize("mismatch", [[], ["--allow-classifier-mismatch"]])
def test_generate_never_imports_a_classifier_named_as_module(models, tmp_path, capsys, mismatch):
    (tmp_path / "cli_classifier.py").write_text("open(__file__ + '.imported', 'w').write('x')\n")
    _, explainer = models
    argv = ["generate", "--checkpoint", explainer, "--classifier", "cli_classifier:build"]
    argv += [*mismatch, "--input", "synthetic:test", "--out", tmp_path / "o"]
    code, err = cfgen(argv, capsys)
    assert code == 2
    assert "cli_classifier:build" in err
    assert not (tmp_path / "cli_classifier.py.imported").exists()


# --- output paths ---------------------------------------------------------------------------


def test_generate_refuses_a_non_empty_output_folder_unless_told(models, tmp_path, capsys):
    _, explainer = models
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("earlier work")
    argv = ["generate", "--checkpoint", explainer, "--input", "synthetic:test", "--n", "2"]
    code, err = cfgen([*argv, "--out", out], capsys)
    assert code == 2
    assert "is not empty" in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["earlier.txt"]
    assert cfgen([*argv, "--out", out, "--overwrite"], capsys)[0] == 0
    assert (out / "earlier.txt").read_text() == "earlier work"
    assert (out / "strips.json").is_file()


def test_data_synth_refuses_a_non_empty_output_folder(tmp_path, capsys):
    out = tmp_path / "world"
    out.mkdir()
    (out / "attributes.csv").write_text("precious")
    code, err = cfgen(["data", "synth", "--out", out, "--n", "4", "--size", "16"], capsys)
    assert code == 2
    assert "is not empty" in err
    assert (out / "attributes.csv").read_text() == "precious"


def test_evaluate_refuses_a_non_empty_output_folder(models, tmp_path, capsys):
    _, explainer = models
    out = tmp_path / "eval"
    out.mkdir()
    (out / "results.json").write_text("{}")
    code, err = cfgen(["evaluate", "--explainer", explainer, "--out", out], capsys)
    assert code == 2
    assert "is not empty" in err
    assert (out / "results.json").read_text() == "{}"


@pytest.mark.parametrize("name", ["../outside.png", "/tmp/absolute.png", "images/../../up.png"])
def test_csv_file_names_cannot_climb_out_of_the_folder(models, tmp_path, capsys, name):
    _, explainer = models
    data = tmp_path / "data"
    write_png(data / "images" / "ok.png", random_pixels(0, 16, 16))
    write_png(tmp_path / "outside.png", random_pixels(1, 16, 16))
    write_csv(data / "attributes.csv", ["file", "Smiling"], [["images/ok.png", 1], [name, 0]])
    out = tmp_path / "strips"
    argv = ["generate", "--checkpoint", explainer, "--input", data, "--out", out]
    code, err = cfgen(argv, capsys)
    assert code == 2
    assert "row 2" in err and "unsafe file name" in err
    assert not out.exists() or not any(out.iterdir())
