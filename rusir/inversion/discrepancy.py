"""The discrepancy principle: stop fitting an image once it fits its target as well as the truth.

Why (docs/method.md, issue 20): a target carries noise (Poisson noise, dead pixels, a JPEG block
on an 8-px image) that no clean image reproduces. The truth itself would not fit such a target
better than that: its loss is the loss between the degradation's approximation and one draw of
the true degradation. A restore whose loss falls below that level is fitting the noise; with
the per-filter freedom of W++ on an 8-px target it does so within a few steps and the image
turns into a garish collage (UN at M loses 4-5 dB in W++). Morozov's discrepancy principle stops
an iterative fit at that level.

The truth is unknown, so its floor is estimated at the current prediction x:

    floor(x) = loss(A(x), D'(x))       A: the approximation this step used (its own noise draw)
                                       D': the true degradation, random draws made afresh
                                           (`Degradation.redraw`; known parts, a mask, kept)

and an image stops once mean(loss, last `window` steps) <= tau * mean(floor, last `samples`
estimates, one every `every` steps). Only the phases with more freedom than W are stopped (W+,
W++): one W code cannot draw the noise, and W starts from the average face, whose floor says
little about the truth's. W's last steps still count: if W already fits the target to its noise
level, W+ stops at its first step (on UN at M, W+ loses ~0.5 dB within 10 steps). A stopped image
keeps, for the rest of the restore (later phases only add freedom), the MEAN of its latents over
the window the stop judged (iterate averaging, `average=True` as restore runs it): once the loss
is flat at the floor, NGD's fixed-length steps keep the image moving (~1 dB PSNR from one step to
the next on 8-px targets), so the last iterate is one arbitrary draw of that jitter while the
window's mean loss describes its centre (docs/method.md, "Round 3b"). Before that, an image
whose loss nears its stop level settles (`Settle`, SETTLE as restore runs it): its W+ / W++ step
shrinks from full length at 1.5 x the level to a tenth at the level, so an image hovering just
above it (the floor estimate is noisy and biased low at flat restorations) stops drifting into the
target's noise; an image that never comes near runs bit for bit as without ("Round 3c"). When every image of a batch
has stopped, the restore ends. Targets without noise never stop: their floor is the approximation's
error alone (a JPEG target: the differentiable JPEG against libjpeg), which a restore does not
reach. Measured on held-out faces (docs/method.md, "Robustness"): on denoising M the loss reaches
the floor ~50 W++ steps in, where PSNR peaks, then PSNR falls while the loss keeps falling.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from ..validation import MAX_TAU, number
from .loop import Rendered, evaluate_loss

__all__ = ["DiscrepancyStop", "Settle", "check_tau", "noise_floor", "supports"]


def check_tau(value) -> Optional[float]:
    """tau as restore takes it: None / 0 / False = off, else a finite number > 0."""
    if value is None or value is False or (isinstance(value, (int, float)) and value == 0):
        return None
    if isinstance(value, str):
        raise ValueError(f"discrepancy must be a finite number > 0 (or None/0 for off), got {value!r}")
    return number(value, "discrepancy (None/0: off)", 0.0, MAX_TAU, "MAX_TAU")


def supports(degradation) -> bool:
    """Whether the degradation can say what the truth would score (it has a true side)."""
    return callable(getattr(degradation, "redraw", None))


@torch.no_grad()
def noise_floor(loss_fn, degradation, prediction: Tensor, degraded: Tensor,
                mask: Optional[Tensor], draw: int) -> Tensor:
    """floor(x) = loss(A(x), D'(x)) per image [B]: the loss the prediction would have if it were
    the truth. `degraded` is A(prediction) as the step computed it (no extra draw of A's noise);
    D' is `degradation.redraw(prediction, draw)`. The loss's target cache is left alone. A loss
    that draws noise of its own (LPIPS's hole fill under a mask, the consistency term) draws it
    here too: the run stays reproducible, but is not the same run as without the stop."""
    fresh = degradation.redraw(prediction.detach(), draw)           # [B, 3, h, w]
    rendered = Rendered(prediction.detach(), degraded.detach(), mask)
    cache = getattr(loss_fn, "cache_target", None)
    if cache:
        loss_fn.cache_target = False
    try:
        return evaluate_loss(loss_fn, rendered, fresh)
    finally:
        if cache:
            loss_fn.cache_target = cache


@dataclass(frozen=True)
class Settle:
    """Shorter steps for an image whose loss nears its stop level (docs/method.md, "Round 3c").
    NGD moves every row a fixed length per step whatever its gradient, so an image whose loss
    is flat just above tau x floor keeps jittering (~1 dB PSNR per step on 8-px targets) and
    drifting into the target's noise until the stop fires. With ratio = window-mean loss /
    (tau x mean floor), the step is multiplied by clamp((ratio - 1) / margin, least, 1): full
    length while ratio >= 1 + margin (an image far from its floor runs exactly as without),
    shrinking linearly to `least` as the ratio reaches 1, where the stop ends the image."""
    margin: float = 0.5     # the step shrinks once the loss is below (1 + margin) x the stop level
    least: float = 0.1      # the shortest step, as a fraction of the phase's rate

    def __post_init__(self):
        if not (isinstance(self.margin, (int, float)) and 0 < self.margin < float("inf")):
            raise ValueError(f"Settle margin must be a finite number > 0, got {self.margin!r}")
        if not (isinstance(self.least, (int, float)) and 0 < self.least <= 1):
            raise ValueError(f"Settle least must be a number in (0, 1], got {self.least!r}")

    def factor(self, fit: Tensor, level: Tensor) -> Tensor:
        """The step's factor [B] for window-mean losses `fit` [B] against stop levels `level`
        [B] (tau x floor); 1 where the level is not positive (nothing to settle toward)."""
        ratio = fit / torch.where(level > 0, level, torch.ones_like(level))
        scale = ((ratio - 1) / self.margin).clamp(self.least, 1.0)
        return torch.where(level > 0, scale, torch.ones_like(scale))


SETTLE: Optional[Settle] = Settle(margin=0.5, least=0.1)   # what restore runs (docs/method.md, "Round 3c")


class DiscrepancyStop:
    """Per-image stop of a restore at tau times the noise floor (module docstring). One object
    follows a batch through all phases: after every step, `observe` takes the step's loss (and,
    when `due`, a floor estimate: `noise_floor(..., draw=self.draws)`) and says which images are
    done. It sees numbers only, so a recorded run can be replayed through it for another tau.
    With `settle` (a `Settle`), `slowed` also shortens the step of images near their stop level."""

    JUDGED = ("W+", "W++")

    def __init__(self, tau: float, loss_fn, degradation, batch: int, *, every: int = 10,
                 window: int = 10, samples: int = 3, average: bool = False,
                 settle: Optional[Settle] = None):
        self.tau, self.loss_fn, self.degradation = tau, loss_fn, degradation
        self.every, self.samples, self.average, self.settle = every, samples, average, settle
        self.scale: Optional[Tensor] = None              # [B] this step's factor (settle), or None
        self.losses: deque = deque(maxlen=window)        # [B] per step
        self.latents: deque = deque(maxlen=window)       # [B, ...] per step, when averaging
        self.floors: deque = deque(maxlen=samples)       # [B] per estimate
        self.done = torch.zeros(batch, dtype=torch.bool)
        self.stopped: list[Optional[str]] = [None] * batch   # "W+:37": phase and step of the stop
        self.draws = 0                                    # floor estimates taken

    @property
    def all_done(self) -> bool:
        return bool(self.done.all())

    def due(self, step: int) -> bool:
        """Whether this step takes a floor estimate."""
        return step % self.every == 0

    def begin_phase(self, lift: Callable[[Tensor], Tensor]) -> None:
        """A new phase: the remembered latents lifted into its space (`latents.convert`: W -> W+
        -> W++ repeat rows, so the mean of the lifted latents is the lifted mean), the window
        the losses span being the same across the boundary."""
        kept = [lift(x) for x in self.latents]
        self.latents.clear()
        self.latents.extend(kept)

    def remember(self, latent: Tensor) -> None:
        """Keep the latent a step's loss is taken at (when averaging): the last `window`. Costs
        window x the batch's latent, on its device: in W++ per image ~190 MB at 1024 px (18 x 512
        x 512 floats, x 10), 6.6 MB for toyfaces64 (10 x 128 x 128, x 10)."""
        if self.average:
            self.latents.append(latent.detach())

    def settled(self, latent: Tensor, new: Tensor) -> Tensor:
        """`latent` with the images newly done [B] bool replaced by the mean of their remembered
        latents (iterate averaging: the steady point the window's mean loss describes, not one
        draw of the jitter around it); unchanged when not averaging."""
        if not self.average or not self.latents or not bool(new.any()):
            return latent
        out = latent.clone()
        rows = new.to(latent.device)
        out[rows] = torch.stack(tuple(self.latents))[:, rows].mean(0).to(latent.dtype)
        return out

    def slowed(self, before: Tensor, after: Tensor) -> Tensor:
        """`after` (the latent after this step) with the step from `before` scaled by the factor
        of the last `observe` (`Settle`); the rows of images at full step are `after` itself,
        bit for bit, and without settling `after` is returned as is."""
        if self.scale is None or not bool((self.scale < 1).any()):
            return after
        rows = (self.scale < 1).to(after.device)                              # [B]
        scale = self.scale.to(after.device, after.dtype)[rows]
        scale = scale.view(-1, *([1] * (after.dim() - 1)))                    # [b, 1, ...]
        out = after.clone()
        out[rows] = before[rows] + scale * (after[rows] - before[rows])
        return out

    def estimate(self, rendered) -> Tensor:
        """The floor [B] at this step's render (prediction, degraded, mask)."""
        return noise_floor(self.loss_fn, self.degradation, rendered.prediction, rendered.degraded,
                           rendered.mask, self.draws)

    def observe(self, phase: str, step: int, loss: Tensor, floor: Optional[Tensor] = None) -> Tensor:
        """Record this step's loss [B] (of the iterate before the step) and its floor estimate
        (when `due`); return the images newly done [B] bool. Steps of phases not judged (W) are
        recorded but stop nothing (and are never slowed)."""
        self.losses.append(loss.detach().double().cpu())
        self.scale = None
        if floor is not None:
            self.floors.append(floor.detach().double().cpu())
            self.draws += 1
        if phase not in self.JUDGED or len(self.losses) < self.losses.maxlen or not self.floors:
            return torch.zeros_like(self.done)
        fit = torch.stack(tuple(self.losses)).mean(0)                 # [B]
        floor = torch.stack(tuple(self.floors)).mean(0)               # [B]
        if self.settle is not None:
            self.scale = self.settle.factor(fit, self.tau * floor)
        new = (fit <= self.tau * floor) & ~self.done
        for i in torch.nonzero(new).flatten().tolist():
            self.stopped[i] = f"{phase}:{step}"
        self.done |= new
        return new
