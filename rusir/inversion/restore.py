"""RUSIR: restore degraded images by inverting a StyleGAN2 through the degradation.

Three phases, each started from the last (spec section 1): W (one code, from w_avg), W+ (one code
per layer), W++ (one code per output filter). Every step renders G(latent) in [0, 1] (never
clamped), applies the differentiable approximation of the degradation, compares it with the
target through the loss, and takes a normalised-gradient step. One set of hyperparameters for
every task and level.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..degradations import Identity
from .latents import SPACES, convert, initial_latent
from .losses import LossConfig
from .presets import build_loss, load_preset
from .ngd import NGD
from .schedule import resolve as resolve_schedule
from ..model.generators import info as generator_info
from ..model.stylegan2 import Generator, to_unit_range

LossFn = Callable[..., Tensor]


@dataclass
class StepInfo:
    """What a per-step callback sees (e.g. to draw a live plot in a notebook)."""
    phase: str
    step: int          # 0-based within the phase
    steps: int         # steps in this phase
    loss: Tensor       # [B], detached
    images: Tensor     # [B, 3, R, R] current prediction in ~[0, 1], detached


@dataclass
class PhaseResult:
    """The state after one phase: its final prediction, latent and loss curve."""
    space: str
    images: Tensor                  # [B, 3, R, R]
    latent: Tensor                  # W / W+ / W++ layout
    losses: list[Tensor] = field(default_factory=list)  # one [B] tensor per step
    lr: Optional[float] = None      # the step size used (rate x lr_scale)


@dataclass
class RestoreResult:
    """Final restored images plus every phase's images, latents and losses."""
    images: Tensor                  # [B, 3, R, R], the last phase's prediction in ~[0, 1]
    phases: dict[str, PhaseResult]  # keyed by space name, in run order
    seconds: float = 0.0

    @property
    def latent(self) -> Tensor:
        return list(self.phases.values())[-1].latent


def render(G: Generator, latent: Tensor, resolution: Optional[int] = None,
           noise_mode: str = "const") -> Tensor:
    """G(latent) mapped to ~[0, 1] and area-resized to the working resolution: [B, 3, R, R]."""
    img = to_unit_range(G.synthesis(latent, noise_mode=noise_mode))
    if resolution is not None and resolution != img.shape[-1]:
        mode = "area" if resolution < img.shape[-1] else "nearest"
        img = F.interpolate(img, size=(resolution, resolution), mode=mode)
    return img


def default_loss(G: Generator) -> LossFn:
    """The loss preset a generator was shipped with (`info(G).default_loss`; the paper's for
    official generators)."""
    return load_preset(generator_info(G).default_loss).build()


def _check_target(target: Tensor) -> Tensor:
    if not isinstance(target, Tensor) or target.dim() != 4 or target.shape[1] != 3:
        shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"target must be a float tensor [B, 3, H, W] in [0, 1], got {shape}")
    if not target.is_floating_point():
        raise ValueError(f"target must be floating point in [0, 1], got dtype {target.dtype}")
    return target


def _evaluate(loss_fn: LossFn, degraded: Tensor, target: Tensor, mask: Optional[Tensor],
              prediction: Tensor) -> Tensor:
    """Per-image loss [B]; losses that need the clean prediction (consistency) get it."""
    if getattr(loss_fn, "needs_prediction", False):
        value = loss_fn(degraded, target, mask=mask, prediction=prediction)
    else:
        value = loss_fn(degraded, target, mask=mask)
    if value.dim() == 0:
        value = value.expand(target.shape[0])
    return value


def _make_optimizer(name: str, params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "ngd":
        return NGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose 'ngd' or 'adam'")


def run_phase(G: Generator, latent: Tensor, target: Tensor, degradation, loss_fn: LossFn,
              steps: int, lr: float, space: str, optimizer: str = "ngd",
              resolution: Optional[int] = None, callback: Optional[Callable[[StepInfo], None]] = None,
              progress: bool = True) -> PhaseResult:
    """Optimise one latent for `steps` steps; return its final prediction and loss curve."""
    latent = latent.detach().clone().requires_grad_(True)
    opt = _make_optimizer(optimizer, [latent], lr)
    losses: list[Tensor] = []
    bar = tqdm(range(steps), desc=f"RUSIR {space}", disable=not progress, leave=False)
    for step in bar:
        prediction = render(G, latent, resolution)                     # [B, 3, R, R]
        degraded = degradation.degrade_prediction(prediction)           # [B, 3, h, w]
        mask = getattr(degradation, "mask", None)                # [B, 1, h, w] or None
        value = _evaluate(loss_fn, degraded, target, mask, prediction)  # [B]
        opt.zero_grad(set_to_none=True)
        value.sum().backward()  # images are independent: the sum keeps per-image gradients
        opt.step()
        losses.append(value.detach())
        bar.set_postfix(loss=f"{value.mean().item():.4f}")
        if callback is not None:
            callback(StepInfo(space, step, steps, value.detach(), prediction.detach()))
    with torch.no_grad():
        images = render(G, latent, resolution)
    return PhaseResult(space, images, latent.detach(), losses, lr)


def restore(G: Generator, target: Tensor, degradation=None,
            loss: Union[LossFn, str, Mapping, LossConfig, None] = None,
            steps: Optional[Sequence[int]] = None, lrs: Optional[Sequence[float]] = None,
            lr_scale: Optional[float] = None, spaces: Sequence[str] = SPACES, optimizer: str = "ngd",
            resolution: Optional[int] = None, callback: Optional[Callable[[StepInfo], None]] = None,
            progress: bool = True, init: Optional[Tensor] = None) -> RestoreResult:
    """Restore `target` ([B, 3, h, w] in [0, 1]) with RUSIR's W -> W+ -> W++ inversion.

    degradation: object with `degrade_prediction(x)` and optional `mask` (identity if None).
    loss: callable (x, y, mask=None) -> [B]; or a loss as data (preset/term name, dict,
    LossConfig: see `rusir.inversion.presets.build_loss`), built here with this degradation's
    `degrade_prediction` (which the `consistency` term needs); None takes the generator's
    default preset (`rusir.model.generators.info(G).default_loss`; the paper's LPIPS-VGG loss
    for official generators).
    steps / lrs: per phase, for the phases named in `spaces` (a subset of W, W+, W++ in order,
    e.g. ("W+",) for an ablation); lr_scale multiplies every rate. None takes the generator's
    own schedule (`info(G).steps` / `.lrs` / `.lr_scale`, recorded by `load_generator`), else
    the paper's 150/150/150 steps at 0.08/0.02/0.005 x 1 (rusir.inversion.schedule).
    resolution: working resolution R the degradation expects (default: G's resolution).
    """
    start = time.perf_counter()
    target = _check_target(target)
    spaces = tuple(spaces)
    if not spaces or any(s not in SPACES for s in spaces) or list(spaces) != sorted(spaces, key=SPACES.index):
        raise ValueError(f"spaces must be an ordered subset of {SPACES}, got {spaces}")
    steps, lrs, lr_scale = resolve_schedule(G, spaces, steps, lrs, lr_scale)
    if len(steps) != len(spaces) or len(lrs) != len(spaces):
        raise ValueError(f"need one step count and one learning rate per phase {spaces}, got {steps}, {lrs}")
    degradation = Identity() if degradation is None else degradation
    if loss is None:
        loss_fn = default_loss(G)
    elif isinstance(loss, (str, Mapping, LossConfig)):  # data: built around this degradation
        loss_fn = build_loss(loss, degradation_fn=degradation.degrade_prediction)
    else:
        loss_fn = loss
    device = next(G.parameters()).device
    target = target.to(device)
    if hasattr(loss_fn, "to"):
        loss_fn = loss_fn.to(device)
    resolution = resolution or G.img_resolution

    latent = init if init is not None else initial_latent(G, spaces[0], target.shape[0])
    latent = convert(latent.to(device), spaces[0], G)
    phases: dict[str, PhaseResult] = {}
    for space, n, lr in zip(spaces, steps, lrs):
        latent = convert(latent, space, G)
        result = run_phase(G, latent, target, degradation, loss_fn, int(n), lr * lr_scale, space,
                           optimizer, resolution, callback, progress)
        phases[space] = result
        latent = result.latent
    final = list(phases.values())[-1].images
    return RestoreResult(final, phases, time.perf_counter() - start)
