"""RUSIR: restore degraded images by inverting a StyleGAN2 through the degradation.

Three phases, each started from the last (spec section 1): W (one code, from w_avg), W+ (one code
per layer), W++ (one code per output filter). Every step renders G(latent) in [0, 1] (never
clamped), applies the differentiable approximation of the degradation, compares it with the
target through the loss, and takes a normalised-gradient step (`rusir.inversion.loop`). One set
of hyperparameters for every task and level.
"""
from __future__ import annotations

import time
from copy import deepcopy
from dataclasses import replace
from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor

from ..degradations.base import Degradation
from ..model.family import StyleGenerator, wpp_filters
from .acceleration import (LossRunner, SynthesisProxy, compile_or_eager, compiled_terms,
                           recompile_limit, tf32_scope)
from .batching import auto_batch_size, chunk_degradation, chunk_loss, chunks, largest_that_fits
from .config import NGD_OPTIONS, OPTIMIZERS, OPTIONS, RestoreConfig, check_optimizer
from .discrepancy import SETTLE, DiscrepancyStop
from .latents import SPACES, convert, initial_latent
from .loop import StepInfo, evaluate_loss, render, render_degraded, run_steps
from .method import (LossFn, LossSpec, PhaseResult, Problem, RestoreResult, prepare,
                     reject_unknown)
from .ngd import NGD

STOP_WINDOW = 10   # steps the discrepancy stop judges (and, averaging, latents it keeps per image)

__all__ = ["restore", "run_phase", "make_optimizer", "OPTIMIZERS", "NGD_OPTIONS", "RestoreConfig"]


def make_optimizer(name: str, params: list[Tensor], lr: float,
                   ngd_options: Optional[dict] = None) -> torch.optim.Optimizer:
    """RUSIR's NGD (with `ngd_options`: anchor, normalize; rusir.inversion.ngd), or Adam for the
    ablation (and the W+ Adam baseline)."""
    options = dict(ngd_options or {})
    if check_optimizer(name, options) == "ngd":
        return NGD(params, lr=lr, **options)
    return torch.optim.Adam(params, lr=lr)


def run_phase(G: StyleGenerator, latent: Tensor, target: Tensor, degradation, loss_fn: LossFn,
              steps: int, lr: float, space: str, optimizer: str = "ngd",
              resolution: Optional[int] = None, callback: Optional[Callable[[StepInfo], None]] = None,
              progress: bool = True, *, phase: Optional[str] = None,
              ngd_options: Optional[dict] = None,
              stop: Optional[DiscrepancyStop] = None) -> PhaseResult:
    """Optimise one latent in `space` for `steps` steps of render -> degrade -> loss -> step;
    return its final prediction and loss curve. `phase` names it for callbacks (default: space).
    `stop` (the discrepancy principle) freezes the images it declares done at the mean of their
    latents over the window it judged (`DiscrepancyStop.settled`), shortens the step of images
    near their floor when it settles (`DiscrepancyStop.slowed`), and ends the phase once all are."""
    latent = latent.detach().clone().requires_grad_(True)
    seen: dict = {}

    def objective() -> tuple[Tensor, Tensor]:
        rendered = render_degraded(G, latent, degradation, resolution)
        seen["rendered"] = rendered
        return evaluate_loss(loss_fn, rendered, target), rendered.prediction   # [B], [B, 3, R, R]

    hooks = {}
    if stop is not None:
        before: dict = {}
        stop.begin_phase(lambda x: convert(x, space, G))

        def snapshot(step: int) -> None:
            before["latent"] = latent.detach().clone()
            stop.remember(before["latent"])

        def freeze(step: int, value: Tensor) -> None:
            rendered = seen.pop("rendered")
            seen["floor"] = stop.estimate(rendered) if stop.due(step) else None
            new = stop.observe(phase or space, step, value, seen["floor"])
            done = stop.done.to(latent.device)
            prior = before.pop("latent")
            with torch.no_grad():
                latent.copy_(stop.slowed(prior, latent))   # near the floor: a shorter step
                latent[done] = stop.settled(prior, new)[done]   # done: the window's mean when
                                                                # new, else as before

        hooks = dict(before_step=snapshot, after_step=freeze, until=lambda: stop.all_done)
        if callback is not None:
            user = callback
            callback = lambda info: user(replace(info, floor=seen.get("floor")))  # noqa: E731
    losses = run_steps(objective, make_optimizer(optimizer, [latent], lr, ngd_options), steps,
                       phase=phase or space, callback=callback, progress=progress, **hooks)
    with torch.no_grad():
        images = render(G, latent, resolution)
    return PhaseResult(space, images, latent.detach(), losses, lr)


def restore(G: StyleGenerator, target: Tensor, degradation=None, *, loss: LossSpec = None,
            seed: int = 0, callback: Optional[Callable[[StepInfo], None]] = None,
            progress: bool = True, steps: Optional[Sequence[int]] = None,
            lrs: Optional[Sequence[float]] = None, lr_scale: Optional[float] = None,
            spaces: Sequence[str] = SPACES, optimizer: str = "ngd",
            resolution: Optional[int] = None, init: Optional[Tensor] = None,
            batch_size=None, precision: str = "fp32", compile=False, cache_target: bool = True,
            ngd_options: Optional[dict] = None, discrepancy=None, jitter: float = 0.0,
            **unknown) -> RestoreResult:
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
    batch_size: None runs the B images as one batch; n runs them n at a time, each chunk with
    the whole batch's per-image seeds (`rusir.inversion.batching`; equal to one batch in
    float64, not bit for bit in float32, where batched kernels round differently and NGD
    amplifies it); "auto" picks n from the free GPU memory and the measured cost of one W++
    step (the whole batch on the CPU). A CUDA out-of-memory error is re-raised naming a
    batch_size that fits. Callbacks then see one chunk at a time.
    precision: "fp32" (default), "tf32" (CUDA TF32 matmuls/convolutions), "bf16" (the loss
    under bf16 autocast, the generator in fp32) or "tf32+bf16" (both); compile: True (or a
    torch.compile backend) compiles the synthesis and the loss terms, falling back to eager
    with a warning
    (`rusir.inversion.acceleration`). cache_target: the loss computes the target's side
    (pyramid, LPIPS features) once per restore where it is constant (bit-identical; False
    recomputes it every step, as the reference code).
    discrepancy: tau of the discrepancy principle (`rusir.inversion.discrepancy`): an image stops
    once its loss is at most tau times what the truth would score against the target's noise,
    and keeps that latent through the later phases. None takes the generator's own
    (`info(G).discrepancy`: on for the embedded generator, off for the official ones, which run
    the paper's method); 0 turns it off. It needs a degradation with a true side
    (`rusir.degradations.Degradation`); `result.info["stopped"]` says where each image stopped
    ("W+:37") or None.
    jitter: a relative perturbation of the start (w_avg, or `init`): start * (1 + jitter * z)
    with z ~ N(0, 1) per coordinate, drawn from `seed` and the same for every image of the
    batch (so a batch still equals its images alone). 0 (default) starts exactly there; the
    benchmark's repeats use float32 rounding level (`rusir.engine.unit.REPEAT_JITTER`) to show
    how far rounding alone moves a result.
    callback(StepInfo) runs after every step; `result.config` is the RestoreConfig that ran
    (`rusir.inversion.config`: the options, the generator's name and sha256, the loss and the
    chunk size that ran, also in `result.info["batch_size"]`).
    """
    start = time.perf_counter()
    reject_unknown("restore", unknown, [*OPTIONS, "init"])
    config = RestoreConfig.resolve(
        G, degradation, loss, steps=steps, lrs=lrs, lr_scale=lr_scale, spaces=spaces,
        optimizer=optimizer, resolution=resolution, seed=seed, batch_size=batch_size,
        precision=precision, compile=compile, cache_target=cache_target,
        ngd_options=ngd_options, discrepancy=discrepancy, jitter=jitter)
    problem = prepare(G, target, degradation, loss, seed=config.seed, resolution=config.resolution)
    with _accelerated(G, problem.loss, config) as (G_run, wrap):
        size = _chunk_size(G_run, problem, config, wrap)
        oom = None
        try:
            phases, stopped = _run_chunks(G_run, problem, init, config, wrap, size, callback,
                                          progress)
        except torch.OutOfMemoryError as exc:
            oom = str(exc).splitlines()[0] if str(exc) else "out of memory"
        if oom is not None:   # out of the except block: the failed step's tensors are freed
            raise _out_of_memory(G_run, problem, config, wrap, size, oom)
    info = {"init": "w_avg" if init is None else "given", "batch_size": size, "stopped": stopped}
    return RestoreResult(list(phases.values())[-1].images, phases, time.perf_counter() - start,
                         config.ran(size), info)


# The run-level options of a benchmark run that restore takes (rusir.engine.unit.method_kwargs):
# per-phase steps, the discrepancy tau, the chunk size inside a unit and the start's jitter
# (a repeat r >= 1 of `rusir bench --repeats`).
restore.run_options = ("steps", "discrepancy", "batch_size", "jitter")


@contextmanager
def _accelerated(G: StyleGenerator, loss, config: RestoreConfig) -> Iterator[tuple]:
    """(G as the steps see it, a function wrapping a chunk's loss) under the configured
    precision, compilation and target caching; everything is put back afterwards."""
    backend, precision = config.compile, config.precision
    with ExitStack() as stack:
        stack.enter_context(tf32_scope("tf32" in precision))
        if hasattr(loss, "cache_target"):
            before = loss.cache_target
            loss.cache_target = config.cache_target
            stack.callback(setattr, loss, "cache_target", before)
            stack.callback(loss.clear_target_cache)
        G_run = G
        if backend:
            stack.enter_context(recompile_limit())
            G_run = SynthesisProxy(G, compile_or_eager(G.synthesis, "synthesis", backend))

        def wrap(chunk_loss_fn):
            """A chunk's loss as the loop calls it (compiled terms and autocast as configured)."""
            if backend:
                stack.enter_context(compiled_terms(chunk_loss_fn, backend))
            return LossRunner(chunk_loss_fn, precision) if "bf16" in precision else chunk_loss_fn

        yield G_run, wrap


def _chunk(problem: Problem, start: int, stop: int, seed: int, copy: bool = False) -> Problem:
    """Images [start, stop) as their own problem: the degradation with their seeds, the loss
    on that degradation, its noise restarted at the run's seed (shared by the whole batch)."""
    batch = problem.target.shape[0]
    degradation = chunk_degradation(problem.degradation, start, stop, batch)
    if copy and degradation is problem.degradation:   # a probe must not advance the run's streams
        degradation = deepcopy(degradation)
    loss = chunk_loss(problem.loss, problem.degradation, degradation)
    if hasattr(loss, "reset_noise"):
        loss.reset_noise(seed)
    return Problem(problem.target[start:stop], degradation, loss, problem.resolution)


def _pad(curve: list[Tensor], steps: int) -> list[Tensor]:
    """A loss curve that ended early (every image stopped) held at its last value to `steps`."""
    return curve + curve[-1:] * (steps - len(curve)) if curve else curve


def _run_chunks(G, problem: Problem, init: Optional[Tensor], config: RestoreConfig, wrap, size: int,
                callback, progress: bool) -> tuple[dict[str, PhaseResult], list]:
    """The phases for the whole batch, `size` images at a time, concatenated per phase, and
    where each image stopped (None: it ran every step)."""
    batch = problem.target.shape[0]
    if size >= batch:
        return _run_phases(G, problem._replace(loss=wrap(problem.loss)), init, config,
                           callback, progress)
    parts, stopped = [], []
    for start, stop in chunks(batch, size):
        part = _chunk(problem, start, stop, config.seed)
        part_init = init[start:stop] if init is not None and init.shape[0] == batch else init
        phases, where = _run_phases(G, part._replace(loss=wrap(part.loss)), part_init, config,
                                    callback, progress)
        parts.append(phases)
        stopped += where

    def curve(space: str) -> list[Tensor]:
        n = max(len(p[space].losses) for p in parts)
        return [torch.cat(step) for step in zip(*(_pad(p[space].losses, n) for p in parts))]

    return {space: PhaseResult(space, torch.cat([p[space].images for p in parts]),
                               torch.cat([p[space].latent for p in parts]), curve(space),
                               parts[0][space].lr)
            for space in parts[0]}, stopped


def _probe(G, problem: Problem, config: RestoreConfig, wrap, n: int) -> None:
    """One W++ step (forward, backward, NGD) with the first n images, on copies of the
    degradation and loss: the largest step of a restore, to measure what n images need."""
    part = _chunk(problem, 0, n, config.seed, copy=True)
    latent = initial_latent(G, "W++", n).to(problem.target.device)
    run_phase(G, latent, part.target, part.degradation, wrap(part.loss), 1, 1e-3, "W++",
              progress=False)


def _step_memory(G, problem: Problem, config: RestoreConfig, wrap, n: int) -> int:
    """Peak CUDA bytes one W++ step with n images adds to what is allocated now."""
    device = problem.target.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    _probe(G, problem, config, wrap, n)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def _stop_memory(G, config: RestoreConfig, n: int) -> int:
    """Bytes the discrepancy stop keeps for n images: STOP_WINDOW W++ latents each (iterate
    averaging), which one probe step never allocates: 6.6 MB per image for toyfaces64, ~190 MB
    at 1024 px."""
    if config.discrepancy is None:
        return 0
    itemsize = torch.promote_types(G.w_avg.dtype, torch.float32).itemsize
    return STOP_WINDOW * n * G.num_ws * wpp_filters(G) * G.w_dim * itemsize


def _chunk_size(G, problem: Problem, config: RestoreConfig, wrap) -> int:
    batch, batch_size = problem.target.shape[0], config.batch_size
    if batch_size is None:
        return batch
    if batch_size == "auto":
        return auto_batch_size(batch, problem.target.device,
                               lambda n: _step_memory(G, problem, config, wrap, n)
                               + _stop_memory(G, config, n))
    return min(batch_size, batch)


def _out_of_memory(G, problem: Problem, config: RestoreConfig, wrap, size: int,
                   message: str) -> torch.OutOfMemoryError:
    """The error to raise after running out of memory with chunks of `size`: it names the
    largest chunk with which one W++ step runs (found by bisection)."""
    def fits(n: int) -> bool:
        try:
            _probe(G, problem, config, wrap, n)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    batch = problem.target.shape[0]
    if not isinstance(problem.degradation, Degradation):   # cannot be split to probe
        return torch.OutOfMemoryError(f"restore ran out of GPU memory with {min(size, batch)} "
                                      f"images at a time: try a smaller batch ({message})")
    n = largest_that_fits(fits, max(size - 1, 1))
    if n == 0:
        return torch.OutOfMemoryError(
            f"restore ran out of GPU memory and not even one image fits (one W++ step): lower "
            f"the resolution or use precision='bf16' ({message})")
    return torch.OutOfMemoryError(
        f"restore ran out of GPU memory with {min(size, batch)} images at a time; "
        f"restore(..., batch_size={n}) fits (one W++ step with {n} images ran), or use "
        f"batch_size='auto' ({message})")


def jittered(latent: Tensor, jitter: float, seed: int) -> Tensor:
    """latent * (1 + jitter * z), z ~ N(0, 1) of one image's shape drawn on the CPU in float64
    from `seed` (the same draw on every device and for every image: a chunk draws what the
    whole batch draws). jitter 0: the latent itself."""
    if not jitter:
        return latent
    draw = torch.Generator().manual_seed(int(seed))
    z = torch.randn(latent.shape[1:], generator=draw, dtype=torch.float64)   # one image's shape
    return latent * (1 + jitter * z.to(latent.device, latent.dtype))          # [B, ...]


def _run_phases(G: StyleGenerator, problem: Problem, init: Optional[Tensor], config: RestoreConfig,
                callback, progress: bool) -> tuple[dict[str, PhaseResult], list]:
    """W -> W+ -> W++ (the phases in config.spaces), each from the last phase's latent; with
    the discrepancy principle, one stop follows the images through the phases."""
    spaces, batch = config.spaces, problem.target.shape[0]
    stop = None
    if config.discrepancy is not None:
        stop = DiscrepancyStop(config.discrepancy, problem.loss, problem.degradation, batch,
                               window=STOP_WINDOW, average=True, settle=SETTLE)
    latent = init if init is not None else initial_latent(G, spaces[0], batch)
    latent = jittered(convert(latent.to(problem.target.device), spaces[0], G), config.jitter,
                      config.seed)
    phases: dict[str, PhaseResult] = {}
    for space, n, lr in zip(spaces, config.steps, config.lrs):
        latent = convert(latent, space, G)
        phases[space] = run_phase(G, latent, problem.target, problem.degradation, problem.loss,
                                  n, lr * config.lr_scale, space, config.optimizer,
                                  problem.resolution, callback, progress,
                                  ngd_options=config.ngd_options, stop=stop)
        latent = phases[space].latent
    return phases, (stop.stopped if stop is not None else [None] * batch)
