"""cfgen: explain image classifiers with counterfactuals (Progressive Exaggeration).

    import cfgen

    classifier = cfgen.load_blackbox("smile.torchscript.pt", output=1, activation="softmax")
    explainer = cfgen.ProgressiveExaggeration.from_checkpoint("runs/pe/explainer.pt")
    strip = explainer.exaggerate(x)        # x: (N, C, H, W) in [-1, 1]
    maps = cfgen.build_explainer("integrated_gradients", classifier).explain(x)

The names below are the public API; each is imported on first use (PEP 562), so `import cfgen`
and `cfgen --help` load neither torch nor Lightning. `target` in every `explain(x, target)` is a
posterior of the explained class in [0, 1] (None: the far end opposite to each query's
decision), not a class index as in captum: the black box fixes the class (its `output`).
`cfgen.evaluate` is the evaluation's subpackage; `cfgen.run_evaluation(config)` runs the suite.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    # the black box
    "BlackBox": "cfgen.models.blackbox_adapter",
    "load_blackbox": "cfgen.models.blackbox",
    "as_blackbox": "cfgen.models.blackbox",
    # explaining
    "Explainer": "cfgen.explain.base",
    "CounterfactualExplainer": "cfgen.explain.base",
    "ProgressiveExaggeration": "cfgen.explain.progressive",
    "Strip": "cfgen.explain.strip",
    "build_explainer": "cfgen.explain.registry",
    "explainer_options": "cfgen.explain.registry",
    "EXPLAINERS": "cfgen.explain.registry",
    "open_input": "cfgen.data.inputs",
    "generate_strips": "cfgen.explain.generate",
    # training an explainer
    "ExplainerModule": "cfgen.train.explainer",
    "ExplainerDataModule": "cfgen.train.explainer_data",
    "fit_explainer": "cfgen.train.explainer_fit",
    "GeneratorOptions": "cfgen.models.generator",
    "DiscriminatorOptions": "cfgen.train.explainer_options",
    "LossWeights": "cfgen.train.explainer_options",
    "ClassifierTerm": "cfgen.train.explainer_options",
    "Optimisation": "cfgen.train.explainer_options",
    "Averaging": "cfgen.train.explainer_options",
    # data
    "AttributeDataModule": "cfgen.data.datamodule",
    # evaluating
    "SuiteConfig": "cfgen.evaluate.loading",
    "EvalData": "cfgen.evaluate.loading",
    "SuiteInputs": "cfgen.evaluate.loading",
    "EvalContext": "cfgen.evaluate.scoring",
    "score_counterfactual": "cfgen.evaluate.suite",
    "run_evaluation": "cfgen.evaluate.suite:evaluate",
    # errors
    "CfgenError": "cfgen.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """The public name `name`, imported from its module on first use (then cached here)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cfgen' has no attribute {name!r}")
    module, _, attribute = _EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
