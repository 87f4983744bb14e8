"""What the explainer's training steps are made of, apart from the module that runs them.

- `generator_steps_done` / `optimizer_steps`: the one conversion between generator steps and
  Lightning's optimiser steps (n_critic discriminator steps + 1 generator step each);
- `generator_optimizers`: Adam for both networks, with the learning rates' decay;
- `warmup_ema`: the averaging rule of the EMA generator (`torch.optim.swa_utils.AveragedModel`);
- `standing_statistics`: batch-norm statistics of the edit pass, recomputed for the weights that
  will render (what `torch.optim.swa_utils.update_bn` does for a model of one input), over the
  last training batches that `RecentBatches` keeps;
- `validation_figures`: what validation logs, from the black box alone;
- `critic_auc`: how well a critic tells the validation queries from their far frames;
- `FakeHistory`: the frames the discriminator saw before, half of each step's fakes.
"""

from collections import deque
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from cfgen.bins import posterior_to_bin
from cfgen.errors import ConfigError
from cfgen.evaluate.shift import shift_summary
from cfgen.explain.rendering import generator_strip
from cfgen.explain.strip import Strip
from cfgen.train.explainer_options import Optimisation


def generator_steps_done(global_step: int, n_critic: int) -> int:
    """Generator steps made after `global_step` optimiser steps (n_critic D steps + 1 G step
    per generator step)."""
    return global_step // (n_critic + 1)


def optimizer_steps(generator_steps: int, n_critic: int) -> int:
    """Optimiser steps (Lightning's `max_steps`) that make `generator_steps` generator steps."""
    return generator_steps * (n_critic + 1)


def linear_decay(total_steps: int, fraction: float) -> Callable[[int], float]:
    """`LambdaLR` factor of a run of `total_steps` (generator steps): 1 until the last
    `fraction` of the run, then linear to 0 at its end (CycleGAN's schedule); 1 throughout when
    `fraction` is 0."""
    start = total_steps * (1.0 - fraction)

    def factor(step: int) -> float:
        if fraction <= 0 or step < start:
            return 1.0
        return max(0.0, (total_steps - step) / (total_steps - start))

    return factor


def generator_optimizers(
    generator: nn.Module, discriminator: nn.Module, options: Optimisation, max_steps: int | None
):
    """Adam for the generator and the discriminator (`Optimisation`), and, with `lr_decay`,
    their `LambdaLR` schedules over a run of `max_steps` optimiser steps (Lightning's
    `configure_optimizers` return value)."""
    betas = (options.beta1, options.beta2)
    optimizers = [
        torch.optim.Adam(generator.parameters(), options.lr_generator, betas=betas),
        torch.optim.Adam(discriminator.parameters(), options.lr_discriminator, betas=betas),
    ]
    if options.lr_decay == 0:
        return optimizers
    if max_steps is None or max_steps <= 0:
        raise ConfigError(
            "optimisation.lr_decay needs the run's length: give --generator_steps (or "
            "--trainer.max_steps)"
        )
    factor = linear_decay(generator_steps_done(max_steps, options.n_critic), options.lr_decay)
    return optimizers, [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in optimizers]


def warmup_ema(decay: float) -> Callable[[list, list, torch.Tensor], None]:
    """`AveragedModel` multi_avg_fn: average <- d * average + (1 - d) * model, in place, with
    d = min(decay, (1 + k) / (10 + k)) after k updates, so that early on the average is not
    dominated by the random initial weights. Integer buffers (BN batch counters) are copied."""

    def average(averaged: list, current: list, num_averaged: torch.Tensor) -> None:
        steps = int(num_averaged)
        weight = 1.0 - min(decay, (1 + steps) / (10 + steps))
        for mean, value in zip(averaged, current, strict=True):
            if mean.is_floating_point():
                mean.lerp_(value, weight)
            else:
                mean.copy_(value)

    return average


class _EditPass(nn.Module):
    """`generator` called on one `(images, source_bin, target_bin)` batch, as
    `torch.optim.swa_utils.update_bn` calls a model on one input: the edit pass."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, source_bin, target_bin = batch
        return self.generator.render(images, target_bin, source_bin).image


def standing_statistics(
    generator: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
) -> bool:
    """Recompute the running statistics of `generator`'s batch norms as the cumulative average
    over the edit pass `generator.render(images, target_bin, source_bin)` of each
    `(images, source_bin, target_bin)` of `batches`, in training mode (batch statistics, as in
    the training step's edit), with `torch.optim.swa_utils.update_bn` (which restores the
    generator's mode and the norms' momenta).

    Why: training updates the running averages in every pass of its step (the edit, the cycle
    on generated images, the identity), each with statistics of its own, and by the raw weights,
    not the averaged ones that render; inference renders real queries at target bins only
    (docs/DESIGN.md, "Batch-norm statistics"). Returns False (nothing done) when the
    generator has no batch norm or `batches` is empty.
    """
    batches = list(batches)
    norms = (m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    if not batches or next(norms, None) is None:
        return False
    # update_bn reads the first element of a list as the model's input: one batch per list.
    # The wrapper starts in the generator's mode: update_bn restores the mode it found.
    update_bn([[batch] for batch in batches], _EditPass(generator).train(generator.training))
    return True


class RecentBatches:
    """The last training batches (images, their bins) holding at least `images` images: what
    the EMA generator's statistics are recomputed from (`standing_statistics`)."""

    def __init__(self, images: int) -> None:
        self.images = images
        self.batches: deque[tuple[torch.Tensor, torch.Tensor]] = deque()

    def __len__(self) -> int:
        return len(self.batches)

    def add(self, images: torch.Tensor, bins: torch.Tensor) -> None:
        """Keep a batch (N, C, H, W), (N,); drop the oldest ones no longer needed."""
        self.batches.append((images.detach(), bins.detach()))
        kept = sum(len(batch) for batch, _ in self.batches)
        while kept - len(self.batches[0][0]) >= self.images:
            kept -= len(self.batches.popleft()[0])

    def at_random_bins(self, n_bins: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Each kept batch with target bins drawn from a generator of its own (seed 0), so
        that training's random stream is untouched: `(images, source_bin, target_bin)`."""
        draws = torch.Generator().manual_seed(0)
        return [
            (images, bins, torch.randint(n_bins, bins.shape, generator=draws).to(bins))
            for images, bins in self.batches
        ]


class FakeHistory:
    """Up to `size` of the frames the discriminator was shown, with their bins: half of each
    discriminator step's fakes are drawn from it once it holds a batch, so that the critics go
    on calling fake what the generator drew earlier instead of forgetting it as the generator
    moves on (a history of refined images: Shrivastava et al., "Learning from simulated and
    unsupervised images through adversarial training", CVPR 2017). Kept in memory only: a
    resumed run starts it empty."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: torch.Tensor | None = None
        self.bins: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.images is None else len(self.images)

    def mix(self, fakes: torch.Tensor, bins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`fakes` (N, C, H, W) and their `bins` (N,) with a random half of them swapped for
        frames of the history (once it holds N, or is full); then the current fakes join the
        history, each taking a random place once it is full."""
        fakes, bins = fakes.detach(), bins.detach()
        mixed, mixed_bins = fakes, bins
        if len(self) and len(self) >= min(len(fakes), self.size):
            swapped = torch.randperm(len(fakes), device=fakes.device)[: len(fakes) // 2]
            drawn = torch.randint(len(self), (len(swapped),), device=fakes.device)
            mixed, mixed_bins = fakes.clone(), bins.clone()
            mixed[swapped], mixed_bins[swapped] = self.images[drawn], self.bins[drawn]
        if self.images is None:
            self.images, self.bins = fakes[: self.size].clone(), bins[: self.size].clone()
            fakes, bins = fakes[self.size :], bins[self.size :]
        if len(fakes):
            room = min(self.size - len(self), len(fakes))
            self.images = torch.cat([self.images, fakes[:room]])
            self.bins = torch.cat([self.bins, bins[:room]])
            if room < len(fakes):
                places = torch.randint(len(self), (len(fakes) - room,), device=fakes.device)
                self.images[places], self.bins[places] = fakes[room:], bins[room:]
        return mixed, mixed_bins


def broadcast_from_rank_zero(tensors: Iterable[torch.Tensor]) -> None:
    """Give every process rank 0's values of `tensors`, in place (a no-op outside DDP)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for tensor in tensors:
            torch.distributed.broadcast(tensor, src=0)


@torch.no_grad()
def validation_figures(
    generator: nn.Module,
    classifier: Callable[[torch.Tensor], torch.Tensor],
    queries: torch.Tensor,
    n_bins: int,
    bin_target_kind: str = "centre",
) -> tuple[Strip, dict[str, float]]:
    """The generator's strips of `queries` (N, C, H, W) at every bin, rendered in eval mode, and
    their figures: compat MAE, flip rate, monotonicity (`shift_summary`) and identity L1, the
    mean |x - I(x, c_x)| at each query's own bin c_x. Only the black box is used."""
    training = generator.training
    generator.eval()
    try:
        strip = generator_strip(generator, classifier, queries, n_bins)
    finally:
        generator.train(training)
    figures = shift_summary(
        strip.posteriors, strip.target_bins, strip.query_posteriors, n_bins, bin_target_kind
    )
    own_bin = posterior_to_bin(strip.query_posteriors, n_bins)
    same = strip.images[own_bin, torch.arange(len(queries), device=own_bin.device)]
    figures["identity_l1"] = (same - queries).abs().mean().item()
    return strip, figures


def critic_auc(
    critic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    queries: torch.Tensor,
    strip: Strip,
    n_bins: int,
) -> float:
    """How well `critic(images, bins) -> (N,)` scores (high = real) tell real images from the
    far frames (`Strip.far_end`) of the same bin: every far frame, in its target bin, against
    every query (N, C, H, W) whose own bin that is, in it. The AUC over those pairs: 0.5 when
    the critic cannot tell them apart, 1.0 when every real image scores above every frame; NaN
    when no query lies in an end bin. Pairs of one bin only, because a conditional critic adds a
    term per bin that would otherwise decide the comparison. Read during training it says
    whether the critic still sees what the generator draws (docs/DESIGN.md, "What the critic
    sees during a run")."""
    own_bin = posterior_to_bin(strip.query_posteriors, n_bins).to(queries.device)
    goes_up = strip.query_posteriors.to(queries.device) < 0.5
    far_bin = torch.where(goes_up, strip.target_bins[-1], strip.target_bins[0]).to(own_bin)
    with torch.no_grad():
        real = critic(queries, own_bin).float()
        fake = critic(strip.far_end().to(queries), far_bin).float()
    same_bin = (own_bin[:, None] == far_bin[None, :]).float()
    wins = (real[:, None] > fake[None, :]).float() + 0.5 * (real[:, None] == fake[None, :]).float()
    pairs = same_bin.sum()
    return (wins * same_bin).sum().item() / pairs.item() if pairs > 0 else float("nan")
