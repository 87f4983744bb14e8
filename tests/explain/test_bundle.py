"""Explainer files: the generator's configuration written once and read back from the exported
bundle and from a Lightning checkpoint alike; the classifier each records and checks."""

import dataclasses

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from cfgen.errors import CheckpointError
from cfgen.explain.bundle import explainer_config, load_explainer_bundle
from cfgen.explain.progressive import ProgressiveExaggeration
from cfgen.io import safe_torch_load
from cfgen.models.generator import GeneratorOptions
from cfgen.train.explainer import ExplainerModule
from tests.helpers import ChannelMeanLogit, tiny_networks, write_classifier_bundle

SIZE = 16
# A value other than the default for every generator option (mask_downsample needs a blend).
NON_DEFAULT = {
    "width": {"width": 8},
    "max_width": {"max_width": 16},
    "skips": {"skips": True},
    "output": {"output": "residual"},
    "edit_downsample": {"edit_downsample": 2},
    "mask_downsample": {"output": "blend", "mask_downsample": 4},
    "norm": {"norm": "group"},
    "reach": {"output": "warp", "reach": 2},
    "palette": {"output": "blend", "palette": 4},
}


def test_every_generator_option_has_a_non_default_case():
    assert set(NON_DEFAULT) == {field.name for field in dataclasses.fields(GeneratorOptions)}


def save_lightning_checkpoint(module: ExplainerModule, path) -> None:
    """`last.ckpt` as Lightning writes it (the module's hooks included), without training."""
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)


@pytest.mark.parametrize("option", sorted(NON_DEFAULT))
def test_each_generator_option_comes_back_from_the_bundle_and_the_checkpoint(tmp_path, option):
    classifier = write_classifier_bundle(tmp_path / "classifier.pt", size=SIZE)
    networks = tiny_networks()
    networks["generator"] |= NON_DEFAULT[option]
    module = ExplainerModule(str(classifier), image_size=SIZE, **networks)
    with torch.no_grad():  # the EMA weights differ from the raw ones, and from the init
        for parameter in module.ema_generator.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    bundle = module.export(tmp_path / "explainer.pt")
    checkpoint = tmp_path / "last.ckpt"
    save_lightning_checkpoint(module, checkpoint)
    tiny = {"image_size": SIZE, "channels": 3, "n_bins": 10, "base_width": 4, "max_width": 8}
    tiny |= {"skips": False, "output": "image", "edit_downsample": 1, "mask_downsample": 1}
    tiny |= {"reach": 3, "palette": 0}
    changed = {"base_width" if k == "width" else k: v for k, v in NON_DEFAULT[option].items()}
    expected = tiny | {"norm": "batch"} | changed
    explainers = []
    for path in (bundle, checkpoint):
        assert load_explainer_bundle(path)["config"]["generator"] == expected, path.name
        explainers.append(ProgressiveExaggeration.from_checkpoint(path, placement_steps=0))
    from_bundle, from_checkpoint = explainers
    for name, value in expected.items():
        assert getattr(from_checkpoint.generator, name, value) == value, name
    if option == "norm":
        assert any(isinstance(m, nn.GroupNorm) for m in from_checkpoint.generator.modules())
        assert not any(isinstance(m, nn.BatchNorm2d) for m in from_checkpoint.generator.modules())
    x = torch.rand(3, 3, SIZE, SIZE) * 2 - 1
    torch.testing.assert_close(
        from_bundle.exaggerate(x).images, from_checkpoint.exaggerate(x).images
    )
    torch.testing.assert_close(
        from_checkpoint.counterfactual(x, 0.9),
        module.ema_generator.eval()(x, torch.full((3,), 9)),
    )


def test_a_checkpoint_of_the_flat_options_reads_every_generator_option():
    flat = {"image_size": 16, "channels": 1, "n_bins": 4, "bin_target_kind": "lower"}
    flat |= {"generator_width": 8, "generator_max_width": 16, "generator_output": "blend"}
    flat |= {"generator_skips": True, "edit_downsample": 2, "mask_downsample": 4}
    flat |= {"generator_norm": "group"}
    config = explainer_config(flat, {"path": "c.pt"})
    assert config["generator"] == {
        "image_size": 16, "channels": 1, "n_bins": 4, "base_width": 8, "max_width": 16,
        "skips": True, "output": "blend", "edit_downsample": 2, "mask_downsample": 4,
        "norm": "group", "reach": 3, "palette": 0,
    }  # fmt: skip
    assert (config["bin_target_kind"], config["classifier"]) == ("lower", {"path": "c.pt"})
    # options the flat checkpoint predates are the official generator's
    older = explainer_config({k: flat[k] for k in list(flat)[:6]}, {})["generator"]
    assert (older["skips"], older["norm"], older["edit_downsample"]) == (False, "batch", 1)


# --- a classifier given in memory -------------------------------------------------------------


class TwoColumns(nn.Module):
    """Logits (N, 2): minus and plus the mean of channel 0 (a 2-class softmax model)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(3.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.scale * x[:, 0].mean(dim=(1, 2))
        return torch.stack([-mean, mean], dim=1)


def test_an_explainer_of_a_model_in_memory_records_its_weights_and_reading(tmp_path):
    model = TwoColumns()
    module = ExplainerModule(
        model, classifier_output=1, classifier_activation="softmax", image_size=SIZE,
        **tiny_networks(),
    )  # fmt: skip
    path = module.export(tmp_path / "explainer.pt")
    recorded = load_explainer_bundle(path)["config"]["classifier"]
    assert recorded["in_memory"] and recorded["path"] is None
    assert recorded["type"].endswith("TwoColumns")
    assert (recorded["output"], recorded["activation"]) == (1, "softmax")
    with pytest.raises(CheckpointError, match="given in memory .*TwoColumns.*classifier=model"):
        ProgressiveExaggeration.from_checkpoint(path)
    explainer = ProgressiveExaggeration.from_checkpoint(path, classifier=model)
    x = torch.rand(4, 3, SIZE, SIZE) * 2 - 1
    torch.testing.assert_close(explainer.classifier(x), model(x).softmax(dim=1)[:, 1])
    changed = TwoColumns()
    with torch.no_grad():
        changed.scale.fill_(2.0)
    with pytest.raises(CheckpointError, match="not the one .* was trained to explain"):
        ProgressiveExaggeration.from_checkpoint(path, classifier=changed)
    ProgressiveExaggeration.from_checkpoint(
        path, classifier=changed, allow_classifier_mismatch=True
    )


def test_a_function_in_memory_is_recorded_without_weights(tmp_path):
    def brightness(x: torch.Tensor) -> torch.Tensor:
        return ChannelMeanLogit()(x)

    module = ExplainerModule(brightness, image_size=SIZE, **tiny_networks())
    recorded = load_explainer_bundle(module.export(tmp_path / "e.pt"))["config"]["classifier"]
    assert recorded["in_memory"] and recorded["sha256"] is None
    assert (recorded["output"], recorded["activation"]) == (0, "sigmoid")
    checkpoint = tmp_path / "last.ckpt"
    save_lightning_checkpoint(module, checkpoint)
    assert safe_torch_load(checkpoint)["cfgen_classifier"] == recorded
