"""The public API at the package's top: every name resolves, lazily."""

import subprocess
import sys

import pytest

import cfgen


@pytest.mark.parametrize("name", sorted(set(cfgen.__all__) - {"__version__"}))
def test_every_public_name_resolves_to_the_object_of_its_module(name):
    import importlib

    module, _, attribute = cfgen._EXPORTS[name].partition(":")
    assert getattr(cfgen, name) is getattr(importlib.import_module(module), attribute or name)
    assert name in dir(cfgen)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'ProgressiveExageration'"):
        cfgen.ProgressiveExageration  # noqa: B018


def test_importing_cfgen_loads_neither_torch_nor_lightning():
    code = (
        "import sys, cfgen\n"
        "heavy = [m for m in ('torch', 'pytorch_lightning', 'lightning', 'jsonargparse')"
        " if m in sys.modules]\n"
        "print(heavy, cfgen.__version__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", cfgen.__version__]


def test_the_evaluation_runs_as_run_evaluation_and_the_subpackage_stays_a_module():
    from cfgen.evaluate import suite

    assert cfgen.run_evaluation is suite.evaluate
    assert cfgen.evaluate is sys.modules["cfgen.evaluate"]
