"""The evaluation's context built from files: queries, reference sets, oracle and judges.

The images come from any source of the training data module (`config.data`: the synthetic
world, a folder with an attribute CSV, CelebA, CheXpert): the queries are the first `n_queries`
images of `split` (test by default), the real reference set for realism the first `n_real`
images of the validation split (so no query is its own reference), and the nearest-neighbour
judge's reference the first `n_neighbours` images of the training split. Target, image size and
channels default to what the classifier bundle records. Only the synthetic world has factors and
region masks, and can re-render its queries (the true counterfactual): the groups that need them
are skipped elsewhere, with the reason.
"""

import torch
from torch.utils.data import Dataset

from cfgen.data.datamodule import AttributeDataModule
from cfgen.data.synthetic import ATTRIBUTE_FACTOR, FACTOR_REGION, attribute_rule
from cfgen.errors import ConfigError
from cfgen.evaluate.context import Classifier, EvalContext
from cfgen.evaluate.judges import AttributeReading, attribute_reading
from cfgen.evaluate.neighbours import NearestNeighbourJudge
from cfgen.evaluate.truth import TrueCounterfactuals
from cfgen.models.blackbox import classifier_facts

REFERENCE_SPLIT = "val"
NEIGHBOUR_SPLIT = "train"
SPLITS = ("train", "val", "test")


@torch.no_grad()
def posteriors(classifier: Classifier, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """f of images (N, C, H, W) in batches -> (N,)."""
    batches = range(0, len(images), batch_size)
    return torch.cat([classifier(images[i : i + batch_size]) for i in batches])


def oracle_outputs(oracle) -> tuple[list[str], str]:
    """The oracle's output names and kind ("factors" or "attributes")."""
    names = getattr(oracle, "output_names", None) or oracle.factor_names
    return list(names), getattr(oracle, "kind", "factors")


def data_module(
    config, classifier_source: str | None = None, image_size: int | None = None
) -> AttributeDataModule:
    """The training data module of `config.data` (a `SuiteConfig`), sized for the evaluation
    (not set up).

    The split the queries come from holds `n_queries` images of the synthetic world, the
    validation split `n_real`, the training split `n_neighbours` (at least one each: an empty
    split is refused); unset target, image size and channels are filled from what the
    classifier bundle `classifier_source` records, then the image size from `image_size` (the
    explainer's).
    """
    options = config.data
    facts = classifier_facts(classifier_source) if classifier_source is not None else {}
    sizes = {name: 1 for name in SPLITS}
    sizes[NEIGHBOUR_SPLIT] = max(config.n_neighbours, 1)
    sizes[REFERENCE_SPLIT] = max(config.n_real, 1)
    # Queries drawn from a reference split come first, the reference after them.
    ahead = sizes[config.split] if config.split in (NEIGHBOUR_SPLIT, REFERENCE_SPLIT) else 0
    sizes[config.split] = ahead + config.n_queries
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


def take(dataset: Dataset, n: int, skip: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` images (n, C, H, W) and label rows (n, A) of a dataset, after its first `skip`."""
    if hasattr(dataset, "images"):  # the synthetic world holds its tensors
        return dataset.images[skip : skip + n], dataset.labels[skip : skip + n]
    items = [dataset[i] for i in range(skip, min(skip + n, len(dataset)))]
    images = torch.stack([item["image"] for item in items])
    return images, torch.stack([torch.as_tensor(item["labels"]) for item in items])


def _load_judge(config, source: str, classifier: Classifier, image_size: int) -> Classifier:
    """A judge classifier of the same attribute as `classifier` (unless `judge_target`).

    A judge bundle that records another image size than the queries' is refused: a network with
    global pooling would take the images anyway and judge them at the wrong scale.
    """
    from cfgen.models.blackbox import load_blackbox

    judge_size = classifier_facts(source).get("image_size")
    if judge_size is not None and judge_size != image_size:
        raise ConfigError(
            f"the judge {source} was trained on {judge_size} px images but the queries "
            f"are {image_size} px; give a judge trained at {image_size} px"
        )
    target = config.judge_target or getattr(classifier, "target_name", None)
    return load_blackbox(source, target=target)


def build_context(config, classifier: Classifier, module: AttributeDataModule) -> EvalContext:
    """Queries, reference sets, oracle, judges and the true counterfactual that `config` (a
    `SuiteConfig`) names, for `classifier`.

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
    images, _ = take(queries, config.n_queries)
    context = EvalContext(
        classifier=classifier,
        queries=images,
        robustness_queries=config.robustness_queries,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    if hasattr(queries, "factors"):  # the synthetic world: factors, region masks, re-rendering
        _use_world(context, queries, target, config)
    # On the validation or training split, the queries are the first images and the reference
    # sets the ones after them: no query is its own reference or neighbour.
    if config.n_real > 0:
        skip = config.n_queries if config.split == REFERENCE_SPLIT else 0
        reference, reference_labels = take(module.val_dataset, config.n_real, skip)
        context.real_images = reference
        context.real_posteriors = posteriors(classifier, reference, config.batch_size)
        context.real_labels = reference_labels[:, module.target_index].float()
    if config.n_neighbours > 0:
        skip = config.n_queries if config.split == NEIGHBOUR_SPLIT else 0
        neighbours, labels = take(module.train_dataset, config.n_neighbours, skip)
        labels = labels[:, module.target_index].float()
        if int(torch.isfinite(labels).sum()) >= config.neighbour_k:
            context.neighbours = NearestNeighbourJudge(neighbours, labels, config.neighbour_k)
        else:
            context.unavailable["neighbours"] = (
                f"the training split has {int(torch.isfinite(labels).sum())} labelled images, "
                f"fewer than the nearest-neighbour judge's k = {config.neighbour_k}"
            )
    if config.oracle is not None:
        _use_oracle(context, config.oracle, target)
    else:
        context.target_factor, context.target_region = target, None
    size = images.shape[-1]
    if config.judge is not None:
        context.judge = _load_judge(config, config.judge, classifier, size)
    if config.robust_judge is not None:
        context.robust_judge = _load_judge(config, config.robust_judge, classifier, size)
    return context


def _use_world(context: EvalContext, queries, target: str, config) -> None:
    """The synthetic world's factors and masks of the queries, and their re-renderings with the
    explained factor on a grid (`TrueCounterfactuals`)."""
    n = config.n_queries
    context.factors = queries.factors[:n]
    context.masks = queries.masks[:n].float() / 255.0
    context.factor_names = list(queries.factor_names)
    context.region_names = list(queries.region_names)
    if config.truth_grid > 1 and target in ATTRIBUTE_FACTOR:
        factor, threshold, above = attribute_rule(target)
        indices = torch.arange(len(context.queries))
        context.truth = TrueCounterfactuals.from_renderer(
            lambda value: queries.render_with(indices, factor, value)[0],
            threshold,
            above,
            config.truth_grid,
        )


def _use_oracle(context: EvalContext, path: str, target: str) -> None:
    """The oracle, its features, how it reads `target` and every other binary attribute."""
    from cfgen.evaluate.realism import domain_features
    from cfgen.models.oracle import load_oracle

    oracle = load_oracle(path)
    names, kind = oracle_outputs(oracle)
    if context.factors is not None and kind == "factors" and names != context.factor_names:
        raise ConfigError(
            f"the oracle {path} predicts {names}, but the queries have factors "
            f"{context.factor_names}; train the oracle on the same world"
        )
    context.oracle, context.features = oracle, domain_features(oracle)
    context.factor_names = names
    context.target_reading = attribute_reading(target, names, kind)
    context.attribute_readings = other_attributes(target, names, kind)
    context.target_factor = context.target_reading.name
    region = FACTOR_REGION.get(context.target_factor) if kind == "factors" else None
    context.target_region = region if region in context.region_names else None


def other_attributes(target: str, names: list[str], kind: str) -> list[AttributeReading]:
    """How the oracle reads every binary attribute but the explained one (MNAC's attributes).

    A factor oracle reads the synthetic world's attributes through their rules; an attribute
    oracle's columns are attributes themselves, the other classes of the target's own column
    left out (`digit=3` turning into `digit=8` changes them by definition).
    """
    if kind == "factors":
        candidates = [name for name in ATTRIBUTE_FACTOR if name != target]
        return [attribute_reading(name, names, kind) for name in candidates]
    column = target.split("=", 1)[0] + "=" if "=" in target else None
    others = [
        name
        for name in names
        if name != target and not (column is not None and name.startswith(column))
    ]
    return [attribute_reading(name, names, kind) for name in others]
