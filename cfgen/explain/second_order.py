"""Second-order, group-feature saliency (Singla, Wallace, Feng, Feizi, ICML 2019).

Saliency as the perturbation that most increases the score s toward the target under its
second-order expansion, with a sparsity penalty over groups of features:

    delta* = argmax_d  g.d + d'Hd / 2 - l2 |d|^2 - l1 sum_G |d_G|_2

g and H are the gradient and Hessian of s at x (per query). The paper's L0 "few features"
constraint is relaxed to an L1 penalty; with groups (square `group_size`-px tiles over all
channels) it is the group-lasso norm, whose proximal map is group soft-thresholding. The l2 term
keeps the problem concave: cfgen raises l2 to at least `(1 + margin) * rho / 2`, rho the
spectral radius of H estimated by power iteration on Hessian-vector products, so the
proximal-gradient ascent (step 1 / (2 l2 + rho)) converges without a user tuning l2 per model.

Closed forms (tested): with H = 0, delta_G = max(0, 1 - l1/|g_G|) g_G / (2 l2), the
group-thresholded gradient; with l1 = 0, delta = (2 l2 I - H)^-1 g.

The default score is `log_posterior` (log-probability of the target side, the paper's
cross-entropy): a ReLU network's logit is piecewise linear (zero Hessian) and the curvature the
paper studies comes from the output non-linearity. Positive map = evidence toward the target.
"""

from collections.abc import Callable

import torch

from cfgen.errors import ConfigError
from cfgen.explain.base import Classifier, Explainer
from cfgen.explain.score import DirectionScore, direction_index

HessianProduct = Callable[[torch.Tensor], torch.Tensor]


def group_soft_threshold(
    delta: torch.Tensor, threshold: float | torch.Tensor, group_size: int
) -> torch.Tensor:
    """Proximal map of `threshold * sum_G |d_G|_2`, groups = square tiles over all channels.

    delta: (N, C, H, W) with H and W multiples of `group_size`; threshold: a float or one per
    query, (N, 1, 1, 1) -> (N, C, H, W).
    """
    n, c, h, w = delta.shape
    tiles = delta.reshape(n, c, h // group_size, group_size, w // group_size, group_size)
    norms = tiles.pow(2).sum(dim=(1, 3, 5), keepdim=True).sqrt()
    threshold = torch.as_tensor(threshold).to(delta)
    if threshold.dim():
        threshold = threshold.view(n, 1, 1, 1, 1, 1)
    shrink = (1 - threshold / norms.clamp_min(1e-12)).clamp_min(0.0)
    return (tiles * shrink).reshape(n, c, h, w)


def gradient_and_hvp(
    score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, HessianProduct]:
    """Gradient of a per-query score at x, (N, C, H, W), and v -> H v for every query at once.

    Queries are independent (the classifier must not mix samples, e.g. BatchNorm in eval mode),
    so the Hessian of the summed score is block-diagonal and one double backward serves all.
    """
    x = x.detach().requires_grad_()
    (gradient,) = torch.autograd.grad(score(x).sum(), x, create_graph=True)

    def hvp(vector: torch.Tensor) -> torch.Tensor:
        (product,) = torch.autograd.grad(
            gradient, x, grad_outputs=vector, retain_graph=True, allow_unused=True
        )
        # A piecewise-linear score leaves the gradient unconnected to x: H = 0.
        return torch.zeros_like(x) if product is None else product

    return gradient.detach(), hvp


def _norms(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def spectral_radius(hvp: HessianProduct, like: torch.Tensor, iterations: int) -> torch.Tensor:
    """Largest |eigenvalue| of each query's Hessian by power iteration, (N, 1, 1, 1)."""
    vector = torch.randn_like(like)
    vector = vector / _norms(vector).clamp_min(1e-12)
    radius = torch.zeros_like(_norms(vector))  # iterations = 0: no curvature estimate
    for _ in range(iterations):
        product = hvp(vector)
        radius = _norms(product)
        vector = product / radius.clamp_min(1e-12)
    return radius


def solve_second_order(
    gradient: torch.Tensor,
    hvp: HessianProduct,
    l1: float,
    l2: float,
    group_size: int,
    steps: int,
    power_iterations: int = 20,
    margin: float = 0.5,
) -> torch.Tensor:
    """Proximal-gradient ascent on the objective of the module docstring, (N, C, H, W).

    Power iteration approaches rho from below; `margin` covers its shortfall.
    `power_iterations=0` trusts `l2` alone (rho taken as 0).
    """
    rho = spectral_radius(hvp, gradient, power_iterations)
    l2 = torch.maximum(torch.full_like(gradient[:, :1, :1, :1], l2), (1 + margin) * rho / 2)
    step = 1.0 / (2 * l2 + rho)
    delta = torch.zeros_like(gradient)
    for _ in range(steps):
        ascent = gradient + hvp(delta) - 2 * l2 * delta
        delta = group_soft_threshold(delta + step * ascent, step * l1, group_size)
    return delta


class SecondOrderSaliency(Explainer):
    """Hessian-aware, group-sparse saliency. `explain`: (N, C, H, W) -> (N, C, H, W)."""

    def __init__(
        self,
        classifier: Classifier,
        l1: float = 0.0,
        l2: float = 1.0,
        group_size: int = 1,
        steps: int = 50,
        power_iterations: int = 20,
        score: str = "log_posterior",
    ) -> None:
        super().__init__(classifier)
        if l1 < 0 or l2 <= 0 or group_size < 1 or steps < 1:
            raise ConfigError(
                f"second-order saliency needs l1 >= 0, l2 > 0, group_size >= 1, steps >= 1; "
                f"got l1={l1}, l2={l2}, group_size={group_size}, steps={steps}"
            )
        self.l1, self.l2, self.group_size = l1, l2, group_size
        self.steps, self.power_iterations = steps, power_iterations
        self.model = DirectionScore(classifier, score)

    def explain(self, x: torch.Tensor, target: float | torch.Tensor | None = None) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % self.group_size or width % self.group_size:
            raise ConfigError(
                f"group_size {self.group_size} must divide the image size {height}x{width}"
            )
        index = direction_index(self.classifier, x, target)
        rows = torch.arange(x.shape[0], device=x.device)
        with torch.enable_grad():
            gradient, hvp = gradient_and_hvp(lambda z: self.model(z)[rows, index], x)
            delta = solve_second_order(
                gradient,
                hvp,
                self.l1,
                self.l2,
                self.group_size,
                self.steps,
                self.power_iterations,
            )
        return delta.detach()
