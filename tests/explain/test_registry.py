import pytest
import torch

from cfgen.errors import ConfigError
from cfgen.explain.base import CounterfactualExplainer, Explainer
from cfgen.explain.registry import (
    EXPLAINERS,
    build_explainer,
    explainer_options,
    is_counterfactual,
)
from cfgen.models.autoencoder import Autoencoder
from tests.helpers import TinyConvNet, tiny_networks, write_classifier_bundle

# Smallest budgets per name, so that building and running every baseline stays fast.
FAST = {
    "smoothgrad": {"samples": 2},
    "integrated_gradients": {"steps": 4},
    "lime": {"samples": 20},
    "kernelshap": {"samples": 20},
    "second_order": {"steps": 2, "power_iterations": 2},
    "pgd": {"steps": 2, "search_steps": 2},
    "fgsm": {"search_steps": 2},
    "optimisation": {"steps": 2},
    "latent_shift": {"autoencoder": Autoencoder(8, 3, width=4), "search_steps": 2},
}


def test_registry_covers_saliency_second_order_and_adversarial_baselines():
    expected = {
        "gradient", "smoothgrad", "integrated_gradients", "guided_backprop", "gradcam",
        "occlusion", "lime", "kernelshap", "second_order", "pgd", "fgsm", "optimisation",
        "latent_shift", "pe_mask",
    }  # fmt: skip
    assert set(EXPLAINERS) == expected


@pytest.fixture
def fast(tmp_path) -> dict[str, dict]:
    """FAST, plus the tiny 8 px blend explainer whose mask `pe_mask` reads."""
    from cfgen.train.explainer import ExplainerModule

    classifier = write_classifier_bundle(tmp_path / "classifier.pt", size=8)
    module = ExplainerModule(str(classifier), image_size=8, **tiny_networks(output="blend"))
    return FAST | {"pe_mask": {"checkpoint": str(module.export(tmp_path / "explainer.pt"))}}


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_every_name_builds_an_explainer_that_maps_x_to_its_shape(name, fast):
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    explainer = build_explainer(name, TinyConvNet(3), **fast.get(name, {}))
    assert isinstance(explainer, Explainer)
    assert is_counterfactual(name) == isinstance(explainer, CounterfactualExplainer)
    relevance = explainer.explain(x)
    assert relevance.shape == x.shape and bool(relevance.isfinite().all())


def test_options_list_the_method_and_attack_arguments_with_defaults():
    assert explainer_options("occlusion") == {
        "score": "logit", "window": 4, "stride": 4, "baseline": 0.0
    }  # fmt: skip
    assert explainer_options("pgd")["steps"] == 10
    assert "attack" not in explainer_options("pgd")
    assert explainer_options("second_order")["score"] == "log_posterior"


def test_unknown_names_and_options_are_config_errors_that_list_the_choices():
    with pytest.raises(ConfigError, match="choose one of .*'gradcam'"):
        build_explainer("grad_cam", TinyConvNet())
    with pytest.raises(ConfigError, match=r"\['sample'\] for 'lime'.*'samples': 200"):
        build_explainer("lime", TinyConvNet(), sample=10)
    with pytest.raises(ConfigError, match=r"\['lr'\] for 'second_order'"):
        build_explainer("second_order", TinyConvNet(), lr=0.1)
