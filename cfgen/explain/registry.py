"""Every baseline explainer by name: `build_explainer(name, classifier, **options)`.

Names (`EXPLAINERS`):
- saliency maps from captum (`CaptumSaliency`): gradient, smoothgrad, integrated_gradients,
  guided_backprop, gradcam, occlusion, lime, kernelshap;
- second_order: Hessian-aware group-sparse saliency (`SecondOrderSaliency`);
- pgd, fgsm: adversarial counterfactuals with a radius bisection (`AdversarialCounterfactual`);
- optimisation: per-query Adam counterfactual (`OptimisationCounterfactual`);
- latent_shift: decodes of an autoencoder's code moved along f's gradient (`LatentShift`; option
  `autoencoder`, the bundle of `cfgen autoencoder fit`);
- pe_mask: the blend mask of a trained PE explainer (`BlendMask`, option `checkpoint`), a
  saliency map.

All return an `Explainer`; pgd, fgsm, optimisation and latent_shift are
`CounterfactualExplainer`s, with `exaggerate`.
`explainer_options(name)` lists a name's options and defaults, e.g. for a config or `--help`.
"""

from collections.abc import Callable
from functools import partial

from cfgen.errors import ConfigError
from cfgen.explain.adversarial import (
    ATTACKS,
    AdversarialCounterfactual,
    OptimisationCounterfactual,
)
from cfgen.explain.base import Classifier, CounterfactualExplainer, Explainer
from cfgen.explain.latent_shift import LatentShift
from cfgen.explain.options import check_options, factory_options
from cfgen.explain.progressive import BlendMask
from cfgen.explain.saliency import SALIENCY_METHODS, CaptumSaliency
from cfgen.explain.second_order import SecondOrderSaliency

EXPLAINERS: dict[str, Callable[..., Explainer]] = {
    **{name: partial(CaptumSaliency, method=name) for name in SALIENCY_METHODS},
    "second_order": SecondOrderSaliency,
    **{name: partial(AdversarialCounterfactual, attack=name) for name in ATTACKS},
    "optimisation": OptimisationCounterfactual,
    "latent_shift": LatentShift,
    "pe_mask": BlendMask,
}


def explainer_options(name: str) -> dict[str, object]:
    """Options of the explainer `name` and their defaults."""
    builder = _builder(name)
    options = factory_options(builder)
    options.pop("method", None)
    options.pop("attack", None)
    if name in SALIENCY_METHODS:
        options.update(factory_options(SALIENCY_METHODS[name]))
    elif name in ATTACKS:
        options.update(factory_options(ATTACKS[name]))
    return options


def _builder(name: str) -> Callable[..., Explainer]:
    try:
        return EXPLAINERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown explainer {name!r}; choose one of {sorted(EXPLAINERS)}"
        ) from None


def build_explainer(name: str, classifier: Classifier, **options) -> Explainer:
    """The explainer `name` of `classifier`; unknown names or options raise `ConfigError`."""
    check_options(name, explainer_options(name), options)
    return _builder(name)(classifier, **options)


def is_counterfactual(name: str) -> bool:
    """Whether the explainer `name` produces counterfactual images (and strips)."""
    builder = _builder(name)
    explainer_class = builder.func if isinstance(builder, partial) else builder
    return issubclass(explainer_class, CounterfactualExplainer)
