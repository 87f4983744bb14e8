"""Latent shift (Cohen et al., "Gifsplanation via Latent Shift", MIDL 2021): the cheapest
generative counterfactual, from an autoencoder trained once on the data.

    explainer = LatentShift(classifier, autoencoder="runs/autoencoder/synthetic/autoencoder.pt")
    strip = explainer.exaggerate(x)            # Strip: decodes landing on every posterior bin
    x_c = explainer.counterfactual(x, target)  # decode(z + shift * direction), f near target
    relevance = explainer.explain(x)           # |decode(z) - x_c| toward the opposite decision

A query's code z = encode(x) moves along the gradient of the classifier through the decoder,
d = ∂f(decode(z))/∂z, and the counterfactual at shift λ is decode(z + λ ||z|| d / ||d||). The
direction is computed once per query (one backward pass); the published code then steps λ until
the prediction has moved by a set amount. Here λ is chosen per target bin by bisection, so that
strips land on the same bins as PE's:

- the target of bin b is its centre (b + 0.5) / n_bins; λ moves up the gradient when the target
  lies above f(decode(z)) (the posterior at λ = 0), down otherwise;
- λ lies in [0, `max_shift`], relative to ||z||, so one scale serves every code size. Like the
  published sweep, λ first steps over `scan_steps` even points of (0, max_shift], smallest first:
  the first point whose posterior is past the target and the point before it bracket the target
  (far along the line the decodes leave the data and f can turn back, so the nearest crossing is
  the one wanted). A target that no point reaches is beyond reach: the point whose posterior is
  nearest the target is kept and the pair is reported unreached;
- a bisection then halves each bracket up to `search_steps` times and keeps the end nearest the
  target; a pair stops once its posterior lies within `tolerance` of its target.

Every scan point and every bisection step is one decoder pass and one classifier pass over all
the (bin, query) pairs of a batch still searching, so a strip costs at most
n_bins * (scan_steps + search_steps) decodes per query, plus one backward pass for the direction.

`search(x, targets)` returns everything, including which pairs reached their target
(`ShiftSearch.reached`); `exaggerate` returns the usual `Strip`.

The direction is the gradient of f's logit: the same direction as f's gradient (a positive factor
per query), without underflow where f saturates. The λ = 0 image is the reconstruction decode(z),
not x: `explain` compares counterfactuals with it, as the paper does, so the map shows what the
shift changed, not the autoencoder's reconstruction error (the evaluation suite's own map of a
strip, |x - x_far|, includes that error).
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from cfgen.bins import bin_centre
from cfgen.errors import ClassifierError, ConfigError, DataError
from cfgen.explain.base import Classifier, CounterfactualExplainer, resolve_target
from cfgen.explain.score import explained_logit
from cfgen.explain.strip import Strip
from cfgen.models.autoencoder import Autoencoder, load_autoencoder


@dataclass(frozen=True)
class ShiftSearch:
    """The latent shift of N queries toward S targets each.

    images: (S, N, C, H, W) decodes; shifts: (S, N) signed λ (fraction of ||z||); posteriors:
    (S, N) f of each image; reached: (S, N) bool, |posterior - target| <= tolerance;
    reconstructions: (N, C, H, W) decode(encode(x)), the λ = 0 images.
    """

    images: torch.Tensor
    shifts: torch.Tensor
    posteriors: torch.Tensor
    reached: torch.Tensor
    reconstructions: torch.Tensor


@dataclass
class _Ends:
    """Shifts λ (P,) of P (target, query) pairs, their decodes (P, C, H, W) and posteriors (P,)."""

    shifts: torch.Tensor
    images: torch.Tensor
    posteriors: torch.Tensor

    def clone(self) -> "_Ends":
        return _Ends(self.shifts.clone(), self.images.clone(), self.posteriors.clone())

    def take(self, rows: torch.Tensor) -> "_Ends":
        return _Ends(self.shifts[rows], self.images[rows], self.posteriors[rows])

    select = take  # by a boolean mask as well as by indices

    def assign(self, rows: torch.Tensor, values: "_Ends") -> None:
        self.shifts[rows], self.images[rows] = values.shifts, values.images
        self.posteriors[rows] = values.posteriors

    @staticmethod
    def closest(low: "_Ends", high: "_Ends", targets: torch.Tensor) -> "_Ends":
        """Per pair, the end whose posterior is nearer its target."""
        pick = (high.posteriors - targets).abs() < (low.posteriors - targets).abs()
        return _Ends(
            torch.where(pick, high.shifts, low.shifts),
            torch.where(pick.view(-1, 1, 1, 1), high.images, low.images),
            torch.where(pick, high.posteriors, low.posteriors),
        )


class _ShiftLines:
    """The shift line of each (target, query) pair, P = S * N pairs, target-major.

    codes, direction: (N, ...); targets: (P,); start: (N,), f of the reconstructions. λ moves up
    the gradient where the target lies above `start`, down otherwise, in units of ||z||.
    """

    def __init__(self, explainer, codes, direction, targets, start) -> None:
        self.decode, self.classifier = explainer.autoencoder.decode, explainer.classifier
        repeats = len(targets) // len(codes)
        self.code_shape = codes.shape[1:]
        self.targets = targets
        self.up = targets >= start.repeat(repeats)
        self.sign = self.up.float() * 2 - 1
        flat = codes.flatten(1)
        # (P, D): the code change at λ = 1, signed toward each target.
        self.unit = (flat.norm(dim=1, keepdim=True) * direction.flatten(1)).repeat(repeats, 1)
        self.unit *= self.sign[:, None]
        self.base = flat.repeat(repeats, 1)

    def probe(self, rows: torch.Tensor, shifts: torch.Tensor) -> _Ends:
        """Decodes and posteriors of the pairs `rows` at `shifts` (one batched pass of each)."""
        shifted = self.base[rows] + shifts[:, None].to(self.base) * self.unit[rows]
        images = self.decode(shifted.view(-1, *self.code_shape))
        return _Ends(shifts.to(self.base), images, self.classifier(images))

    def past(self, posteriors: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Whether each posterior has reached its pair's target in the pair's direction."""
        targets = self.targets[rows]
        return torch.where(self.up[rows], posteriors >= targets, posteriors <= targets)


class LatentShift(CounterfactualExplainer):
    """Counterfactuals decode(z + λ ||z|| d / ||d||), λ bisected per query and target.

    Args:
        classifier: the black box f: (N, C, H, W) -> (N,), differentiable.
        autoencoder: the path of an autoencoder bundle (`cfgen autoencoder fit`), or a module
            with `encode` (N, C, S, S) -> codes (N, ...), `decode`, `image_size` and `channels`,
            such as
            `cfgen.models.autoencoder.Autoencoder`.
        max_shift: largest |λ|, as a fraction of the code's norm ||z||.
        scan_steps: even points of (0, max_shift] tried first, smallest first.
        search_steps: halvings of the bracket around each target.
        tolerance: a pair stops searching once |f - target| <= tolerance.
        batch_size: queries per search (each step decodes up to S x batch_size codes).
    """

    def __init__(
        self,
        classifier: Classifier,
        autoencoder: Autoencoder | str | Path | None = None,
        max_shift: float = 1.0,
        scan_steps: int = 4,
        search_steps: int = 8,
        tolerance: float = 0.02,
        batch_size: int = 64,
    ) -> None:
        super().__init__(classifier)
        if autoencoder is None:
            raise ConfigError(
                "latent_shift needs an autoencoder of the queries' images: train one with "
                "`cfgen autoencoder fit --config configs/autoencoder/synthetic.yaml` and pass "
                "its autoencoder.pt (in an evaluation config: explainer_options: "
                "{latent_shift: {autoencoder: PATH}})"
            )
        if max_shift <= 0 or min(scan_steps, search_steps, batch_size) < 1 or tolerance < 0:
            raise ConfigError(
                f"need max_shift > 0, scan_steps, search_steps, batch_size >= 1 and tolerance "
                f">= 0; got {max_shift}, {scan_steps}, {search_steps}, {batch_size}, {tolerance}"
            )
        if isinstance(autoencoder, str | Path):
            autoencoder = load_autoencoder(autoencoder)
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.max_shift, self.scan_steps, self.search_steps = max_shift, scan_steps, search_steps
        self.tolerance, self.batch_size = tolerance, batch_size
        expected = getattr(classifier, "in_channels", None)
        if expected is not None and expected != autoencoder.channels:
            raise ConfigError(
                f"the autoencoder makes {autoencoder.channels}-channel images but the classifier "
                f"takes {expected}; train the autoencoder on the classifier's images"
            )

    def to(self, device: torch.device | str) -> "LatentShift":
        """Move the autoencoder (and the classifier, when it is a module) to `device`."""
        self.autoencoder.to(device)
        if isinstance(self.classifier, torch.nn.Module):
            self.classifier.to(device)
        return self

    def check_images(self, x: torch.Tensor) -> None:
        """Refuse images of another shape than the autoencoder's, non-finite or unscaled ones."""
        size, channels = self.autoencoder.image_size, self.autoencoder.channels
        if x.ndim != 4 or x.shape[1] != channels or tuple(x.shape[2:]) != (size, size):
            raise DataError(
                f"the latent shift's autoencoder takes images (N, {channels}, {size}, {size}); got "
                f"shape {tuple(x.shape)}. Train an autoencoder on images of this size and "
                f"channels (cfgen autoencoder fit --data.image_size {x.shape[-1]}), or resize them"
            )
        if not bool(torch.isfinite(x).all()):
            raise DataError(f"the images contain NaN or inf (shape {tuple(x.shape)}); clean them")
        low, high = x.min().item(), x.max().item()
        if low < -1.01 or high > 1.01:
            raise DataError(
                f"images must be scaled to [-1, 1]; got values in [{low:.3g}, {high:.3g}]"
            )

    def direction(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit gradient of f's logit at decode(codes), shaped like `codes` (N, ...) (0 where the
        gradient is 0), and the posteriors of the reconstructions, (N,)."""
        codes = codes.detach().requires_grad_(True)
        with torch.enable_grad():
            logit = explained_logit(self.classifier, self.autoencoder.decode(codes))
            if not logit.requires_grad:
                raise ClassifierError(
                    "latent shift needs the classifier's gradient, but its output carries none "
                    "(it is detached, computed under torch.no_grad, or thresholded); give a "
                    "differentiable classifier, e.g. one returning logits or probabilities"
                )
            (gradient,) = torch.autograd.grad(logit.sum(), codes)
        norm = gradient.flatten(1).norm(dim=1).view(-1, *[1] * (codes.dim() - 1))
        posterior = torch.sigmoid(logit.detach())
        interior = (posterior > 0) & (posterior < 1)
        if not bool((norm > 0).any()) and bool(interior.any()):
            raise ClassifierError(
                "the classifier's gradient is zero for every query although its posteriors are "
                "not saturated: it is piecewise constant (rounded or thresholded); latent shift "
                "needs a classifier whose output varies smoothly with the image"
            )
        return gradient / norm.clamp_min(torch.finfo(norm.dtype).tiny), posterior

    @torch.no_grad()
    def search(self, x: torch.Tensor, targets: torch.Tensor) -> ShiftSearch:
        """Scan, then bisect λ for queries x (N, C, H, W) and target posteriors `targets` (S, N)."""
        self.check_images(x)
        steps, n = targets.shape
        codes = self.autoencoder.encode(x)
        direction, start = self.direction(codes)
        reconstructions = self.autoencoder.decode(codes)
        line = _ShiftLines(self, codes, direction, targets.to(x.device).flatten(), start)
        origin = _Ends(
            torch.zeros(steps * n, device=x.device),
            reconstructions.repeat(steps, 1, 1, 1),
            start.repeat(steps),
        )
        low, high, bracketed = self._scan(line, origin)
        self._bisect(line, low, high, bracketed)
        closest = _Ends.closest(low, high, line.targets)
        reached = (closest.posteriors - line.targets).abs() <= self.tolerance
        return ShiftSearch(
            closest.images.view(steps, n, *x.shape[1:]),
            (closest.shifts * line.sign).view(steps, n),
            closest.posteriors.view(steps, n),
            reached.view(steps, n),
            reconstructions,
        )

    def _scan(self, line: "_ShiftLines", origin: "_Ends") -> tuple["_Ends", "_Ends", torch.Tensor]:
        """Step λ over `scan_steps` even points of (0, max_shift]: each pair's first point past its
        target and the point before it bracket the target. Pairs that no point reaches get the
        point nearest their target at both ends, and are not bracketed."""
        low, high, best = origin.clone(), origin.clone(), origin.clone()
        crossed = torch.zeros_like(line.up)
        previous = origin.clone()
        for k in range(1, self.scan_steps + 1):
            rows = (~crossed).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            current = line.probe(
                rows, torch.full((len(rows),), self.max_shift * k / self.scan_steps)
            )
            new = line.past(current.posteriors, rows)
            low.assign(rows[new], previous.take(rows[new]))
            high.assign(rows[new], current.select(new))
            crossed[rows[new]] = True
            nearer = (current.posteriors - line.targets[rows]).abs() < (
                best.posteriors[rows] - line.targets[rows]
            ).abs()
            best.assign(rows[nearer], current.select(nearer))
            previous.assign(rows, current)
        missed = (~crossed).nonzero().squeeze(1)
        low.assign(missed, best.take(missed))
        high.assign(missed, best.take(missed))
        return low, high, crossed

    def _bisect(self, line: "_ShiftLines", low: "_Ends", high: "_Ends", bracketed) -> None:
        """Halve each bracket `search_steps` times, or until one end is within tolerance."""
        for _ in range(self.search_steps):
            error = torch.minimum(
                (low.posteriors - line.targets).abs(), (high.posteriors - line.targets).abs()
            )
            rows = (bracketed & (error > self.tolerance)).nonzero().squeeze(1)
            if rows.numel() == 0:
                return
            middle = line.probe(rows, (low.shifts[rows] + high.shifts[rows]) / 2)
            ok = line.past(middle.posteriors, rows)
            high.assign(rows[ok], middle.select(ok))
            low.assign(rows[~ok], middle.select(~ok))

    def _chunked_search(self, x: torch.Tensor, targets: torch.Tensor) -> list[ShiftSearch]:
        return [
            self.search(chunk, goals)
            for chunk, goals in zip(
                x.split(self.batch_size), targets.split(self.batch_size, dim=1), strict=True
            )
        ]

    def counterfactual(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Decodes (N, C, H, W) whose posterior is nearest `target` (N,) along the shift."""
        target = resolve_target(self.classifier, x, target)
        return torch.cat([part.images[0] for part in self._chunked_search(x, target[None])])

    def explain(self, x: torch.Tensor, target: float | torch.Tensor | None = None) -> torch.Tensor:
        """|decode(z) - x_c|, (N, C, H, W): what the shift toward `target` changed."""
        target = resolve_target(self.classifier, x, target)
        parts = self._chunked_search(x, target[None])
        return torch.cat([(part.reconstructions - part.images[0]).abs() for part in parts])

    def exaggerate(self, x: torch.Tensor, n_bins: int = 10, bins=None) -> Strip:
        """Decodes of `x` (N, C, H, W) at every bin centre (or the given `bins`): a `Strip`."""
        return self.exaggerate_with_reach(x, n_bins, bins)[0]

    def exaggerate_with_reach(
        self, x: torch.Tensor, n_bins: int = 10, bins=None
    ) -> tuple[Strip, torch.Tensor]:
        """The strip and which of its (bin, query) pairs reached their bin centre, (S, N) bool."""
        target_bins = torch.arange(n_bins) if bins is None else torch.as_tensor(bins).long()
        if target_bins.numel() and not bool(((target_bins >= 0) & (target_bins < n_bins)).all()):
            raise ValueError(f"bins must lie in [0, {n_bins}); got {target_bins.tolist()}")
        targets = bin_centre(target_bins, n_bins)[:, None].expand(-1, x.shape[0])
        parts = self._chunked_search(x, targets)
        with torch.no_grad():
            query_posteriors = torch.cat([self.classifier(c) for c in x.split(self.batch_size)])
        strip = Strip(
            torch.cat([part.images for part in parts], dim=1),
            target_bins,
            torch.cat([part.posteriors for part in parts], dim=1),
            query_posteriors,
        )
        return strip, torch.cat([part.reached for part in parts], dim=1)
