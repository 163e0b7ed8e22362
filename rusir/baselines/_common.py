"""What the baselines share: the result type, argument checks, seeded draws and the data term.

Every baseline has `restore`'s call shape, `method(G, target, degradation=None, loss=None,
steps=..., lr=..., seed=0, callback=None, progress=True, resolution=None, **method_options)`,
and returns a `BaselineResult` (a `RestoreResult` with an extra `info` dict), with one entry in
`phases` named after the method, so bench and report treat every method alike.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from ..degradations import Identity
from ..inversion.restore import RestoreResult, _check_target, _evaluate, default_loss

__all__ = ["BaselineResult", "reject_unknown", "seeded_randn", "prepare", "evaluate_loss",
           "device_of"]


@dataclass
class BaselineResult(RestoreResult):
    """`RestoreResult` plus method-specific records (e.g. PULSE's `reached_eps`)."""
    info: dict[str, Any] = field(default_factory=dict)


def reject_unknown(fn: Callable, unknown: dict[str, Any]) -> None:
    """A clear TypeError for options the method does not take (RUSIR-only ones included)."""
    if not unknown:
        return
    accepted = [p for p in inspect.signature(fn).parameters
                if p not in ("G", "target", "degradation", "unknown")]
    raise TypeError(f"{fn.__name__}() got unexpected option(s) {sorted(unknown)}; it accepts "
                    f"{accepted} (RUSIR-only options such as 'lrs' or 'spaces' do not apply)")


def seeded_randn(shape: tuple[int, ...], seed: int, batch: int, device: torch.device) -> Tensor:
    """[batch, *shape] standard normal draws; image i's come from its own generator seeded
    seed + i (on the CPU, so results do not depend on the device), so a batch equals its
    images run one by one."""
    draws = [torch.randn(shape, generator=torch.Generator().manual_seed(int(seed) + i))
             for i in range(batch)]
    return torch.stack(draws).to(device)


def device_of(G) -> torch.device:
    return next(G.parameters()).device


def prepare(G, target: Tensor, degradation, loss, *, need_loss: bool = True):
    """Validated target on G's device, the degradation (identity if None), the loss (G's
    default preset if None and `need_loss`) on that device, and the working resolution."""
    target = _check_target(target).to(device_of(G))
    degradation = Identity() if degradation is None else degradation
    if loss is None and need_loss:
        loss = default_loss(G)
    if loss is not None and hasattr(loss, "to"):
        loss = loss.to(target.device)
    return target, degradation, loss


def evaluate_loss(loss_fn, degraded: Tensor, target: Tensor, mask: Optional[Tensor],
                  prediction: Tensor) -> Tensor:
    """The configured rusir loss, per image [B] (as `restore` evaluates it)."""
    return _evaluate(loss_fn, degraded, target, mask, prediction)


def masked_mse(degraded: Tensor, target: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Per-image mean squared error [B]; with a mask, unknown pixels count as equal."""
    diff = degraded - target
    if mask is not None:
        diff = diff * mask.to(diff.dtype)
    return diff.square().flatten(1).mean(1)
