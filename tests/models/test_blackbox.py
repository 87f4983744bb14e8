import sys

import pytest
import torch
from torch import nn

from cfgen.errors import CheckpointError, ClassifierError, ConfigError, DataError
from cfgen.io import file_sha256, save_bundle
from cfgen.models.blackbox import BlackBox, classifier_fingerprint, load_blackbox
from cfgen.models.classifiers import build_classifier

NAMES = ["Eyeglasses", "Smiling", "Big_Eyes"]


class Fixed(nn.Module):
    """Returns a given tensor whatever the input (batch of 2): shape and value checks."""

    def __init__(self, output) -> None:
        super().__init__()
        self.output = output

    def forward(self, images: torch.Tensor):
        return self.output


class ChannelMeans(nn.Module):
    """Logits (N, C): the mean of each channel, with a trainable scale to check freezing."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.dropout = nn.Dropout(0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.scale * images.mean(dim=(2, 3)))


def images(n: int = 2, channels: int = 3, size: int = 8) -> torch.Tensor:
    return torch.rand(n, channels, size, size) * 2 - 1


def test_sigmoid_of_logits_gives_the_target_posterior():
    x = images()
    box = BlackBox(ChannelMeans(), target_index=1, activation="sigmoid")
    torch.testing.assert_close(box(x), torch.sigmoid(2 * x[:, 1].mean(dim=(1, 2))))


def test_softmax_of_logits_is_over_all_outputs():
    x = images()
    box = BlackBox(ChannelMeans(), target_index=2, activation="softmax")
    torch.testing.assert_close(box(x), torch.softmax(2 * x.mean(dim=(2, 3)), dim=1)[:, 2])


def test_an_empty_batch_reads_as_no_posteriors_and_the_first_real_batch_is_still_checked():
    box = BlackBox(Fixed(torch.zeros(0, 3)), target_index=1, activation="softmax")
    assert box(images(0)).shape == (0,) and not box.checked
    box.model.output = torch.tensor([[0.0, float("nan"), 1.0], [1.0, 2.0, 3.0]])
    with pytest.raises(ClassifierError, match="non-finite"):
        box(images())


def test_probabilities_pass_through_and_one_dimensional_outputs_are_accepted():
    box = BlackBox(Fixed(torch.tensor([0.25, 0.75])), output="probabilities")
    torch.testing.assert_close(box(images()), torch.tensor([0.25, 0.75]))


def test_black_box_is_frozen_in_eval_mode_and_differentiable_in_its_input():
    model = ChannelMeans()
    box = BlackBox(model, target_index=0, activation="sigmoid")
    box.train()
    assert not box.training and not model.dropout.training
    assert not any(p.requires_grad for p in box.parameters())
    x = images().requires_grad_(True)
    box(x).sum().backward()
    assert x.grad is not None and model.scale.grad is None
    # Dropout is off: two calls agree.
    torch.testing.assert_close(box(x), box(x))


def test_a_parent_module_switching_to_training_leaves_the_black_box_in_eval():
    parent = nn.ModuleDict({"classifier": BlackBox(ChannelMeans())})
    parent.train()
    assert not parent["classifier"].training


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (Fixed(torch.zeros(2, 2, 3)), {}, r"returned shape \(2, 2, 3\) for 2 images"),
        (Fixed(torch.zeros(3, 2)), {}, r"returned shape \(3, 2\) for 2 images; expected \(2, K\)"),
        (
            Fixed(torch.zeros(2, 3)),
            {"target_index": 3, "activation": "sigmoid"},
            r"target_index=3 is out of range.*3 out",
        ),
        (Fixed(torch.zeros(2, 1)), {"activation": "softmax"}, "needs at least 2 outputs"),
        (Fixed(torch.tensor([0.1, float("nan")])), {}, "non-finite values"),
        (Fixed((1.0, 2.0)), {}, "returned a tuple; expected a tensor"),
        (
            Fixed(torch.tensor([-3.1, 4.2])),
            {"output": "probabilities"},
            r"returned values in \[-3.1, 4.2\] but output='probabilities' was declared; "
            r"declare output='logits'",
        ),
    ],
)
def test_misbehaving_classifiers_fail_on_first_call_saying_what_they_returned(
    model, kwargs, message
):
    with pytest.raises(ClassifierError, match=message):
        BlackBox(model, **kwargs)(images())


def test_check_runs_the_output_checks_before_first_use():
    box = BlackBox(Fixed(torch.zeros(2, 3)), target_index=5, activation="softmax")
    with pytest.raises(ClassifierError, match="target_index=5"):
        box.check(images())


def test_wrong_input_channels_and_ranks_are_reported():
    box = BlackBox(ChannelMeans(), in_channels=3)
    with pytest.raises(ClassifierError, match="expects 3-channel images; got 1 channels"):
        box(images(channels=1))
    with pytest.raises(ClassifierError, match=r"takes images \(N, C, H, W\); got .* \(3, 8, 8\)"):
        box(images()[0])


def test_non_finite_images_are_refused_on_every_call():
    box = BlackBox(ChannelMeans(), target_index=0, activation="sigmoid")
    box(images())
    broken = images()
    broken[1, 0, 2, 3] = float("nan")
    with pytest.raises(DataError, match=r"contain NaN or inf \(shape \(2, 3, 8, 8\)\)"):
        box(broken)


def test_unknown_output_or_activation_names_are_refused():
    with pytest.raises(ConfigError, match="output='scores'"):
        BlackBox(ChannelMeans(), output="scores")
    with pytest.raises(ConfigError, match="activation='tanh'"):
        BlackBox(ChannelMeans(), activation="tanh")


@pytest.fixture
def bundle(tmp_path):
    model = build_classifier("small_cnn", num_outputs=3, image_size=16)
    config = {
        "arch": "small_cnn",
        "num_outputs": 3,
        "image_size": 16,
        "in_channels": 3,
        "attribute_names": NAMES,
        "target": "Smiling",
        "output": "logits",
        "activation": "sigmoid",
    }
    path = save_bundle(tmp_path / "classifier.pt", "classifier", config, model.state_dict())
    return path, model.eval()


def test_bundle_loads_with_its_default_target_and_reproduces_the_model(bundle):
    path, model = bundle
    box = load_blackbox(str(path))
    assert (box.target_index, box.target_name, box.in_channels) == (1, "Smiling", 3)
    x = images(size=16)
    torch.testing.assert_close(box(x), torch.sigmoid(model(x))[:, 1])


def test_bundle_target_by_name_or_index(bundle):
    path, _ = bundle
    assert load_blackbox(str(path), target="Big_Eyes").target_index == 2
    assert load_blackbox(str(path), target=0).target_name == "Eyeglasses"
    with pytest.raises(ClassifierError, match="'Young' is not an attribute"):
        load_blackbox(str(path), target="Young")


def test_bundle_of_another_kind_or_with_mismatched_weights_is_refused(bundle, tmp_path):
    path, model = bundle
    other = save_bundle(tmp_path / "oracle.pt", "oracle", {}, model.state_dict())
    with pytest.raises(CheckpointError, match="holds a 'oracle' model, expected 'classifier'"):
        load_blackbox(str(other))
    config = {"arch": "small_cnn", "num_outputs": 4, "image_size": 16, "in_channels": 3}
    wrong = save_bundle(tmp_path / "wrong.pt", "classifier", config, model.state_dict())
    with pytest.raises(CheckpointError, match="does not match its own config"):
        load_blackbox(str(wrong))


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_file_loads_and_name_targets_need_an_index(tmp_path):
    model = ChannelMeans().eval()
    path = tmp_path / "model.ts"
    torch.jit.trace(model, images()).save(str(path))
    box = load_blackbox(str(path), output=1, activation="sigmoid")
    x = images()
    torch.testing.assert_close(box(x), torch.sigmoid(model(x))[:, 1])
    with pytest.raises(ClassifierError, match="has no attribute names; pass the output index"):
        load_blackbox(str(path), output="Smiling")


def test_torch_export_file_loads_and_stays_in_eval_mode(tmp_path):
    model = ChannelMeans().eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (images(),), dynamic_shapes=({0: batch},))
    path = tmp_path / "model.pt2"
    torch.export.save(program, str(path))
    box = load_blackbox(str(path), output=0, activation="sigmoid")
    box.train()
    x = images(n=5)
    torch.testing.assert_close(box(x), torch.sigmoid(model(x))[:, 0])


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    source = (
        "import torch\n"
        "def build():\n    return torch.nn.Linear(3, 2)\n"
        "def not_a_model():\n    return 42\n"
    )
    (tmp_path / "user_classifier.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "user_classifier.py"
    sys.modules.pop("user_classifier", None)


def test_import_path_needs_explicit_permission(user_module):
    with pytest.raises(ConfigError, match="would import and run Python code.*allow_import=True"):
        load_blackbox("user_classifier:build")
    box = load_blackbox("user_classifier:build", output=1, activation="sigmoid", allow_import=True)
    x = torch.rand(2, 3, 1, 1)
    expected = torch.sigmoid(box.model(x.flatten(1)))[:, 1]
    box.model = nn.Sequential(nn.Flatten(), box.model)
    torch.testing.assert_close(box(x), expected)


def test_import_path_errors_name_the_path(user_module):
    with pytest.raises(ClassifierError, match="returned a int; expected an nn.Module"):
        load_blackbox("user_classifier:not_a_model", allow_import=True)
    with pytest.raises(ConfigError, match="cannot import 'user_classifier:missing'"):
        load_blackbox("user_classifier:missing", allow_import=True)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="classifier file not found"):
        load_blackbox(str(tmp_path / "nope.pt"))


def test_fingerprint_is_the_file_hash_and_tracks_changes(bundle, user_module):
    path, _ = bundle
    assert classifier_fingerprint(str(path)) == file_sha256(path)
    assert classifier_fingerprint("user_classifier:build") == file_sha256(user_module)
    before = classifier_fingerprint(str(path))
    path.write_bytes(path.read_bytes() + b"\0")
    assert classifier_fingerprint(str(path)) != before
