"""The one step loop every method runs: render -> degrade -> loss -> step -> callback.

RUSIR's phases and every baseline optimise latents the same way; they differ in what they
render (a W / W+ / W++ code, PULSE's sphere, L-BRGM's joint z / W+), in what they add to the
loss (priors, GEOCROSS) and in what they do around a step (a rate schedule, a projection).
So a method hands `run_steps` an *objective*, a closure `() -> (loss [B], prediction)` over its
own variables, plus an optimiser over those variables and, if it needs them, two hooks:

    before_step(step)          before the objective is evaluated (e.g. set this step's rate)
    after_step(step, loss)     after the optimiser step (e.g. project back onto a sphere)

The loss is per image and the gradient is taken of its sum, so each image's gradient is its own
(batching B images equals running them one by one). `render_degraded` and `evaluate_loss` are
the shared halves of most objectives: the prediction seen through the degradation, and a loss
called with the convention of `rusir.inversion.losses`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..progress import progress_bar
from ..model.family import StyleGenerator, to_unit_range

__all__ = ["StepInfo", "Rendered", "Objective", "LossFn", "render", "render_degraded", "evaluate_loss",
           "run_steps", "check_finite", "NonFiniteLossError"]

LossFn = Callable[..., Tensor]
Objective = Callable[[], tuple[Tensor, Tensor]]     # () -> (loss [B], prediction [B, 3, R, R])


@dataclass
class StepInfo:
    """What a per-step callback sees (e.g. to draw a live plot in a notebook)."""
    phase: str         # RUSIR's space (W, W+, W++) or the baseline's name
    step: int          # 0-based within the phase
    steps: int         # steps in this phase
    loss: Tensor       # [B], detached
    images: Tensor     # [B, 3, R, R] current prediction in ~[0, 1], detached
    floor: Optional[Tensor] = None   # [B] the target's noise floor when the discrepancy stop
                                     # estimated it at this step (rusir.inversion.discrepancy)


class Rendered(NamedTuple):
    """One forward pass: the prediction and what the degradation approximation makes of it."""
    prediction: Tensor         # [B, 3, R, R] G(latent) in ~[0, 1], never clamped
    degraded: Tensor           # [B, 3, h, w] degradation.degrade_prediction(prediction)
    mask: Optional[Tensor]     # [B, 1, h, w] known pixels (inpainting) or None


def render(G: StyleGenerator, latent: Tensor, resolution: Optional[int] = None,
           noise_mode: str = "const") -> Tensor:
    """G(latent) mapped to ~[0, 1] and area-resized to the working resolution: [B, 3, R, R]."""
    img = to_unit_range(G.synthesis(latent, noise_mode=noise_mode))
    if resolution is not None and resolution != img.shape[-1]:
        mode = "area" if resolution < img.shape[-1] else "nearest"
        img = F.interpolate(img, size=(resolution, resolution), mode=mode)
    return img


def render_degraded(G: StyleGenerator, latent: Tensor, degradation,
                    resolution: Optional[int] = None) -> Rendered:
    """Render `latent` and pass it through `degradation.degrade_prediction` (the differentiable
    approximation), reading the degradation's mask after the call (it may redraw it)."""
    prediction = render(G, latent, resolution)
    degraded = degradation.degrade_prediction(prediction)
    return Rendered(prediction, degraded, getattr(degradation, "mask", None))


def evaluate_loss(loss_fn: LossFn, rendered: Rendered, target: Tensor) -> Tensor:
    """Per-image loss [B] of the degraded prediction against the target. Losses that need the
    clean prediction (`needs_prediction`, e.g. consistency) get it; a scalar is broadcast."""
    if getattr(loss_fn, "needs_prediction", False):
        value = loss_fn(rendered.degraded, target, mask=rendered.mask,
                        prediction=rendered.prediction)
    else:
        value = loss_fn(rendered.degraded, target, mask=rendered.mask)
    if value.dim() == 0:
        value = value.expand(target.shape[0])
    return value


class NonFiniteLossError(ValueError):
    """The loss, or its gradient, of an optimisation step is NaN or infinite."""


def _bad_images(t: Tensor, batch: int) -> str:
    """'image(s) [i, ...]' holding a non-finite value of `t` (dim 0 = image), or 'the batch'."""
    if t.dim() == 0 or t.shape[0] != batch:
        return "the batch"
    rows = (~torch.isfinite(t.detach().reshape(batch, -1)).all(1)).nonzero().flatten().tolist()
    return f"image(s) {rows[:10]}" + (f" ({len(rows)} in all)" if len(rows) > 10 else "")


def check_finite(value: Tensor, optimizer: torch.optim.Optimizer, phase: str, step: int) -> None:
    """Refuse a step whose loss [B] or gradient is NaN or infinite: NGD takes a non-finite
    gradient as none, so the latent stayed at its start and the start image came back as the
    restoration, with no error. One check (one device sync) unless something is wrong."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if bool(torch.stack([torch.isfinite(t).all() for t in [value.detach(), *grads]]).all()):
        return
    where = f"{phase} step {step}"
    if not bool(torch.isfinite(value.detach()).all()):
        raise NonFiniteLossError(f"{where}: the loss is NaN or infinite for "
                                 f"{_bad_images(value, value.shape[0])}; check the loss function")
    bad = next(g for g in grads if not bool(torch.isfinite(g).all()))
    raise NonFiniteLossError(f"{where}: the gradient of the loss is NaN or infinite for "
                             f"{_bad_images(bad, value.shape[0])}; check the loss function")


def run_steps(objective: Objective, optimizer: torch.optim.Optimizer, steps: int, *, phase: str,
              callback: Optional[Callable[[StepInfo], None]] = None, progress: bool = True,
              before_step: Optional[Callable[[int], None]] = None,
              after_step: Optional[Callable[[int, Tensor], None]] = None,
              until: Optional[Callable[[], bool]] = None) -> list[Tensor]:
    """Take `steps` optimiser steps on `objective`; return its loss curve (one [B] per step,
    the loss of the iterate before that step). `callback(StepInfo)` runs after every step;
    `until()` true before a step ends the phase early (the curve is then shorter). A loss or
    gradient that is NaN or infinite raises NonFiniteLossError (a ValueError) naming the step."""
    losses: list[Tensor] = []
    bar = progress_bar(range(steps), desc=phase, disable=not progress, leave=False)
    for step in bar:
        if until is not None and until():
            break
        if before_step is not None:
            before_step(step)
        value, prediction = objective()                          # [B], [B, 3, R, R]
        optimizer.zero_grad(set_to_none=True)
        value.sum().backward()  # images are independent: the sum keeps per-image gradients
        try:
            check_finite(value, optimizer, phase, step)
        except NonFiniteLossError:
            bar.close()             # clear the progress line: the error is the one line left
            raise
        optimizer.step()
        if after_step is not None:
            after_step(step, value.detach())
        losses.append(value.detach())
        bar.set_postfix(loss=f"{value.mean().item():.4f}")
        if callback is not None:
            callback(StepInfo(phase, step, steps, value.detach(), prediction.detach()))
    return losses
