"""PULSE (Menon et al. 2020; adamian98/pulse) adapted to StyleGAN2-ADA and to every task, as the
RUSIR paper used it (spec 7.1).

The variable is v [B, num_ws, w_dim], each row on the sphere of radius sqrt(w_dim). It reaches W+
through the "Gaussianised" W: w = LeakyReLU_0.2(v * std + mean), where mean / std are per-dimension
statistics of LeakyReLU_5(mapping(z)) over N samples (the inverse of the mapping's last leaky ReLU;
the StyleGAN2 gain sqrt(2) cancels since both ReLUs are positively homogeneous). Objective per
image, on [0, 1] images through RUSIR's degradation approximation (the paper replaced PULSE's
bicubic downscaler by it):

    l2_weight * max(eps, mean (f(G(w)) - y)^2) + geocross_weight * GEOCROSS(w)
    GEOCROSS(w) = mean_{i,j} angle(w_i, w_j)^2 * w_dim / 8,  angle = 2 atan2(|w_i - w_j|, |w_i + w_j|)

(defaults 100 and 0.05, PULSE's "100*L2+0.05*GEOCROSS"). Adam (lr 0.4) steps on v, then every row
is projected back onto its sphere; the rate follows PULSE's "linear1cycledrop" schedule.

Choices and deviations (documented, and recorded in `result.info`):
- Noise: our generator keeps fixed noise buffers (noise_mode "const"); PULSE's optimisation of
  the first 5 noise maps is left out.
- Radius: rows start projected onto radius sqrt(w_dim) (PULSE keeps each row's initial norm,
  ~sqrt(512) +- 0.7), so the invariant is exact.
- The eps failure ("could not find a face that downscales correctly") does not abort: the run
  always returns the best-objective iterate per image (PULSE outputs the last iterate and shows
  the best one only as its low-res companion), and `info["reached_eps"]` says per image whether
  the best L2 got <= eps. `info["best_l2"]`, `info["best_step"]` and `info["v"]` are kept too.
- `loss`: accepted for the shared call shape (bench passes its loss to every method) but
  PULSE keeps its own L2 data term unless `data_term="loss"`, which replaces the L2 by `loss`
  (weighted by l2_weight, no eps clamp; None then means the generator's default preset) -- an
  ablation, not PULSE. The Gaussian fit is done once per generator and
  sample count and cached in memory (it goes stale if G's weights change in place).
- The true dead-pixel mask: the paper gave PULSE the true Bernoulli mask for denoising, and so
  does the benchmark (`wants_true_mask`; rusir.degradations.expose_true_mask): the
  approximation then multiplies by the mask the target was drawn with. Called directly, PULSE
  uses whatever degradation object it is given.
"""
from __future__ import annotations

import math
import time
import weakref
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..degradations.base import Seed
from ..inversion.latents import seeded_randn
from ..inversion.loop import StepInfo, evaluate_loss, render, render_degraded, run_steps
from ..inversion.losses import masked_mse
from ..inversion.method import LossSpec, PhaseResult, Problem, RestoreResult, prepare, reject_unknown
from .seeds import loss_seed, seed_config

__all__ = ["pulse", "gaussian_fit", "to_w", "geocross", "lr_factor", "SCHEDULES"]

SCHEDULES = ("fixed", "linear1cycle", "linear1cycledrop")
_FITS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def gaussian_fit(G, samples: int = 10_000, seed: int = 0, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """(mean, std), each [w_dim]: statistics of LeakyReLU_5(mapping(z)) over `samples` draws of
    z ~ N(0, I) (own CPU generator seeded `seed`). Cached per generator object, samples and seed."""
    device = next(G.parameters()).device
    cache = _FITS.setdefault(G, {})
    key = (int(samples), int(seed), str(device))
    if key not in cache:
        if samples < 2:
            raise ValueError(f"the Gaussian fit needs at least 2 samples, got {samples}")
        gen = torch.Generator().manual_seed(int(seed))
        total = torch.zeros(G.w_dim, dtype=torch.float64, device=device)
        total_sq = torch.zeros_like(total)
        done = 0
        with torch.no_grad():
            while done < samples:
                n = min(chunk, samples - done)
                z = torch.randn(n, G.z_dim, generator=gen).to(device)
                w = F.leaky_relu(G.mapping(z, None)[:, 0].double(), 5.0)  # [n, w_dim]
                total += w.sum(0)
                total_sq += w.square().sum(0)
                done += n
        mean = total / samples
        var = (total_sq - samples * mean.square()) / (samples - 1)  # unbiased, like torch.std
        cache[key] = (mean.float(), var.clamp_min(0).sqrt().float())
    return cache[key]


def to_w(v: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Gaussianised latent v [B, num_ws, w_dim] -> W+ [B, num_ws, w_dim]."""
    return F.leaky_relu(v * std + mean, 0.2)


def geocross(w: Tensor) -> Tensor:
    """PULSE's GEOCROSS per image [B]: mean squared pairwise angle between the W+ rows, * w_dim / 8."""
    if w.shape[1] == 1:
        return w.new_zeros(w.shape[0])
    x, y = w.unsqueeze(1), w.unsqueeze(2)                 # [B, 1, L, D], [B, L, 1, D]
    a = ((x - y).square().sum(-1) + 1e-9).sqrt()
    b = ((x + y).square().sum(-1) + 1e-9).sqrt()
    d = 2 * torch.atan2(a, b)                             # [B, L, L]
    return (d.square() * w.shape[-1]).mean((1, 2)) / 8


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """PULSE's learning-rate factor at 0-based `step` of `steps` (torch LambdaLR semantics)."""
    x = float(step)
    if schedule == "fixed":
        return 1.0
    if schedule == "linear1cycle":
        return (9 * (1 - abs(x / steps - 0.5) * 2) + 1) / 10
    if schedule == "linear1cycledrop":
        if x < 0.9 * steps:
            return (9 * (1 - abs(x / (0.9 * steps) - 0.5) * 2) + 1) / 10
        return 0.1 + (x - 0.9 * steps) / (0.1 * steps) * (1 / 1000 - 1 / 10)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


def _project(v: Tensor, radius: float) -> None:
    """Rescale every latent row onto the sphere of `radius` (in place, no grad)."""
    v.mul_(radius / (v.square().sum(-1, keepdim=True) + 1e-9).sqrt())


class _PulseSteps:
    """The hooks of one PULSE run for `run_steps`: the rate schedule before each step, the
    objective (which also keeps each image's best iterate, the one PULSE returns, since the
    objective is where an iterate's value is known), the sphere projection after each step."""

    def __init__(self, G, problem: Problem, v: Tensor, fit: tuple[Tensor, Tensor], config: dict):
        self.G, self.problem, self.v, self.fit, self.config = G, problem, v, fit, config
        self.optimizer = torch.optim.Adam([v], lr=config["lr"])
        self.radius = math.sqrt(G.w_dim)
        self.step = 0
        batch, device = v.shape[0], v.device
        self.best = torch.full((batch,), math.inf, device=device)       # objective [B]
        self.best_l2 = torch.full((batch,), math.inf, device=device)    # lowest L2 seen [B]
        self.best_step = torch.full((batch,), -1, dtype=torch.long, device=device)
        self.best_v = v.detach().clone()                                # [B, num_ws, w_dim]

    def before_step(self, step: int) -> None:
        self.step = step
        factor = lr_factor(self.config["schedule"], step, self.config["steps"])
        for group in self.optimizer.param_groups:
            group["lr"] = self.config["lr"] * factor

    def objective(self) -> tuple[Tensor, Tensor]:
        """l2_weight * data + geocross_weight * GEOCROSS per image [B], and the prediction."""
        c, problem = self.config, self.problem
        w = to_w(self.v, *self.fit)
        rendered = render_degraded(self.G, w, problem.degradation, problem.resolution)
        l2 = masked_mse(rendered.degraded, problem.target, rendered.mask)             # [B]
        if c["data_term"] == "l2":
            data = l2.clamp_min(c["eps"])   # PULSE: no gradient once an image is below eps
        else:
            data = evaluate_loss(problem.loss, rendered, problem.target)
        value = c["l2_weight"] * data + c["geocross_weight"] * geocross(w)            # [B]
        self._track(value.detach(), l2.detach())
        return value, rendered.prediction

    @torch.no_grad()
    def _track(self, value: Tensor, l2: Tensor) -> None:
        """Keep, per image, the iterate just rendered if its objective is the best so far."""
        better = value < self.best
        self.best = torch.where(better, value, self.best)
        self.best_step = torch.where(better, torch.full_like(self.best_step, self.step), self.best_step)
        self.best_v[better] = self.v.detach()[better]
        self.best_l2 = torch.minimum(self.best_l2, l2)

    @torch.no_grad()
    def after_step(self, step: int, value: Tensor) -> None:
        _project(self.v, self.radius)


def pulse(G, target: Tensor, degradation=None, *, loss: LossSpec = None, seed: Seed = 0,
          callback: Optional[Callable[[StepInfo], None]] = None, progress: bool = True,
          steps: int = 100, lr: float = 0.4, l2_weight: float = 100.0,
          geocross_weight: float = 0.05, eps: float = 2e-3, schedule: str = "linear1cycledrop",
          fit_samples: int = 10_000, fit_seed: int = 0, data_term: str = "l2",
          resolution: Optional[int] = None, **unknown) -> RestoreResult:
    """Restore `target` ([B, 3, h, w] in [0, 1]) with PULSE on the sphere of the Gaussianised W.

    steps / lr: Adam steps and peak rate (scaled by `schedule`); seed: image i starts from
    v ~ N(0, I) drawn with seed + i, or seed[i] for a sequence (the benchmark's batches: each
    image as alone); fit_samples / fit_seed: the Gaussian fit of W.
    data_term: "l2" (PULSE; `loss` is then not used) or "loss" (`loss` replaces the L2).
    Returns the per-image best-objective iterate; see the module doc for `info`.
    """
    config = dict(steps=int(steps), lr=lr, l2_weight=l2_weight, geocross_weight=geocross_weight,
                  eps=eps, schedule=schedule, fit_samples=int(fit_samples), fit_seed=int(fit_seed),
                  data_term=data_term, resolution=int(resolution or G.img_resolution),
                  seed=seed_config(seed))
    reject_unknown("pulse", unknown, config)
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    if data_term not in ("l2", "loss"):
        raise ValueError(f"data_term must be 'l2' (PULSE) or 'loss' (the given rusir loss), got {data_term!r}")
    start = time.perf_counter()
    use_loss = data_term == "loss"
    problem = prepare(G, target, degradation, loss if use_loss else None, seed=loss_seed(seed),
                      resolution=resolution, need_loss=use_loss)
    dtype = torch.promote_types(next(G.parameters()).dtype, torch.float32)   # G.double(): float64
    fit = tuple(t.to(dtype) for t in gaussian_fit(G, fit_samples, fit_seed))
    v = seeded_randn((G.num_ws, G.w_dim), seed, problem.target.shape[0], problem.target.device).to(dtype)
    with torch.no_grad():
        _project(v, math.sqrt(G.w_dim))
    run = _PulseSteps(G, problem, v.requires_grad_(True), fit, config)
    losses = run_steps(run.objective, run.optimizer, config["steps"], phase="pulse",
                       callback=callback, progress=progress, before_step=run.before_step,
                       after_step=run.after_step)
    with torch.no_grad():
        w = to_w(run.best_v, *fit)
        images = render(G, w, problem.resolution)
    info = {"reached_eps": (run.best_l2 <= eps).tolist(), "best_l2": run.best_l2.tolist(),
            "best_step": run.best_step.tolist(), "v": run.best_v, "noise": "const (not optimised)"}
    phase = PhaseResult("W+", images, w.detach(), losses, lr)
    return RestoreResult(images, {"pulse": phase}, time.perf_counter() - start, config, info)


pulse.seeds_per_image = True   # takes one seed per image (see seeds.py)
pulse.wants_true_mask = True   # the true dead-pixel mask of denoising, as the paper ran it
pulse.table = "pulse"           # its tuned (task, level) hyperparameters: rusir/baselines/tables/[<generator>/]pulse.yaml
