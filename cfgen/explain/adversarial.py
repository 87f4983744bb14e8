"""Adversarial counterfactuals: the least pixel change that moves f to a target.

They reach the target posterior but are not realistic images, which the realism metrics show;
per-query optimisation is also what PE's amortised, one-pass explainer is timed against.

- `AdversarialCounterfactual`: targeted PGD or FGSM from `captum.robust` toward the target's
  side (captum's `targeted=True` steps *down* the gradient of the cross-entropy to label 1 when
  the target lies above f(x), to 0 below). The most the attack can move f grows with the
  L-infinity radius, so a bisection on each query's radius finds the smallest radius at which
  f(x') reaches the target posterior, then a bisection on the segment between the images just
  short of and just past the target lands on it (queries already within `tolerance` stay as
  they are). Strips land on their bins instead of jumping to the far end. (Minimising the
  cross-entropy to the target posterior itself instead makes sign steps oscillate around it
  at large radii, which breaks the bisection.) The radius is passed to captum as an
  (N, 1, 1, 1) tensor: captum's PGD and FGSM only use it in broadcasting arithmetic and
  `torch.clamp`. A target beyond reach at `max_radius` gets the attack at `max_radius`.
- `OptimisationCounterfactual`: Adam on x' minimising BCE(f(x'), target) + l1_weight |x' - x|_1
  (mean over pixels), a fixed step budget per query.
- `minimal_flip_radius`: captum's `MinParamPerturbation` (binary search), one query at a time,
  for the smallest radius that flips the decision.

Images stay in [-1, 1].
"""

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from captum.robust import FGSM, PGD, MinParamPerturbation

from cfgen.errors import ConfigError
from cfgen.explain.base import Classifier, CounterfactualExplainer, resolve_target
from cfgen.explain.options import check_options, factory_options
from cfgen.explain.score import explained_logit

LOW, HIGH = -1.0, 1.0

Attack = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def target_loss(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-query cross-entropy between the explained logits and target posteriors, (N,), (N,) ->
    (N,)."""
    return F.binary_cross_entropy_with_logits(logit, target, reduction="none")


def _logit_of(classifier: Classifier) -> Classifier:
    """The classifier's explained logit (`explained_logit`): what the attacks differentiate."""
    return lambda images: explained_logit(classifier, images)


def _without_grad_warning(attack: Attack) -> Attack:
    """captum warns each time it switches on the input's gradient, which attacks always need."""

    def quiet(x: torch.Tensor, radius: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Input Tensor 0 did not already require gradients")
            return attack(x, radius, target)

    return quiet


def _pgd(classifier: Classifier, steps: int = 10, step_factor: float = 2.5) -> Attack:
    """Targeted PGD; step size = step_factor * radius / steps (Madry et al.'s rule)."""
    pgd = PGD(_logit_of(classifier), target_loss, lower_bound=LOW, upper_bound=HIGH)

    def attack(x: torch.Tensor, radius: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        step_size = step_factor * radius / steps
        return pgd.perturb(x, radius, step_size, steps, target, targeted=True)

    return _without_grad_warning(attack)


def _fgsm(classifier: Classifier) -> Attack:
    """Targeted FGSM: one signed-gradient step of size `radius`."""
    fgsm = FGSM(_logit_of(classifier), target_loss, lower_bound=LOW, upper_bound=HIGH)
    return _without_grad_warning(
        lambda x, radius, target: fgsm.perturb(x, radius, target, targeted=True)
    )


ATTACKS: dict[str, Callable[..., Attack]] = {"pgd": _pgd, "fgsm": _fgsm}


def build_attack(classifier: Classifier, attack: str, **options) -> Attack:
    """The attack of `ATTACKS[attack]`, a `ConfigError` listing them when unknown."""
    if attack not in ATTACKS:
        raise ConfigError(f"unknown attack {attack!r}; choose one of {sorted(ATTACKS)}")
    check_options(attack, factory_options(ATTACKS[attack]), options)
    return ATTACKS[attack](classifier, **options)


def _reached(posterior: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Whether each posterior has reached its target in the asked direction, (N,) bool."""
    return torch.where(up, posterior >= target, posterior <= target)


class AdversarialCounterfactual(CounterfactualExplainer):
    """Targeted PGD / FGSM with a per-query bisection on the radius.

    `counterfactual(x, target)`: x (N, C, H, W), target (N,) -> (N, C, H, W).
    """

    def __init__(
        self,
        classifier: Classifier,
        attack: str = "pgd",
        max_radius: float = 1.0,
        search_steps: int = 8,
        tolerance: float = 0.02,
        **attack_options,
    ) -> None:
        super().__init__(classifier)
        if max_radius <= 0 or search_steps < 1 or tolerance < 0:
            raise ConfigError(
                f"need max_radius > 0, search_steps >= 1, tolerance >= 0; got {max_radius}, "
                f"{search_steps}, {tolerance}"
            )
        self.attack = build_attack(classifier, attack, **attack_options)
        self.max_radius, self.search_steps, self.tolerance = max_radius, search_steps, tolerance

    def _posterior(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.classifier(x)

    def counterfactual(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        target = resolve_target(self.classifier, x, target)
        start = self._posterior(x)
        todo = (start - target).abs() > self.tolerance
        result = x.clone()
        if todo.any():
            queries, goals, up = x[todo], target[todo], target[todo] >= start[todo]
            short, reached = self._search_radius(queries, goals, up)
            result[todo] = self._blend(short, reached, goals, up)
        return result

    def _search_radius(self, x: torch.Tensor, target: torch.Tensor, up: torch.Tensor):
        """Bisect each query's radius: images just short of the target and just past it."""
        side = up.float()
        low = torch.zeros_like(target).view(-1, 1, 1, 1)
        high = torch.full_like(low, self.max_radius)
        with torch.enable_grad():
            short, reached = x, self.attack(x, high, side)
            for _ in range(self.search_steps):
                middle = (low + high) / 2
                candidate = self.attack(x, middle, side)
                ok = _reached(self._posterior(candidate), target, up).view(-1, 1, 1, 1)
                high, low = torch.where(ok, middle, high), torch.where(ok, low, middle)
                reached = torch.where(ok, candidate, reached)
                short = torch.where(ok, short, candidate)
        return short.detach(), reached.detach()

    def _blend(self, short, reached, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """Bisect on the segment short -> reached, inside the ball of the reached radius.

        PGD's sign steps make f jump between nearby radii; along the segment f is continuous,
        so the image that lands on the target lies on it (unless even `max_radius` fell short).
        """
        low = torch.zeros_like(target).view(-1, 1, 1, 1)
        high = torch.ones_like(low)
        for _ in range(self.search_steps):
            middle = (low + high) / 2
            ok = _reached(self._posterior(short + middle * (reached - short)), target, up)
            ok = ok.view(-1, 1, 1, 1)
            high, low = torch.where(ok, middle, high), torch.where(ok, low, middle)
        return short + high * (reached - short)


class OptimisationCounterfactual(CounterfactualExplainer):
    """Per-query optimisation: Adam on x', BCE to the target + `l1_weight` * mean |x' - x|.

    `counterfactual(x, target)`: x (N, C, H, W), target (N,) -> (N, C, H, W).
    """

    def __init__(
        self, classifier: Classifier, steps: int = 100, lr: float = 0.01, l1_weight: float = 0.1
    ) -> None:
        super().__init__(classifier)
        if steps < 1 or lr <= 0 or l1_weight < 0:
            raise ConfigError(
                f"need steps >= 1, lr > 0, l1_weight >= 0; got {steps}, {lr}, {l1_weight}"
            )
        self.steps, self.lr, self.l1_weight = steps, lr, l1_weight

    def counterfactual(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        target = resolve_target(self.classifier, x, target)
        change = torch.zeros_like(x, requires_grad=True)
        optimiser = torch.optim.Adam([change], lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.steps):
                moved = (x + change).clamp(LOW, HIGH)
                distance = (moved - x).abs().flatten(1).mean(dim=1)
                # Summed over queries: each query's step is independent of the batch size.
                logit = explained_logit(self.classifier, moved)
                loss = target_loss(logit, target) + self.l1_weight * distance
                # Only the change gets a gradient: the classifier's weights stay untouched.
                (change.grad,) = torch.autograd.grad(loss.sum(), change)
                optimiser.step()
        return (x + change).clamp(LOW, HIGH).detach()


def minimal_flip_radius(
    classifier: Classifier,
    x: torch.Tensor,
    attack: str = "pgd",
    max_radius: float = 1.0,
    resolution: float = 0.01,
    threshold: float = 0.5,
    **attack_options,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest L-infinity radius at which the attack flips each query's decision.

    Uses `captum.robust.MinParamPerturbation` (binary search on a `resolution` grid), one query
    at a time as captum advises. Returns radii (N,) (inf where `max_radius` does not flip) and
    the flipped images (N, C, H, W) (the query itself where it does not flip).
    """
    perturb = build_attack(classifier, attack, **attack_options)
    target = resolve_target(classifier, x, None)

    def still_same_side(posterior: torch.Tensor, start: torch.Tensor) -> bool:
        return bool(((posterior >= threshold) == (start >= threshold)).all())

    radii, images = [], []
    for query, goal in zip(x.detach().split(1), target.split(1), strict=True):
        search = MinParamPerturbation(
            classifier,
            lambda inputs, radius, goal=goal: perturb(inputs, inputs.new_tensor(radius), goal),
            arg_name="radius",
            arg_min=0.0,
            arg_max=max_radius + resolution,
            arg_step=resolution,
            mode="binary",
            correct_fn=still_same_side,
        )
        with torch.enable_grad():
            image, radius = search.evaluate(
                query, correct_fn_kwargs={"start": classifier(query).detach()}
            )
        radii.append(float("inf") if radius is None else radius)
        images.append(query if image is None else image.detach())
    return torch.tensor(radii, device=x.device), torch.cat(images)
