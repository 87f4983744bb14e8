"""Settings a checkpoint file would put over the command line's, named before Lightning reads it."""

from pathlib import Path

import pytest
from jsonargparse import Namespace

from cfgen.errors import ConfigError
from cfgen.train.resume_checks import overridden_settings, require_same_settings

SAVED = {
    "hyper_parameters": {
        "n_bins": 10,
        "generator": {"width": 8, "output": "blend"},
        "optimisation": {"betas": (0.0, 0.9)},
        "classifier": "runs/c/classifier.pt",
        "_instantiator": "lightning's own",
    }
}


def given(**changes) -> Namespace:
    config = Namespace(
        n_bins=10,
        generator=Namespace(width=8, output="blend"),
        optimisation=Namespace(betas=[0.0, 0.9]),  # YAML gives a list where torch.save kept a tuple
        classifier=Path("runs/c/classifier.pt"),
    )
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            setattr(config[section], name, value)
        else:
            setattr(config, section, value)
    return config


def test_the_same_settings_written_another_way_are_not_a_change():
    assert overridden_settings(SAVED, given()) == []


def test_each_changed_setting_is_named_with_both_values():
    changed = overridden_settings(SAVED, given(generator__width=4, n_bins=6))
    assert changed == [
        "model.generator.width is 8 in the checkpoint, 4 here",
        "model.n_bins is 10 in the checkpoint, 6 here",
    ]


def test_fit_refuses_a_change_and_test_goes_on_with_a_note(capsys):
    with pytest.raises(ConfigError, match=r"model.generator.width is 8 in the checkpoint, 4 here"):
        require_same_settings("last.ckpt", SAVED, given(generator__width=4), "fit")
    require_same_settings("last.ckpt", SAVED, given(generator__width=4), "test")
    assert capsys.readouterr().err == (
        "note: last.ckpt is read with its own settings, not these: "
        "model.generator.width is 8 in the checkpoint, 4 here\n"
    )
    require_same_settings("last.ckpt", SAVED, given(), "fit")  # nothing changed: resumes


def test_a_long_list_of_changes_is_cut_to_four_and_counted():
    changes = {"n_bins": 3, "generator__width": 4, "generator__output": "image"}
    config = given(**changes, classifier="other.pt", optimisation__betas=[0.5, 0.9])
    with pytest.raises(ConfigError, match=r"\(and 1 more\)"):
        require_same_settings("last.ckpt", SAVED, config, "fit")
