"""Build the suite's inputs from files: explainers, classifier, oracle, held-out queries.

Every model file is loaded safely (`weights_only` bundles). The queries are the synthetic
world's `split` (test by default) at the explainer's image size, with their factors and region
masks; the real reference set for realism is the validation split, so no query is its own
reference.
"""

import torch

from cfgen.data.synthetic import ATTRIBUTE_FACTOR, FACTOR_REGION, SyntheticFaces
from cfgen.errors import ConfigError
from cfgen.evaluate.judges import attribute_reading
from cfgen.evaluate.scoring import EvalContext
from cfgen.evaluate.suite import SuiteConfig, SuiteInputs
from cfgen.explain.base import Classifier
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.explain.registry import build_explainer, is_counterfactual

REFERENCE_SPLIT = "val"


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


def _load_judge(config: SuiteConfig, classifier: Classifier) -> Classifier:
    """The judge classifier, explaining the same attribute as `classifier` unless told."""
    from cfgen.models.blackbox import load_blackbox

    target = config.judge_target or getattr(classifier, "target_name", None)
    return load_blackbox(config.judge, target=target)


def _explainer(path: str, classifier: str | None = None) -> ProgressiveExaggeration:
    return ProgressiveExaggeration.from_checkpoint(path, classifier=classifier)


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


def build_context(config: SuiteConfig, classifier: Classifier, image_size: int) -> EvalContext:
    """Queries, real reference, oracle and judge that `config` names, for `classifier`.

    Usable on its own to score many explainers of one classifier on the same context
    (`cfgen.evaluate.suite.score_counterfactual`): the sets are encoded once.
    """
    target = getattr(classifier, "target_name", None) or "Smiling"
    queries = SyntheticFaces(config.n_queries, image_size, config.seed, config.split, target=target)
    factor = ATTRIBUTE_FACTOR[queries.target]
    context = EvalContext(
        classifier=classifier,
        queries=queries.images,
        factors=queries.factors,
        masks=queries.masks.float() / 255.0,
        factor_names=list(queries.factor_names),
        region_names=list(queries.region_names),
        target_factor=factor,
        target_region=FACTOR_REGION[factor],
        robustness_queries=config.robustness_queries,
        batch_size=config.batch_size,
    )
    if config.n_real > 0:
        reference = SyntheticFaces(
            config.n_real, image_size, config.seed, REFERENCE_SPLIT, target=target
        )
        context.real_images = reference.images
        context.real_posteriors = posteriors(classifier, reference.images, config.batch_size)
        context.real_labels = reference.labels[:, reference.target_index]
    if config.oracle is not None:
        context.oracle, context.features, factor_names, kind = _load_oracle(config.oracle)
        if factor_names != context.factor_names:
            raise ConfigError(
                f"the oracle {config.oracle} predicts {factor_names}, but the queries have "
                f"factors {context.factor_names}; train the oracle on the same world"
            )
        context.target_reading = attribute_reading(target, factor_names, kind)
    if config.judge is not None:
        context.judge = _load_judge(config, classifier)
    return context


def load_inputs(config: SuiteConfig) -> SuiteInputs:
    """Everything `run_suite` needs, from the files `config` names."""
    # A classifier file is checked against the one the explainer recorded (sha256).
    explainer = _explainer(config.explainer, config.classifier)
    classifier = explainer.classifier
    if config.n_bins not in (None, explainer.n_bins):
        raise ConfigError(
            f"n_bins is {config.n_bins} but the explainer {config.explainer} was trained with "
            f"{explainer.n_bins} bins; leave n_bins unset to use them"
        )
    context = build_context(config, classifier, explainer.generator.image_size)
    context.n_bins = explainer.n_bins
    adversarial, saliency = _methods(config, classifier)
    bias = None
    if config.bias.biased_explainer is not None:
        unbiased = explainer
        if config.bias.unbiased_explainer is not None:
            unbiased = _explainer(config.bias.unbiased_explainer)
        bias = (_explainer(config.bias.biased_explainer), unbiased)
    return SuiteInputs(context, {"pe": explainer, **adversarial}, saliency, bias)
