"""DDRM (Kawar et al. 2022, "Denoising Diffusion Restoration Models"): the paper's Table 3 rival.

A diffusion sampler conditioned on y = H x + sigma_y n through the SVD H = U diag(s) V^T
(rusir.degradations.svd). In the spectral coordinates x_bar = V^T x (images in [-1, 1]) and
y_bar = diag(s)^-1 U^T y, with sigma_t = sqrt(1 - a_t) / sqrt(a_t) the noise level of step t and
x0 the prior's prediction of the clean image at that step, each step t -> t' draws:

* a coordinate H does not see (s = 0): DDIM, x0 + sqrt(1 - eta^2) sigma_t' eps + eta sigma_t' z;
* an observed coordinate noisier than the measurement (s sigma_t' > sigma_y): the measurement,
  eta_b y_bar + (1 - eta_b) x0 + sqrt(sigma_t'^2 - eta_b^2 sigma_y^2 / s^2) z;
* an observed coordinate less noisy than the measurement (s sigma_t' < sigma_y): DDIM pulled to
  the measurement, x0 + sqrt(1 - eta^2) sigma_t' (y_bar - x0) / (sigma_y / s) + eta sigma_t' z;

then x_t' = sqrt(a_t') V x_bar. It starts from x_T drawn the same way (sigma_T is huge, so every
observed coordinate starts at its measurement) and returns the last step's x0, clamped to
[0, 1] as the authors' code saves it. Steps are DDRM's: t = 0, skip, 2 skip, ... < 1000 with
skip = 1000 // steps. The paper's defaults: eta 0.85, eta_b 1, 20 steps.

In rusir's call shape `G` is the StyleGAN the benchmark loaded: DDRM uses only its resolution,
device and, for the default `prior`, its domain (rusir.model.diffusion.default_prior: the
embedded DDPM for toyfaces64, google/ddpm-celebahq-256 for the CelebA-HQ generator). The noise
level sigma_y is the degradation's (Gaussian noise: its sigma), else the 8-bit rounding of the
target (1 / (255 sqrt 12)); `sigma_y=` overrides it. Which linear model each task gets, and
where that is only an approximation of the true degradation, is
`rusir.degradations.svd.LINEAR_APPROXIMATION`. `loss` is accepted (the shared call shape) and
unused: DDRM has no loss.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..degradations import Identity
from ..degradations.base import Seed, per_image_seeds
from ..degradations.svd import LINEAR_APPROXIMATION, linear_operator
from ..inversion.loop import StepInfo
from ..inversion.method import LossSpec, PhaseResult, RestoreResult, check_target, reject_unknown
from ..model.diffusion import DiffusionPrior, default_prior, load_prior
from .seeds import seed_config

__all__ = ["ddrm", "ddrm_sample", "timesteps", "QUANTISATION_SIGMA"]

QUANTISATION_SIGMA = 1.0 / (255 * math.sqrt(12))   # std of 8-bit rounding, on [0, 1]
_PRIORS: dict[tuple[str, str], DiffusionPrior] = {}  # loaded once per (name, device)


def timesteps(steps: int, total: int = 1000) -> list[int]:
    """DDRM's schedule: 0, skip, 2 skip, ... below `total`, skip = total // steps."""
    if not 1 <= int(steps) <= total:
        raise ValueError(f"steps must be in 1..{total}, got {steps}")
    return list(range(0, total, total // int(steps)))[:int(steps)]


def _prior(prior: Union[str, DiffusionPrior, None], G, device: torch.device) -> DiffusionPrior:
    if isinstance(prior, DiffusionPrior):
        return prior.to(device)
    name = default_prior(G) if prior is None else str(prior)
    key = (name, str(device))
    if key not in _PRIORS:
        _PRIORS[key] = load_prior(name, device)
    return _PRIORS[key]


class _Noise:
    """Standard normal draws [B, 3, R, R] per step, image i from its own generator (seed + i), so
    that a batch equals its images run alone; drawn on the CPU, so results do not depend on the
    device."""

    def __init__(self, seed: Seed, batch: int, shape: tuple[int, ...], device, dtype) -> None:
        self.gens = [torch.Generator().manual_seed(s) for s in per_image_seeds(seed, batch)]
        self.shape, self.device, self.dtype = shape, device, dtype

    def __call__(self) -> Tensor:
        draws = [torch.randn(self.shape, generator=g) for g in self.gens]
        return torch.stack(draws).reshape(len(draws), -1).to(self.device, self.dtype)   # [B, D]


def ddrm_sample(eps_fn: Callable[[Tensor, int], Tensor], alphas_cumprod: Tensor, op, y: Tensor,
                sigma_y: float, noise: Callable[[], Tensor], steps: int = 20, eta: float = 0.85,
                eta_b: float = 1.0, on_step: Optional[Callable[[int, Tensor], None]] = None) -> Tensor:
    """DDRM's sampler (module doc) in [-1, 1]: y [B, ...] the measurement H x + sigma_y n of the
    operator `op` (rusir.degradations.svd), eps_fn(x_t, t) the prior's noise prediction. Returns
    the last step's x0 [B, 3, R, R]; on_step(i, x0) sees every step's prediction."""
    a = alphas_cumprod.to(y.device, torch.float64)
    s = op.singulars                                                         # [1 or B, D]
    observed = s > 0
    s_safe = torch.where(observed, s, torch.ones_like(s))
    y_bar = torch.where(observed, op.ut(y) / s_safe, torch.zeros_like(s))    # [B, D]
    inv = torch.where(observed, sigma_y / s_safe, torch.zeros_like(s))       # sigma_y / s
    seq = timesteps(steps, len(a))

    def sigma(t: int) -> float:
        at = float(a[t]) if t >= 0 else 1.0
        return math.sqrt(1 - at) / math.sqrt(at)

    sig_T = sigma(seq[-1])
    start = observed & (s * sig_T > sigma_y)
    x_bar = torch.where(start, y_bar + (sig_T ** 2 - inv ** 2).clamp_min(0).sqrt() * noise(),
                        sig_T * noise())
    x = math.sqrt(float(a[seq[-1]])) * op.v(x_bar)                           # [B, 3, R, R]
    x0 = x
    for i, (t, t_next) in enumerate(zip(reversed(seq), [*reversed(seq[:-1]), -1])):
        at = float(a[t])
        eps = eps_fn(x, t)
        x0 = (x - math.sqrt(1 - at) * eps) / math.sqrt(at)                   # [B, 3, R, R]
        if on_step is not None:
            on_step(i, x0)
        sn = sigma(t_next)
        x0_bar, eps_bar = op.vt(x0), op.vt(eps)                              # [B, D]
        ddim = x0_bar + math.sqrt(1 - eta ** 2) * sn * eps_bar + eta * sn * noise()
        inv_safe = torch.where(inv > 0, inv, torch.ones_like(inv))
        pulled = x0_bar + math.sqrt(1 - eta ** 2) * sn * (y_bar - x0_bar) / inv_safe + eta * sn * noise()
        measured = (eta_b * y_bar + (1 - eta_b) * x0_bar
                    + (sn ** 2 - eta_b ** 2 * inv ** 2).clamp_min(0).sqrt() * noise())
        before = observed & (s * sn > sigma_y)
        after = observed & (s * sn < sigma_y)
        x_bar = torch.where(before, measured, torch.where(after, pulled, ddim))
        x = math.sqrt(1 / (1 + sn ** 2)) * op.v(x_bar)                       # sqrt(a_t') V x_bar
    return x0


def _sigma_y(degradation, sigma_y: Optional[float]) -> float:
    """The measurement noise on [0, 1]: given, the degradation's Gaussian sigma, or 8-bit rounding."""
    if sigma_y is not None:
        if not (math.isfinite(float(sigma_y)) and float(sigma_y) >= 0):
            raise ValueError(f"sigma_y must be a finite number >= 0, got {sigma_y}")
        return float(sigma_y)
    if getattr(degradation, "name", "") == "denoising":   # Poisson: its std at mid-grey
        return math.sqrt(0.5 / degradation.photons)
    return float(getattr(degradation, "sigma", QUANTISATION_SIGMA))


def ddrm(G, target: Tensor, degradation=None, *, loss: LossSpec = None, seed: Seed = 0,
         callback: Optional[Callable[[StepInfo], None]] = None, progress: bool = True,
         steps: int = 20, eta: float = 0.85, eta_b: float = 1.0, sigma_y: Optional[float] = None,
         prior: Union[str, DiffusionPrior, None] = None, resolution: Optional[int] = None,
         **unknown) -> RestoreResult:
    """Restore `target` ([B, 3, h, w] in [0, 1]) with DDRM on a diffusion prior (module doc).

    steps: sampler steps (20); eta, eta_b: DDRM's (0.85, 1); sigma_y: the measurement noise on
    [0, 1] (default from the degradation); prior: a name or folder (rusir.model.diffusion) or a
    loaded DiffusionPrior, default the one of G's domain; resolution: the output's, G's unless
    given (the prior's must equal it); seed: the sampler's noise (image i from seed + i, or
    seed[i])."""
    reject_unknown("ddrm", unknown, ("steps", "eta", "eta_b", "sigma_y", "prior", "resolution"))
    for name, value in (("eta", eta), ("eta_b", eta_b)):
        if not (math.isfinite(float(value)) and 0 <= float(value) <= 1):
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    start = time.perf_counter()
    device = next(G.parameters()).device
    target = check_target(target).to(device)
    degradation = Identity() if degradation is None else degradation
    res, batch = int(resolution or G.img_resolution), target.shape[0]
    model = _prior(prior, G, device)
    if model.resolution != res:
        raise ValueError(f"the diffusion prior {model.name!r} is {model.resolution} px, the generator "
                         f"restores at {res} px: use a prior of that resolution (prior=...)")
    sig = _sigma_y(degradation, sigma_y)
    config = dict(steps=len(timesteps(steps)), eta=float(eta), eta_b=float(eta_b), sigma_y=sig,
                  prior=model.name, resolution=res, seed=seed_config(seed))
    op = linear_operator(degradation, res, batch, device)
    ones = torch.ones(1, 3, res, res, device=device)
    if tuple(op.forward(ones).shape[-2:]) != tuple(target.shape[-2:]):
        raise ValueError(f"target is {list(target.shape[-2:])} px, the degradation's operator gives "
                         f"{list(op.forward(ones).shape[-2:])} px at {res} px")
    y = 2 * target - op.forward(ones)                       # H (2 x - 1) = 2 H x - H 1: [-1, 1] scale
    noise = _Noise(seed, batch, (3, res, res), device, target.dtype)
    losses: list[Tensor] = []
    bar = tqdm(total=config["steps"], desc="ddrm", disable=not progress, leave=False)

    def on_step(i: int, x0: Tensor) -> None:
        """Record the fit of this step's x0 to the measurement; feed the callback and the bar."""
        fit = (op.forward(x0) - y).square().flatten(1).mean(1).detach()      # [B]
        losses.append(fit)
        bar.update(1)
        if callback is not None:
            callback(StepInfo("ddrm", i, config["steps"], fit, ((x0 + 1) / 2).detach()))

    with torch.no_grad():
        x0 = ddrm_sample(model.eps, model.alphas_cumprod, op, y, 2 * sig, noise, steps, eta, eta_b,
                         on_step)
    bar.close()
    images = ((x0 + 1) / 2).clamp(0, 1)
    info = {"linear_model": LINEAR_APPROXIMATION.get(getattr(degradation, "name", ""), "")}
    phase = PhaseResult("x_T", images, torch.zeros(batch, 0, device=device), losses, None)
    return RestoreResult(images, {"ddrm": phase}, time.perf_counter() - start, config, info)


ddrm.seeds_per_image = True   # takes one seed per image (see seeds.py)
