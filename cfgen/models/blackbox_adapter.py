"""`BlackBox`: any classifier seen as one differentiable posterior `(N, C, H, W) -> (N,)`.

    f = BlackBox(my_module, target_index=1, activation="softmax")   # column 1 of a softmax
    f = BlackBox(my_module)          # a classifier of one output column: its sigmoid

The posterior is read from the model's scores `(N, K)` (or `(N,)`) by two choices: which column
is explained (`target_index`) and how scores become a probability (`activation`: sigmoid,
softmax over the K columns, or none for a model that returns probabilities). A model of one
column needs neither (column 0, sigmoid); for several columns both must be chosen, since the
posterior differs (a 2-column softmax model: sigmoid of column 1 is not softmax's column 1),
and a black box whose choice is missing refuses to run with a message naming the options.

The adapter is frozen and always in eval mode (Lightning cannot switch it back to training),
and checks the classifier's output once, on its first call, so that a mis-declared classifier
fails with a message saying what it returned and what to declare, instead of silently
producing meaningless explanations.
"""

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from cfgen.errors import ClassifierError, ConfigError, DataError

Output = Literal["logits", "probabilities"]
Activation = Literal["sigmoid", "softmax", "none"]

# Scores (N, K) -> probabilities (N, K); "none" for a model that returns probabilities already.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "softmax": lambda scores: scores.softmax(dim=1),
    "none": lambda scores: scores,
}
OUTPUTS = ("logits", "probabilities")
# Where a user chooses the two, named in the refusal of a black box whose choice is missing.
CHOICE_OPTIONS = (
    "output=/activation= in Python (load_blackbox, as_blackbox; BlackBox: target_index=), "
    "--model.classifier_output/--model.classifier_activation for cfgen explainer fit, "
    "--classifier-output/--classifier-activation for cfgen generate, "
    "--classifier_output/--classifier_activation for cfgen evaluate"
)


class BlackBox(nn.Module):
    """A frozen classifier returning the posterior of one class: `(N, C, H, W) -> (N,)` in [0, 1].

    Args:
        model: maps images `(N, C, H, W)` to scores `(N, K)` or `(N,)`; any callable.
        target_index: which of the K outputs is the explained class (default: the only one;
            must be given when K > 1).
        output: "logits" or "probabilities" (the same as activation "none", whatever
            `activation` says).
        activation: how logits become probabilities: "sigmoid" (one score per class),
            "softmax" (over the K outputs) or "none" (the model returns probabilities).
            Default: sigmoid for a model of one output; must be given when K > 1.
        in_channels: expected image channels, checked on every call when known.
    """

    def __init__(
        self,
        model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
        target_index: int | None = None,
        output: Output = "logits",
        activation: Activation | None = None,
        in_channels: int | None = None,
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ConfigError(f"output={output!r} is not one of {list(OUTPUTS)}")
        if activation is not None and activation not in ACTIVATIONS:
            raise ConfigError(f"activation={activation!r} is not one of {list(ACTIVATIONS)}")
        self.model = model
        self.target_index = None if target_index is None else int(target_index)
        self.activation = "none" if output == "probabilities" else activation
        self.in_channels = in_channels
        # Names of the K outputs when known (bundles record them), for messages and reports.
        self.attribute_names: list[str] | None = None
        self.checked = False
        self.requires_grad_(False)
        self.train(False)

    @property
    def output(self) -> Output:
        """ "probabilities" when the model returns them (activation "none"), else "logits"."""
        return "probabilities" if self.activation == "none" else "logits"

    @property
    def target_name(self) -> str | None:
        """Name of the explained output, when the classifier's attribute names are known."""
        names, index = self.attribute_names, self.target_index
        return names[index] if names and index is not None and index < len(names) else None

    def train(self, mode: bool = True) -> "BlackBox":
        """Always eval mode: batch-norm statistics and dropout of the black box never change."""
        # Set the flags directly: torch.export modules raise on train()/eval() calls.
        for module in self.modules():
            module.training = False
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in [-1, 1] -> (N,) posterior of the target class, differentiable."""
        scores = self._scores(images)  # checked first: the activation may not be chosen yet
        return ACTIVATIONS[self.activation](scores)[:, self.target_index]

    def _scores(self, images: torch.Tensor) -> torch.Tensor:
        """The model's scores (N, K) of checked images; the scores checked on first use."""
        self._check_input(images)
        scores = self.model(images)
        if len(images) == 0:  # an empty batch: no posteriors, no values to check yet
            columns = scores.shape[1] if scores.ndim == 2 else 1
            self._choose_reading(columns)
            return scores.reshape(0, columns)
        if not self.checked:
            self._check_scores(images, scores)
            self.checked = True
        return scores.reshape(len(images), -1)

    def logit(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N,) logit of the target class, read from the model's scores so that
        its gradient survives where the float32 posterior is exactly 0 or 1: the score itself
        (sigmoid), the score minus the log-sum-exp of the others (softmax: the log-odds of the
        class against the rest), or the log-odds of a model that returns probabilities."""
        scores = self._scores(images)
        target = scores[:, self.target_index]
        if self.activation == "none":
            return torch.logit(target.clamp(1e-7, 1 - 1e-7))
        if self.activation == "sigmoid":
            return target
        others = torch.cat([scores[:, : self.target_index], scores[:, self.target_index + 1 :]], 1)
        return target - others.logsumexp(dim=1)

    def check(self, example: torch.Tensor) -> None:
        """Run the output checks now on `example` `(N, C, H, W)` instead of on first use."""
        self.checked = False
        with torch.no_grad():
            self(example)

    def _check_input(self, images: torch.Tensor) -> None:
        if images.ndim != 4:
            raise ClassifierError(
                f"the black box takes images (N, C, H, W); got a tensor of shape "
                f"{tuple(images.shape)}"
            )
        if self.in_channels is not None and images.shape[1] != self.in_channels:
            raise ClassifierError(
                f"the classifier expects {self.in_channels}-channel images; got "
                f"{images.shape[1]} channels (shape {tuple(images.shape)})"
            )
        # Checked on every call, not only the first: a NaN would otherwise flow silently into
        # posteriors, strips and metrics.
        if not bool(torch.isfinite(images).all()):
            raise DataError(
                f"the images given to the classifier contain NaN or inf (shape "
                f"{tuple(images.shape)}); clean the queries, or, if they were generated, the "
                "explainer's weights are broken"
            )

    def _check_scores(self, images: torch.Tensor, scores: torch.Tensor) -> None:
        """Check shape, the reading's choices, finiteness and range of the raw output."""
        if not isinstance(scores, torch.Tensor):
            raise ClassifierError(
                f"the classifier returned a {type(scores).__name__}; expected a tensor of scores "
                "(N, K) or (N,). Wrap the model so that forward returns that tensor"
            )
        batch = len(images)
        if scores.ndim not in (1, 2) or scores.shape[0] != batch:
            raise ClassifierError(
                f"the classifier returned shape {tuple(scores.shape)} for {batch} images; "
                f"expected ({batch}, K) or ({batch},)"
            )
        self._choose_reading(1 if scores.ndim == 1 else scores.shape[1])
        if not torch.isfinite(scores).all():
            raise ClassifierError(
                f"the classifier returned non-finite values (NaN or inf) for input of shape "
                f"{tuple(images.shape)}; check its weights and that images are in [-1, 1]"
            )
        low, high = scores.min().item(), scores.max().item()
        if self.output == "probabilities" and (low < 0 or high > 1):
            raise ClassifierError(
                f"classifier returned values in [{low:.3g}, {high:.3g}] but "
                "output='probabilities' was declared; declare output='logits'"
            )

    def _choose_reading(self, num_outputs: int) -> None:
        """Column and activation of a model of `num_outputs` columns: the defaults of one
        column, else what was chosen; a missing choice for several columns is refused."""
        missing = [
            name
            for name, value in (("output", self.target_index), ("activation", self.activation))
            if value is None
        ]
        if missing and num_outputs > 1:
            raise ClassifierError(
                f"the classifier returns {num_outputs} outputs per image but its "
                f"{' and '.join(missing)} {'was' if len(missing) == 1 else 'were'} not chosen "
                "(sigmoid and softmax read different posteriors from them): give the explained "
                f"output (an index in [0, {num_outputs - 1}] or a name) and the activation "
                f"(sigmoid, softmax or none): {CHOICE_OPTIONS}"
            )
        self.target_index = 0 if self.target_index is None else self.target_index
        self.activation = self.activation or "sigmoid"
        if not 0 <= self.target_index < num_outputs:
            raise ClassifierError(
                f"target_index={self.target_index} is out of range: the classifier has "
                f"{num_outputs} output(s), so use an index in [0, {num_outputs - 1}]"
            )
        if self.activation == "softmax" and num_outputs < 2:
            raise ClassifierError(
                "activation='softmax' needs at least 2 outputs but the classifier has 1; "
                "declare activation='sigmoid'"
            )

    def reading(self) -> dict:
        """How the posterior is read (after the first call): the explained output's index and
        name, and the activation. What an explainer records about its classifier."""
        return {
            "output": self.target_index,
            "output_name": self.target_name,
            "activation": self.activation,
        }
