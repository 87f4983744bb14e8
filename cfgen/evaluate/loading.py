"""What `cfgen evaluate` runs and on what: its config, and the inputs built from files.

`SuiteConfig` is the command's options; `load_inputs(config)` builds the `SuiteInputs` that
`cfgen.evaluate.suite.run_suite` scores: explainers, classifier, and the context of queries,
reference sets, oracle and judges (`cfgen.evaluate.build`). Every model file is loaded safely
(`weights_only` bundles). A contradiction between the data, the classifier and the explainer is
an error.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cfgen.data.datamodule import AttributeDataModule
from cfgen.errors import ClassifierMismatchError, ConfigError
from cfgen.evaluate.bias import BiasConfig
from cfgen.evaluate.build import SPLITS, build_context, data_module
from cfgen.evaluate.context import EvalContext
from cfgen.evaluate.held_out import check_held_out
from cfgen.evaluate.maps import MAP_SCORES
from cfgen.evaluate.scoring import COUNTERFACTUAL_SCORES
from cfgen.explain.base import Classifier, CounterfactualExplainer, Explainer
from cfgen.explain.progressive import (
    PLACEMENT_STEPS,
    ProgressiveExaggeration,
    load_explainer_bundle,
)
from cfgen.explain.registry import build_explainer, is_counterfactual

DEFAULT_BASELINES = [
    "gradient",
    "smoothgrad",
    "integrated_gradients",
    "guided_backprop",
    "gradcam",
    "occlusion",
    "lime",
    "kernelshap",
    "second_order",
]

# Methods that cost about a second per query or more on a CPU: a table's methods are all scored on
# the first queries that its slowest method can afford (`cfgen.evaluate.suite.table_sizes`).
SLOW_METHOD_QUERIES = {
    "optimisation": 100,
    "lime": 100,
    "kernelshap": 100,
    "second_order": 100,
}
# Counterfactual baselines whose maps' robustness checks would re-run a per-query optimisation
# some twenty times per query: left out of the robustness group (skipped with this reason).
COSTLY_ROBUSTNESS = ["pgd", "fgsm", "optimisation", "latent_shift"]


@dataclass
class EvalData:
    """Where the evaluation's images come from: the options of the training data module
    (`cfgen.data.datamodule.AttributeDataModule`) that choose the images.

    source: synthetic, folder, celeba or chexpert; root, csv, attributes, uncertain: as for
    training. target, image_size, channels: default the classifier's (and the explainer's image
    size when the classifier records none). The sizes of the splits are the suite's `n_queries`
    and `n_real`, the seed is the suite's `seed`, and the images are never confounded.
    """

    source: str = "synthetic"
    root: str | None = None
    csv: str | None = None
    attributes: list[str] | None = None
    target: str | None = None
    image_size: int | None = None
    channels: int | None = None
    uncertain: str = "zeros"


@dataclass
class SuiteConfig:
    """What `cfgen evaluate` runs. YAML files in `configs/evaluate/` override these defaults.

    explainer: the PE bundle (`explainer.pt`). It is scored twice: `pe`, the frames as the
    generator draws them, and, when `placement_steps` > 0, `pe_placed`, each frame drawn outside
    its bin placed by bisecting the generator's conditioning on the explained classifier's
    output (`ProgressiveExaggeration`). classifier: the black box (default: the one the
    explainer recorded; another one only with allow_classifier_mismatch), read with
    `classifier_output` / `classifier_activation` (default: as recorded); data: the images
    (`EvalData`; default the synthetic world).

    Judges: oracle: a factor oracle (synthetic world) or an attribute oracle (`cfgen oracle
    fit`) whose *reading* of the attribute gives validity, and whose other outputs give
    preservation, realism features and the bias experiment; judge: a second classifier of the
    same attribute (anything `cfgen.models.blackbox.load_blackbox` loads; its explained output
    is `judge_target`, default the classifier's target); robust_judge: the same, trained
    adversarially on other images (`cfgen classifier fit --model.adversarial_radius`);
    n_neighbours / neighbour_k: the nearest-neighbour judge's reference, the first training
    images, and its k (0 images: no such judge); truth_grid: values of the explained factor
    the true counterfactual is searched on (synthetic world; 0: not scored).

    Queries: the first `n_queries` images of the data's `split`; the first `n_real` validation
    images are the real reference for realism. n_bins: default (None) the explainer's.
    baselines / adversarial: `cfgen.explain.registry` names, built with
    `explainer_options[name]`. max_queries: the slowest methods' budgets; every method of a
    table is scored on the first queries its slowest method affords. cout_reference: the
    counterfactual method whose far frames COUT inserts for every map ("none": no COUT; unset:
    the true counterfactual where the data can be re-rendered, else the first counterfactual
    baseline, never PE's own); robustness_skip: counterfactual methods left out of the maps'
    robustness checks (cost); robustness_queries: how many queries those checks use. seed:
    every random draw of the evaluation (the synthetic faces, KID subsets, LIME / SHAP /
    SmoothGrad samples, perturbations, bootstrap intervals). logger: "wandb" or "none".
    """

    explainer: str
    placement_steps: int = PLACEMENT_STEPS
    oracle: str | None = None
    classifier: str | None = None
    allow_classifier_mismatch: bool = False
    classifier_output: int | str | None = None
    classifier_activation: Literal["sigmoid", "softmax", "none"] | None = None
    judge: str | None = None
    robust_judge: str | None = None
    judge_target: str | None = None
    n_neighbours: int = 5000
    neighbour_k: int = 15
    truth_grid: int = 41
    data: EvalData = field(default_factory=EvalData)
    out: str = "runs/evaluate/synthetic_smile"
    overwrite: bool = False
    n_queries: int = 500
    split: str = "test"
    n_real: int = 2000
    seed: int = 0
    n_bins: int | None = None
    baselines: list[str] = field(default_factory=lambda: list(DEFAULT_BASELINES))
    adversarial: list[str] = field(default_factory=lambda: ["pgd"])
    cout_reference: str | None = None
    counterfactual_metrics: list[str] = field(default_factory=lambda: list(COUNTERFACTUAL_SCORES))
    map_metrics: list[str] = field(default_factory=lambda: list(MAP_SCORES))
    robustness_queries: int = 16
    robustness_skip: list[str] = field(default_factory=lambda: list(COSTLY_ROBUSTNESS))
    max_queries: dict[str, int] = field(default_factory=lambda: dict(SLOW_METHOD_QUERIES))
    explainer_options: dict[str, dict] = field(default_factory=dict)
    report_queries: int = 4
    batch_size: int = 64
    bias: BiasConfig = field(default_factory=BiasConfig)
    logger: str = "wandb"

    def check(self) -> None:
        """Refuse unknown metric names and impossible sizes before any work is done."""
        for names, registry, option in (
            (self.counterfactual_metrics, COUNTERFACTUAL_SCORES, "counterfactual_metrics"),
            (self.map_metrics, MAP_SCORES, "map_metrics"),
        ):
            unknown = sorted(set(names) - set(registry))
            if unknown:
                raise ConfigError(f"unknown {option} {unknown}; choose from {sorted(registry)}")
        if self.n_queries < 1 or min(self.report_queries, self.n_real, self.n_neighbours) < 0:
            raise ConfigError(
                "n_queries must be >= 1, n_real, n_neighbours and report_queries >= 0"
            )
        if self.n_neighbours and self.n_neighbours < self.neighbour_k:
            raise ConfigError(
                f"n_neighbours ({self.n_neighbours}) must be at least neighbour_k "
                f"({self.neighbour_k}), or 0 for no nearest-neighbour judge"
            )
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {list(SPLITS)}, got {self.split!r}")


@dataclass
class SuiteInputs:
    """Built models and data: the context plus the methods to score, keyed by their name."""

    context: EvalContext
    counterfactual_methods: dict[str, CounterfactualExplainer]
    saliency_methods: dict[str, Explainer]
    bias_explainers: tuple[CounterfactualExplainer, CounterfactualExplainer] | None = None
    # Models whose bundles record nothing of their training data: not checked as held out.
    unrecorded: list[str] = field(default_factory=list)


def _explainer(
    path: str,
    placement_steps: int,
    classifier: str | None = None,
    allow_mismatch: bool = False,
    output: int | str | None = None,
    activation: str | None = None,
) -> ProgressiveExaggeration:
    try:
        return ProgressiveExaggeration.from_checkpoint(
            path,
            classifier=classifier,
            allow_classifier_mismatch=allow_mismatch,
            placement_steps=placement_steps,
            classifier_output=output,
            classifier_activation=activation,
        )
    except ClassifierMismatchError as error:
        raise error.with_option(
            "allow_classifier_mismatch: true (--allow_classifier_mismatch true)"
        ) from None


def _methods(config: SuiteConfig, classifier: Classifier) -> tuple[dict, dict]:
    """Adversarial counterfactual methods and saliency baselines, by registry name."""
    counterfactual, saliency = {}, {}
    for name in config.adversarial:
        if not is_counterfactual(name):
            raise ConfigError(f"adversarial: {name!r} makes no counterfactuals; see baselines")
        counterfactual[name] = build_explainer(
            name, classifier, **config.explainer_options.get(name, {})
        )
    for name in config.baselines:
        if is_counterfactual(name):
            raise ConfigError(f"baselines: {name!r} makes counterfactuals; list it in adversarial")
        saliency[name] = build_explainer(name, classifier, **config.explainer_options.get(name, {}))
    return counterfactual, saliency


def _check_shape(module: AttributeDataModule, explainer: ProgressiveExaggeration, path: str):
    """The data's image size and channels are the explainer's (images it can take)."""
    made = {"image_size": explainer.generator.image_size, "channels": explainer.generator.channels}
    data = {"image_size": module.image_size, "channels": module.channels}
    for name, value in made.items():
        if data[name] != value:
            raise ConfigError(
                f"the explainer {path} takes {name} {value} but the data are read with "
                f"{name} {data[name]} (data.{name} or what the classifier records); set "
                f"data.{name} to {value} or evaluate an explainer of these images"
            )


def _classifier_source(config: SuiteConfig) -> str | None:
    """The classifier file: the config's, else the one the explainer recorded."""
    if config.classifier is not None:
        return config.classifier
    recorded = load_explainer_bundle(config.explainer)["config"].get("classifier", {})
    return recorded.get("path")


def load_inputs(config: SuiteConfig) -> SuiteInputs:
    """Everything `run_suite` needs, from the files `config` names."""
    config.check()
    # A classifier file is checked against the one the explainer recorded (sha256).
    explainer = _explainer(
        config.explainer,
        config.placement_steps,
        config.classifier,
        config.allow_classifier_mismatch,
        config.classifier_output,
        config.classifier_activation,
    )
    classifier = explainer.classifier
    if config.n_bins not in (None, explainer.n_bins):
        raise ConfigError(
            f"n_bins is {config.n_bins} but the explainer {config.explainer} was trained with "
            f"{explainer.n_bins} bins; leave n_bins unset to use them"
        )
    module = data_module(config, _classifier_source(config), explainer.generator.image_size)
    options = config.data
    unrecorded = check_held_out(
        _bundles(config), options.source, options.root, config.split, config.seed
    )
    module.setup()
    _check_shape(module, explainer, config.explainer)
    context = build_context(config, classifier, module)
    context.n_bins = explainer.n_bins
    adversarial, saliency = _methods(config, classifier)
    pe = {"pe": explainer.as_drawn()}
    if config.placement_steps > 0:
        pe["pe_placed"] = explainer
    bias = None
    if config.bias.biased_explainer is not None:  # what each generator draws, unplaced
        unbiased = pe["pe"]
        if config.bias.unbiased_explainer is not None:
            unbiased = _explainer(config.bias.unbiased_explainer, 0)
        bias = (_explainer(config.bias.biased_explainer, 0), unbiased)
    return SuiteInputs(context, {**pe, **adversarial}, saliency, bias, unrecorded)


def _bundles(config: SuiteConfig) -> dict[str, str]:
    """Every model file the evaluation reads, by its role."""
    named = {
        "explainer": config.explainer,
        "classifier": _classifier_source(config),
        "judge": config.judge,
        "robust judge": config.robust_judge,
        "oracle": config.oracle,
        "biased explainer": config.bias.biased_explainer,
        "latent shift's autoencoder": config.explainer_options.get("latent_shift", {}).get(
            "autoencoder"
        ),
    }
    return {role: str(path) for role, path in named.items() if path and Path(path).is_file()}
