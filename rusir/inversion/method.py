"""The method protocol: one call shape, one way to read the inputs, one result type.

Every restoration method -- `rusir.restore` and each baseline in `rusir.baselines` -- is

    method(G, target, degradation=None, *, loss=None, seed=0, callback=None, progress=True,
           **method_config) -> RestoreResult

so the benchmark calls them all alike and never reads a signature. `prepare` turns the shared
arguments into what a method optimises against, the same way for every method; a method's own
options are explicit keyword-only parameters, and anything else is refused by `reject_unknown`
with the list of what the method takes. The result records the configuration that ran
(`config`: rerunning `method(G, target, degradation, **result.config)` repeats the run) and
method-specific findings (`info`). A method declares what the benchmark may pass it beyond the
protocol: `run_options` (the run-level options it takes, e.g. restore's steps, discrepancy,
batch_size) and `table` (a baseline's tuned hyperparameter table); the runner never matches a
method by its name (rusir.engine.unit.method_kwargs).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Union

import torch
from torch import Tensor

from ..degradations import Identity
from ..model.generators import info as generator_info
from .loop import LossFn
from .losses import LossConfig
from .presets import build_loss, load_preset

__all__ = ["PROTOCOL", "PhaseResult", "RestoreResult", "Problem", "check_target", "default_loss",
           "resolve_loss", "prepare", "reject_unknown"]

LossSpec = Union[LossFn, str, Mapping, LossConfig, None]
PROTOCOL = ("loss", "seed", "callback", "progress")   # keywords every method takes


@dataclass
class PhaseResult:
    """The state after one phase: its final prediction, latent and loss curve."""
    space: str                      # the latent space optimised (W, W+, W++)
    images: Tensor                  # [B, 3, R, R]
    latent: Tensor                  # W / W+ / W++ layout
    losses: list[Tensor] = field(default_factory=list)  # one [B] tensor per step
    lr: Optional[float] = None      # the step size used (RUSIR: rate x lr_scale; a baseline: its peak)


@dataclass
class RestoreResult:
    """What every method returns: the final images and each phase's images, latent and losses.

    RUSIR's phases are keyed by space (W, W+, W++); a baseline has one phase named after it.
    `config`: the configuration that ran, a mapping of the method's options as they ran (steps,
    rates, seed, ...): RUSIR's frozen `rusir.inversion.config.RestoreConfig` (with `as_dict()`:
    also the generator, the loss and the chunk size that ran), a baseline's plain dict; the
    benchmark records either as the item's `config`. `info`: method-specific records (e.g.
    PULSE's `reached_eps`).
    """
    images: Tensor                  # [B, 3, R, R], the last phase's prediction in ~[0, 1]
    phases: dict[str, PhaseResult]  # in run order
    seconds: float = 0.0
    config: Mapping[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def latent(self) -> Tensor:
        return list(self.phases.values())[-1].latent


class Problem(NamedTuple):
    """What a method fits, after `prepare`: render at `resolution`, degrade, compare with `target`."""
    target: Tensor                  # [B, 3, h, w] on G's device
    degradation: Any                # has degrade_prediction(x) (differentiable) and maybe .mask
    loss: Optional[LossFn]          # per image (x, y, mask=None) -> [B], on G's device
    resolution: int                 # working resolution R the degradation expects


# Values this far outside [0, 1] are not rounding: a generator's own render, or another scale.
RANGE_TOLERANCE = 1e-3


def check_target(target: Tensor) -> Tensor:
    """The target as a method needs it: a finite float tensor [B, 3, H, W], meant in [0, 1].

    Non-finite values are refused (every loss would be NaN: the latent never moves and the
    start image came back with no error). Values outside [0, 1] are used as given, with a
    warning that names the range: a generator's own renders overshoot [0, 1] and are valid
    inversion targets, while [-1, 1] or 0..255 data is a mistake the warning points at
    (clamping would hide it, refusing would reject the renders)."""
    if not isinstance(target, Tensor) or target.dim() != 4 or target.shape[1] != 3:
        shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"target must be a float tensor [B, 3, H, W] in [0, 1], got {shape}")
    if not target.is_floating_point():
        raise ValueError(f"target must be floating point in [0, 1], got dtype {target.dtype}")
    if target.numel() == 0:
        raise ValueError(f"target is empty: shape {tuple(target.shape)}")
    bad = ~torch.isfinite(target)
    if bad.any():
        images = sorted(set(bad.flatten(1).any(1).nonzero().flatten().tolist()))
        raise ValueError(f"target has {int(bad.sum())} non-finite value(s) (NaN or infinity) in "
                         f"image(s) {images[:10]}")
    low, high = float(target.min()), float(target.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        hint = ("; [-1, 1] data needs (x + 1) / 2" if low < -0.5 else "") + \
               ("; 0..255 data needs x / 255" if high > 2 else "")
        warnings.warn(f"target values span [{low:.4g}, {high:.4g}], outside [0, 1]: used as given"
                      f"{hint}", stacklevel=3)
    return target


def default_loss(G) -> LossFn:
    """The loss preset a generator was shipped with (`info(G).default_loss`; the paper's for
    official generators)."""
    return load_preset(generator_info(G).default_loss).build()


def resolve_loss(G, loss: LossSpec, degradation) -> LossFn:
    """A loss callable from what a caller gave: None -> G's default preset; data (preset or term
    name, dict, LossConfig) -> built around this degradation's `degrade_prediction` (which the
    `consistency` term needs); a callable -> itself."""
    if loss is None:
        return default_loss(G)
    if isinstance(loss, (str, Mapping, LossConfig)):
        return build_loss(loss, degradation_fn=degradation.degrade_prediction)
    return loss


def prepare(G, target: Tensor, degradation=None, loss: LossSpec = None, *, seed: int = 0,
            resolution: Optional[int] = None, need_loss: bool = True) -> Problem:
    """The shared arguments of a method call, read the same way for every method.

    target: validated and moved to G's device; degradation: identity if None; loss: resolved
    (`resolve_loss`; left None when the method does not use it, `need_loss=False`), moved to G's
    device, and its noise (hole fill, consistency) restarted at `seed` when it has any
    (`reset_noise`), so a run depends on its seed and not on what the loss object saw before;
    resolution: G's unless given.
    """
    device = next(G.parameters()).device
    target = check_target(target).to(device)
    degradation = Identity() if degradation is None else degradation
    loss_fn = resolve_loss(G, loss, degradation) if need_loss else None
    if loss_fn is not None and hasattr(loss_fn, "to"):
        loss_fn = loss_fn.to(device)
    if loss_fn is not None and hasattr(loss_fn, "reset_noise"):
        loss_fn.reset_noise(int(seed))
    return Problem(target, degradation, loss_fn, int(resolution or G.img_resolution))


def reject_unknown(method: str, unknown: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """A clear TypeError for options `method` does not take, listing the ones it does."""
    if not unknown:
        return
    raise TypeError(f"{method}() got unexpected option(s) {sorted(unknown)}; it takes "
                    f"{list(PROTOCOL)} and its options {sorted(set(accepted) - set(PROTOCOL))}")
