"""RUSIR: restore degraded images by inverting a StyleGAN2 through the degradation.

Three phases, each started from the last (spec section 1): W (one code, from w_avg), W+ (one code
per layer), W++ (one code per output filter). Every step renders G(latent) in [0, 1] (never
clamped), applies the differentiable approximation of the degradation, compares it with the
target through the loss, and takes a normalised-gradient step (`rusir.inversion.loop`). One set
of hyperparameters for every task and level.
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from ..model.stylegan2 import Generator
from .latents import SPACES, convert, initial_latent
from .loop import StepInfo, evaluate_loss, render, render_degraded, run_steps
from .method import (LossFn, LossSpec, PhaseResult, Problem, RestoreResult, prepare,
                     reject_unknown)
from .ngd import NGD
from .schedule import resolve as resolve_schedule

__all__ = ["restore", "run_phase", "make_optimizer", "OPTIMIZERS"]

OPTIMIZERS = ("ngd", "adam")


NGD_OPTIONS = ("anchor", "normalize")


def make_optimizer(name: str, params: list[Tensor], lr: float,
                   ngd_options: Optional[dict] = None) -> torch.optim.Optimizer:
    """RUSIR's NGD (with `ngd_options`: anchor, normalize; rusir.inversion.ngd), or Adam for the
    ablation (and the W+ Adam baseline)."""
    options = dict(ngd_options or {})
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    if options and name != "ngd":
        raise ValueError(f"ngd_options apply to optimizer 'ngd' only, not {name!r}")
    unknown = sorted(set(options) - set(NGD_OPTIONS))
    if unknown:
        raise ValueError(f"unknown ngd_options {unknown}; choose from {list(NGD_OPTIONS)}")
    if name == "ngd":
        return NGD(params, lr=lr, **options)
    return torch.optim.Adam(params, lr=lr)


def run_phase(G: Generator, latent: Tensor, target: Tensor, degradation, loss_fn: LossFn,
              steps: int, lr: float, space: str, optimizer: str = "ngd",
              resolution: Optional[int] = None, callback: Optional[Callable[[StepInfo], None]] = None,
              progress: bool = True, *, phase: Optional[str] = None,
              ngd_options: Optional[dict] = None) -> PhaseResult:
    """Optimise one latent in `space` for `steps` steps of render -> degrade -> loss -> step;
    return its final prediction and loss curve. `phase` names it for callbacks (default: space)."""
    latent = latent.detach().clone().requires_grad_(True)

    def objective() -> tuple[Tensor, Tensor]:
        rendered = render_degraded(G, latent, degradation, resolution)
        return evaluate_loss(loss_fn, rendered, target), rendered.prediction   # [B], [B, 3, R, R]

    losses = run_steps(objective, make_optimizer(optimizer, [latent], lr, ngd_options), steps,
                       phase=phase or space, callback=callback, progress=progress)
    with torch.no_grad():
        images = render(G, latent, resolution)
    return PhaseResult(space, images, latent.detach(), losses, lr)


def _check_spaces(spaces: Sequence[str]) -> tuple[str, ...]:
    spaces = tuple(spaces)
    if not spaces or any(s not in SPACES for s in spaces) or list(spaces) != sorted(spaces, key=SPACES.index):
        raise ValueError(f"spaces must be an ordered subset of {SPACES}, got {spaces}")
    return spaces


def restore(G: Generator, target: Tensor, degradation=None, *, loss: LossSpec = None,
            seed: int = 0, callback: Optional[Callable[[StepInfo], None]] = None,
            progress: bool = True, steps: Optional[Sequence[int]] = None,
            lrs: Optional[Sequence[float]] = None, lr_scale: Optional[float] = None,
            spaces: Sequence[str] = SPACES, optimizer: str = "ngd",
            resolution: Optional[int] = None, init: Optional[Tensor] = None,
            ngd_options: Optional[dict] = None, **unknown) -> RestoreResult:
    """Restore `target` ([B, 3, h, w] in [0, 1]) with RUSIR's W -> W+ -> W++ inversion.

    degradation: object with `degrade_prediction(x)` and optional `mask` (identity if None).
    loss: callable (x, y, mask=None) -> [B]; or a loss as data (preset/term name, dict,
    LossConfig: see `rusir.inversion.presets.build_loss`), built here with this degradation's
    `degrade_prediction` (which the `consistency` term needs); None takes the generator's
    default preset (`rusir.model.generators.info(G).default_loss`; the paper's LPIPS-VGG loss
    for official generators).
    seed: RUSIR draws nothing itself; the seed restarts the loss's noise (`reset_noise`: the
    hole fill of perceptual terms under a mask, the consistency term), so a run depends on its
    seed only. seed=0 on a fresh loss is what the loss does on its own.
    steps / lrs: per phase, for the phases named in `spaces` (a subset of W, W+, W++ in order,
    e.g. ("W+",) for an ablation); lr_scale multiplies every rate. None takes the generator's
    own schedule (`info(G).steps` / `.lrs` / `.lr_scale`, recorded by `load_generator`), else
    the paper's 150/150/150 steps at 0.08/0.02/0.005 x 1 (rusir.inversion.schedule). Steps are
    whole numbers >= 0 (0 skips a phase), rates and lr_scale finite and > 0; anything else is a
    ValueError before any step.
    optimizer: "ngd" (RUSIR) or "adam" (ablation); ngd_options: NGD's options for every phase run
    here (anchor, normalize: rusir.inversion.ngd; None = the plain step). resolution: working resolution R the
    degradation expects (default: G's). init: a starting latent instead of w_avg.
    callback(StepInfo) runs after every step; `result.config` holds the resolved configuration.
    """
    start = time.perf_counter()
    spaces = _check_spaces(spaces)
    steps, lrs, lr_scale = resolve_schedule(G, spaces, steps, lrs, lr_scale)
    config = dict(steps=steps, lrs=lrs, lr_scale=lr_scale, spaces=spaces, optimizer=optimizer,
                  resolution=int(resolution or G.img_resolution), seed=int(seed))
    if ngd_options:
        make_optimizer(optimizer, [torch.zeros(1)], 1.0, ngd_options)   # bad options: before any step
        config["ngd_options"] = dict(ngd_options)
    reject_unknown("restore", unknown, [*config, "init", "ngd_options"])
    problem = prepare(G, target, degradation, loss, seed=seed, resolution=resolution)
    phases = _run_phases(G, problem, init, config, callback, progress)
    info = {"init": "w_avg" if init is None else "given"}
    return RestoreResult(list(phases.values())[-1].images, phases, time.perf_counter() - start,
                         config, info)


def _run_phases(G: Generator, problem: Problem, init: Optional[Tensor], config: dict,
                callback, progress: bool) -> dict[str, PhaseResult]:
    """W -> W+ -> W++ (the phases in config["spaces"]), each from the last phase's latent."""
    spaces, batch = config["spaces"], problem.target.shape[0]
    latent = init if init is not None else initial_latent(G, spaces[0], batch)
    latent = convert(latent.to(problem.target.device), spaces[0], G)
    phases: dict[str, PhaseResult] = {}
    for space, n, lr in zip(spaces, config["steps"], config["lrs"]):
        latent = convert(latent, space, G)
        phases[space] = run_phase(G, latent, problem.target, problem.degradation, problem.loss,
                                  n, lr * config["lr_scale"], space, config["optimizer"],
                                  problem.resolution, callback, progress,
                                  ngd_options=config.get("ngd_options"))
        latent = phases[space].latent
    return phases
