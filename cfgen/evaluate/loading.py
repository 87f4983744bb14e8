"""What `cfgen evaluate` runs and on what: its config and the inputs built from files.

`SuiteConfig` is the command's options; `load_inputs(config)` builds the `SuiteInputs` that
`cfgen.evaluate.suite.run_suite` scores: explainers, classifier, oracle, judge and the held-out
images. Every model file is loaded safely (`weights_only` bundles).

The images come from any source of the training data module (`config.data`: the synthetic
world, a folder with an attribute CSV, CelebA, CheXpert): the queries are the first `n_queries`
images of `split` (test by default) and the real reference set for realism is the first
`n_real` images of the validation split, so no query is its own reference. Target, image size
and channels default to what the classifier bundle records; a contradiction between the data,
the classifier and the explainer is an error. Only the synthetic world has factors and region
masks: the groups that need them are skipped elsewhere, with the reason.
"""

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch.utils.data import Dataset

from cfgen.data.datamodule import AttributeDataModule
from cfgen.data.synthetic import FACTOR_REGION
from cfgen.errors import ConfigError
from cfgen.evaluate.bias import BiasConfig
from cfgen.evaluate.judges import attribute_reading
from cfgen.evaluate.scoring import COUNTERFACTUAL_SCORES, SALIENCY_SCORES, EvalContext
from cfgen.explain.base import Classifier, CounterfactualExplainer, Explainer
from cfgen.explain.progressive import (
    PLACEMENT_STEPS,
    ProgressiveExaggeration,
    load_explainer_bundle,
)
from cfgen.explain.registry import build_explainer, is_counterfactual
from cfgen.models.blackbox import classifier_facts

REFERENCE_SPLIT = "val"
SPLITS = ("train", "val", "test")

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

# Methods that cost about a second per query or more on a CPU are scored on the first queries only.
SLOW_METHOD_QUERIES = {
    "pgd": 100,
    "optimisation": 100,
    "lime": 100,
    "kernelshap": 100,
    "second_order": 100,
}


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

    explainer: the PE bundle (`explainer.pt`); placement_steps: bisections that place a frame
    drawn outside its bin (`ProgressiveExaggeration`; 0: frames as drawn, the generator alone);
    classifier: the black box (default: the one the explainer recorded), read with
    `classifier_output` / `classifier_activation` (default: as recorded); data: the images
    (`EvalData`; default the synthetic world); oracle: a factor oracle (synthetic world) or an
    attribute oracle (`cfgen oracle fit`) for validity,
    preservation, realism features and the bias experiment; judge: a second classifier of the
    same attribute, trained independently (anything `cfgen.models.blackbox.load_blackbox`
    loads; its explained output is `judge_target`, default the classifier's target). Queries:
    the first `n_queries` images of the data's `split`; the first `n_real` validation images
    are the real reference for realism. n_bins: default (None) the explainer's. baselines /
    adversarial: `cfgen.explain.registry` names, built with `explainer_options[name]`.
    cout_reference: the counterfactual method whose far ends the saliency maps' COUT inserts
    (None: no COUT for saliency maps). max_queries: methods scored on the first
    `max_queries[name]` queries only (slow ones); robustness_queries: how many queries the
    (costly) robustness checks use. logger: "wandb" or "none".
    """

    explainer: str
    placement_steps: int = PLACEMENT_STEPS
    oracle: str | None = None
    classifier: str | None = None
    classifier_output: int | str | None = None
    classifier_activation: Literal["sigmoid", "softmax", "none"] | None = None
    judge: str | None = None
    judge_target: str | None = None
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
    cout_reference: str | None = "pe"
    counterfactual_metrics: list[str] = field(default_factory=lambda: list(COUNTERFACTUAL_SCORES))
    saliency_metrics: list[str] = field(
        default_factory=lambda: ["faithfulness", "localisation", "robustness"]
    )
    robustness_queries: int = 16
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
            (self.saliency_metrics, SALIENCY_SCORES, "saliency_metrics"),
        ):
            unknown = sorted(set(names) - set(registry))
            if unknown:
                raise ConfigError(f"unknown {option} {unknown}; choose from {sorted(registry)}")
        if self.n_queries < 1 or self.report_queries < 0 or self.n_real < 0:
            raise ConfigError("n_queries must be >= 1, n_real and report_queries >= 0")
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {list(SPLITS)}, got {self.split!r}")


@dataclass
class SuiteInputs:
    """Built models and data: the context plus the methods to score, keyed by their name."""

    context: EvalContext
    counterfactual_methods: dict[str, CounterfactualExplainer]
    saliency_methods: dict[str, Explainer]
    bias_explainers: tuple[CounterfactualExplainer, CounterfactualExplainer] | None = None


@torch.no_grad()
def posteriors(classifier: Classifier, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """f of images (N, C, H, W) in batches -> (N,)."""
    batches = range(0, len(images), batch_size)
    return torch.cat([classifier(images[i : i + batch_size]) for i in batches])


def oracle_outputs(oracle) -> tuple[list[str], str]:
    """The oracle's output names and kind ("factors" or "attributes")."""
    names = getattr(oracle, "output_names", None) or oracle.factor_names
    return list(names), getattr(oracle, "kind", "factors")


def _load_oracle(path: str):
    from cfgen.evaluate.realism import domain_features
    from cfgen.models.oracle import load_oracle

    oracle = load_oracle(path)
    return oracle, domain_features(oracle), *oracle_outputs(oracle)


def _load_judge(config: SuiteConfig, classifier: Classifier, image_size: int) -> Classifier:
    """The judge classifier, explaining the same attribute as `classifier` unless told.

    A judge bundle that records another image size than the queries' is refused: a network with
    global pooling would take the images anyway and judge them at the wrong scale.
    """
    from cfgen.models.blackbox import classifier_facts, load_blackbox

    judge_size = classifier_facts(config.judge).get("image_size")
    if judge_size is not None and judge_size != image_size:
        raise ConfigError(
            f"the judge {config.judge} was trained on {judge_size} px images but the queries "
            f"are {image_size} px; give a judge trained at {image_size} px"
        )
    target = config.judge_target or getattr(classifier, "target_name", None)
    return load_blackbox(config.judge, target=target)


def _explainer(
    path: str, placement_steps: int, classifier: str | None = None, output=None, activation=None
) -> ProgressiveExaggeration:
    return ProgressiveExaggeration.from_checkpoint(
        path,
        classifier=classifier,
        placement_steps=placement_steps,
        classifier_output=output,
        classifier_activation=activation,
    )


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


def data_module(
    config: SuiteConfig, classifier_source: str | None = None, image_size: int | None = None
) -> AttributeDataModule:
    """The training data module of `config.data`, sized for the evaluation (not set up).

    The split the queries come from holds `n_queries` images of the synthetic world, the
    validation split `n_real` (at least one: an empty split is refused); unset target, image
    size and channels are filled from what the classifier bundle `classifier_source` records,
    then the image size from `image_size` (the explainer's).
    """
    options = config.data
    facts = classifier_facts(classifier_source) if classifier_source is not None else {}
    sizes = {name: 1 for name in SPLITS}
    sizes[REFERENCE_SPLIT] = max(config.n_real, 1)
    sizes[config.split] = max(sizes[config.split], config.n_queries)
    module = AttributeDataModule(
        source=options.source,
        root=options.root,
        csv=options.csv,
        attributes=options.attributes,
        image_size=options.image_size or (None if "image_size" in facts else image_size),
        channels=options.channels,
        batch_size=config.batch_size,
        target=options.target,
        n_train=sizes["train"],
        n_val=sizes["val"],
        n_test=sizes["test"],
        seed=config.seed,
        uncertain=options.uncertain,
    )
    if classifier_source is not None:
        module.use_classifier(facts, classifier_source)
    return module


def _take(dataset: Dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` images (n, C, H, W) and label rows (n, A) of a dataset."""
    if hasattr(dataset, "images"):  # the synthetic world holds its tensors
        return dataset.images[:n], dataset.labels[:n]
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    images = torch.stack([item["image"] for item in items])
    return images, torch.stack([torch.as_tensor(item["labels"]) for item in items])


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


def build_context(
    config: SuiteConfig, classifier: Classifier, module: AttributeDataModule
) -> EvalContext:
    """Queries, real reference, oracle and judge that `config` names, for `classifier`.

    `module`: the images (`data_module`). Usable on its own to score many explainers of one
    classifier on the same context (`cfgen.evaluate.suite.score_counterfactual`): the sets are
    encoded once.
    """
    module.setup()
    target = module.target
    if target is None:
        module.target_index  # noqa: B018 -- the data module's message names the choices
    classifier_target = getattr(classifier, "target_name", None)
    if classifier_target is not None and classifier_target != target:
        raise ConfigError(
            f"data.target is {target!r} but the classifier explains {classifier_target!r}; "
            "leave data.target unset to use the classifier's"
        )
    queries = getattr(module, f"{config.split}_dataset")
    images, labels = _take(queries, config.n_queries)
    context = EvalContext(
        classifier=classifier,
        queries=images,
        robustness_queries=config.robustness_queries,
        batch_size=config.batch_size,
    )
    if hasattr(queries, "factors"):  # the synthetic world: factors and region masks
        context.factors = queries.factors[: config.n_queries]
        context.masks = queries.masks[: config.n_queries].float() / 255.0
        context.factor_names = list(queries.factor_names)
        context.region_names = list(queries.region_names)
    if config.n_real > 0:
        reference, reference_labels = _take(module.val_dataset, config.n_real)
        context.real_images = reference
        context.real_posteriors = posteriors(classifier, reference, config.batch_size)
        context.real_labels = reference_labels[:, module.target_index].float()
    if config.oracle is not None:
        _use_oracle(context, config.oracle, target)
    else:
        context.target_factor, context.target_region = target, None
    if config.judge is not None:
        context.judge = _load_judge(config, classifier, images.shape[-1])
    return context


def _use_oracle(context: EvalContext, path: str, target: str) -> None:
    """The oracle, its features and how it reads `target` (its factor or attribute column)."""
    context.oracle, context.features, names, kind = _load_oracle(path)
    if context.factors is not None and kind == "factors" and names != context.factor_names:
        raise ConfigError(
            f"the oracle {path} predicts {names}, but the queries have factors "
            f"{context.factor_names}; train the oracle on the same world"
        )
    context.factor_names = names
    context.target_reading = attribute_reading(target, names, kind)
    context.target_factor = context.target_reading.name
    region = FACTOR_REGION.get(context.target_factor) if kind == "factors" else None
    context.target_region = region if region in context.region_names else None


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
    module.setup()
    _check_shape(module, explainer, config.explainer)
    context = build_context(config, classifier, module)
    context.n_bins = explainer.n_bins
    adversarial, saliency = _methods(config, classifier)
    bias = None
    if config.bias.biased_explainer is not None:
        unbiased = explainer
        if config.bias.unbiased_explainer is not None:
            unbiased = _explainer(config.bias.unbiased_explainer, config.placement_steps)
        bias = (_explainer(config.bias.biased_explainer, config.placement_steps), unbiased)
    return SuiteInputs(context, {"pe": explainer, **adversarial}, saliency, bias)
