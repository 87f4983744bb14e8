"""Tiny stub models and files shared by the tests, by the package whose tests use them.

- models: classifiers whose answer is known by construction (a region's mean, a linear or
  quadratic logit, small ReLU nets, a channel's brightness, a 2-class softmax), classifier files
  as users hand them to cfgen, an autoencoder whose code is known;
- explain: exact explainers of `RegionClassifier`;
- train: explainer modules of tiny networks, and what DDP tests read back;
- evaluate: what a metric group must report in a known case.
"""

import pytorch_lightning as pl
import torch

from cfgen.explain.base import CounterfactualExplainer, Explainer

# --- models: classifiers with known answers ---------------------------------------------------


class RegionClassifier(torch.nn.Module):
    """f(x) = sigmoid(scale * mean of channel 0 inside a square region): (N, C, H, W) -> (N,)."""

    def __init__(self, size: int = 8, region: slice = slice(2, 5), scale: float = 4.0) -> None:
        super().__init__()
        self.mask = torch.zeros(1, 1, size, size)
        self.mask[..., region, region] = 1.0
        self.scale = scale

    def region_mean(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :1] * self.mask).sum(dim=(1, 2, 3)) / self.mask.sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.scale * self.region_mean(x))


class LinearClassifier(torch.nn.Module):
    """f(x) = sigmoid(<weight, x> + bias): (N, C, H, W) -> (N,); the logit's gradient: `weight`."""

    def __init__(self, shape: tuple[int, int, int] = (1, 8, 8), bias: float = 0.0) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(shape) / shape[-1])
        self.bias = torch.nn.Parameter(torch.tensor(bias))

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(dim=1) + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(x))


class QuadraticClassifier(torch.nn.Module):
    """f(x) = sigmoid(x'Ax / 2 + b'x) on flattened x: the logit's Hessian is the symmetric A."""

    def __init__(self, hessian: torch.Tensor, linear: torch.Tensor, shape: tuple) -> None:
        super().__init__()
        self.hessian, self.linear, self.shape = hessian, linear, shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        logit = 0.5 * ((flat @ self.hessian) * flat).sum(dim=1) + flat @ self.linear
        return torch.sigmoid(logit)


class TinyConvNet(torch.nn.Module):
    """Two ReLU conv layers, global pooling, a linear head, sigmoid: (N, C, H, W) -> (N,)."""

    def __init__(self, channels: int = 1, width: int = 8) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(channels, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, width, 3, padding=1),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.features(x).mean(dim=(2, 3)))).squeeze(1)


class OneLayerReLU(torch.nn.Module):
    """f(x) = sigmoid(head . relu(hidden x)) on flattened x, no biases: (N, C, H, W) -> (N,).

    The logit's gradient is sum_h head_h hidden_h [hidden_h . x > 0], so every gradient-based
    map has a closed form; `hidden` and `head` are nn.Linear (randomisable layers).
    """

    def __init__(self, hidden: torch.Tensor, head: torch.Tensor) -> None:
        super().__init__()
        self.flatten = torch.nn.Flatten()
        self.hidden = torch.nn.Linear(hidden.shape[1], hidden.shape[0], bias=False)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Linear(hidden.shape[0], 1, bias=False)
        with torch.no_grad():
            self.hidden.weight.copy_(hidden)
            self.head.weight.copy_(head.view(1, -1))

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.hidden(self.flatten(x)))).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(x))

    def logit_gradient(self, x: torch.Tensor) -> torch.Tensor:
        """The closed form above, (N, C, H, W), from the current weights."""
        hidden, head = self.hidden.weight.detach(), self.head.weight.detach().view(-1)
        active = (self.flatten(x) @ hidden.T > 0).to(x.dtype)  # (N, units)
        return ((active * head) @ hidden).view_as(x)


class ChannelMeanLogit(torch.nn.Module):
    """Logit = scale * mean(channel 0) + bias: (N, C, H, W) -> (N, 1). Brighter = more likely."""

    def __init__(self, scale: float = 4.0, bias: float = 0.0) -> None:
        super().__init__()
        self.scale = scale
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x[:, :1].mean(dim=(1, 2, 3)).unsqueeze(1) + self.bias


class TwoClassLogits(torch.nn.Module):
    """A 2-class softmax classifier: logits (N, 2) = (-z, z), z = scale * mean(channel 0) +
    bias. Its class-1 posterior is softmax's sigmoid(2 z), not sigmoid(z) nor sigmoid(-z): with
    bias 0.42605 a grey (all-zero) image reads 0.701 by softmax, 0.395 as the sigmoid of
    column 0."""

    def __init__(self, scale: float = 2.0, bias: float = 0.42605) -> None:
        super().__init__()
        self.scale = scale
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.scale * x[:, 0].mean(dim=(1, 2)) + self.bias
        return torch.stack([-z, z], dim=1)


def write_two_class_torchscript(path) -> str:
    """`TwoClassLogits` saved as a TorchScript file at `path` (its string)."""
    torch.jit.script(TwoClassLogits()).save(str(path))
    return str(path)


# --- models: classifier files and an autoencoder whose code is known ---------------------------


def write_classifier_bundle(path, size: int = 16, seed: int = 0, channels: int = 3):
    """A cfgen classifier bundle at `path`: an untrained small CNN for Smiling, seeded."""
    from cfgen.io import save_bundle
    from cfgen.models.classifiers import build_classifier

    config = {"arch": "small_cnn", "num_outputs": 1, "image_size": size, "in_channels": channels}
    config |= {"attribute_names": ["Smiling"], "target": "Smiling"}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_classifier("small_cnn", 1, size, channels)
    return save_bundle(path, "classifier", config, model.state_dict())


class TwoPartCode(torch.nn.Module):
    """A linear autoencoder of (N, 1, 8, 8) images with a 2-number code, both parts known.

    decode(z) = z_0 * inside + z_1 * outside, `inside` the region `RegionClassifier` reads,
    `outside` two columns it does not; encode(x) = the mean of x over each part. So
    `RegionClassifier()(decode(z)) = sigmoid(4 z_0)`: the classifier's gradient in code space is
    along z_0 only, and the code reaching posterior t is (logit(t) / 4, z_1).
    """

    image_size, channels = 8, 1

    def __init__(self) -> None:
        super().__init__()
        inside = RegionClassifier().mask[0, 0]
        outside = torch.zeros(8, 8)
        outside[:, 6:] = 1.0
        self.register_buffer("parts", torch.stack([inside, outside]))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.parts / self.parts.sum(dim=(1, 2), keepdim=True)
        return torch.einsum("nhw,khw->nk", x[:, 0], weights)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nk,khw->nhw", codes, self.parts).unsqueeze(1)


# --- explain: exact explainers of RegionClassifier ---------------------------------------------


class ExactCounterfactual(CounterfactualExplainer):
    """Shifts channel 0 inside the classifier's region so that f reaches the target exactly."""

    def counterfactual(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        model = self.classifier
        wanted = torch.logit(target.clamp(1e-4, 1 - 1e-4)) / model.scale
        shift = (wanted - model.region_mean(x)).view(-1, 1, 1, 1)
        change = torch.zeros_like(x)
        change[:, :1] = shift * model.mask
        return x + change


class MaskSaliency(Explainer):
    """The classifier's region as the relevance map, (N, C, H, W): a perfect saliency method."""

    def explain(self, x: torch.Tensor, target=None) -> torch.Tensor:
        return self.classifier.mask.expand_as(x).clone()


# --- train: explainer modules of tiny networks, and what DDP tests read back ------------------


def tiny_networks(**generator) -> dict:
    """`ExplainerModule` options of 4 -> 8 channel networks (built in milliseconds), with
    `generator` options on top (e.g. `output="blend"`)."""
    return {
        "generator": {"width": 4, "max_width": 8, **generator},
        "discriminator": {"width": 4, "max_width": 8},
    }


def export_tiny_explainer(folder, size: int = 16, channels: int = 3):
    """A tiny, untrained `explainer.pt` in `folder` (as training exports it) and its classifier."""
    from cfgen.train.explainer import ExplainerModule

    classifier = str(write_classifier_bundle(folder / "classifier.pt", size, channels=channels))
    module = ExplainerModule(classifier, image_size=size, channels=channels, **tiny_networks())
    with torch.no_grad():  # make the EMA weights differ from the raw ones
        for parameter in module.ema_generator.parameters():
            parameter.add_(0.01)
    return module.export(folder / "explainer.pt"), classifier, module


class DumpWeightsPerRank(pl.Callback):
    """At the end of training, every process saves its module's full state dict as
    `<run>/weights_rank<R>.pt`, so a test can check the processes agree."""

    def on_train_end(self, trainer, pl_module) -> None:
        state = {name: value.detach().cpu() for name, value in pl_module.state_dict().items()}
        torch.save(state, f"{trainer.default_root_dir}/weights_rank{trainer.global_rank}.pt")


# --- evaluate ---------------------------------------------------------------------------------


def judged_like(shift: dict) -> dict:
    """The judge group a judge that is the explained classifier itself must report: the shift
    group's three figures under `judge_` names (PE's shift group also reports its placement)."""
    return {f"judge_{key}": shift[key] for key in ("compat_mae", "flip_rate", "monotonicity")}
