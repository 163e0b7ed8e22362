"""L-BRGM (Conmy et al. 2022; ArthurConmy/L-BRGM) with the RUSIR paper's adjustments (spec 7.2).

Variables: z [B, z_dim] and W+ w [B, num_ws, w_dim], optimised jointly with Adam (lr 0.1 for
both). Objective per image, on [0, 1] images through RUSIR's degradation approximation f:

    pixel_weight * mean (f(G(w)) - y)^2                 (L-BRGM: 0.0002 on the 0-255 scale
                                                          = 0.0002 * 255^2 = 13.005 on [0, 1])
  + perceptual_weight * perceptual(f(G(w)), y)          (see below)
  + mapping_weight * mean (mapping(z) - w)^2           (30: ties every W+ row to the mapped z)
  + z_weight * mean z^2                                 (0.4: Gaussian prior on z)

Perceptual term (`perceptual`): "vgg16" (default) is L-BRGM's own, as its code computes it: the
mean squared difference of NVIDIA's VGG16 LPIPS features of the area-resized 256 px images on
the 0-255 scale, weight 2e7 (rusir.baselines.lbrgm_perceptual). Its weights are NVIDIA's file
`vgg16.pt`: when they cannot be had (offline), the run falls back to "loss", the configured rusir
loss (`loss`, default the generator's preset, as RUSIR), weight 1, and says so in
`result.config["perceptual"]` and `result.info["perceptual_fallback"]`. `perceptual_weight=None`
takes the weight of the term that runs (2e7 or 1).

Initialisation, best-of-N (the paper's adjustment): `init_candidates` (200) draws of z ~ N(0, I)
per image (image i from seed + i), each mapped with truncation `truncation` (0.8) toward w_avg;
the candidate with the lowest data term (pixel + perceptual) starts the run, z at the drawn z
and w at its truncated W+. A fixed number of steps (500) replaces L-BRGM's early stopping on the
ground truth (an oracle); the last iterate is returned.

Candidates are scored in rounds of one candidate per image, so the degradation object always
sees the batch it was built for. The paper gave the baselines the true dead-pixel mask for
denoising; so does the benchmark (`wants_true_mask`; rusir.degradations.expose_true_mask).
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Optional

import torch
from torch import Tensor

from ..degradations.base import Seed
from ..inversion.latents import seeded_randn
from ..inversion.loop import Rendered, StepInfo, evaluate_loss, render, render_degraded, run_steps
from ..inversion.losses import masked_mse
from ..inversion.method import LossSpec, PhaseResult, Problem, RestoreResult, prepare, reject_unknown
from ..model.weights import MissingWeightsError
from . import lbrgm_perceptual
from .seeds import loss_seed, seed_config

__all__ = ["lbrgm", "best_of_n", "PERCEPTUAL"]

PERCEPTUAL = ("vgg16", "loss")   # L-BRGM's VGG16 feature distance; rusir's configured loss
Term = Callable[[Rendered, Tensor], Tensor]


def _data_term(G, w: Tensor, problem: Problem, pixel_weight: float,
               perceptual_weight: float, perceptual: Optional[Term] = None) -> tuple[Tensor, Tensor]:
    """(data term [B], prediction [B, 3, R, R]) of W+ codes w [B, num_ws, w_dim]. `perceptual`
    (rendered, target) -> [B]; None: the problem's rusir loss."""
    rendered = render_degraded(G, w, problem.degradation, problem.resolution)
    value = pixel_weight * masked_mse(rendered.degraded, problem.target, rendered.mask)
    if perceptual_weight:
        term = perceptual(rendered, problem.target) if perceptual is not None else \
            evaluate_loss(problem.loss, rendered, problem.target)
        value = value + perceptual_weight * term
    return value, rendered.prediction


def _vgg16_term(features, target: Tensor) -> Term:
    """L-BRGM's VGG16 feature distance (weight 1: the caller weighs it) against a fixed target,
    whose features are computed once."""
    vgg = lbrgm_perceptual.LbrgmPerceptual(features, weight=1.0)
    with torch.no_grad():
        target_features = vgg.embed(target)                               # [B, F]
    return lambda rendered, _target: vgg(rendered.degraded, _target, target_features)


def choose_perceptual(perceptual: str, device) -> tuple[str, Optional[Callable], Optional[str]]:
    """(term that runs, phi or None, why it fell back or None): "vgg16" when its weights load,
    else "loss" with the MissingWeightsError's first line as the reason."""
    if perceptual not in PERCEPTUAL:
        raise ValueError(f"perceptual must be one of {PERCEPTUAL}, got {perceptual!r}")
    if perceptual == "loss":
        return "loss", None, None
    try:
        return "vgg16", lbrgm_perceptual.load_features(device), None
    except MissingWeightsError as exc:
        reason = str(exc).strip().splitlines()[0]
        warnings.warn(f"L-BRGM's VGG16 perceptual weights are missing; using rusir's loss in its "
                      f"place (recorded): {reason}", stacklevel=3)
        return "loss", None, reason


def best_of_n(G, problem: Problem, candidates: int, truncation: float, seed: Seed,
              pixel_weight: float, perceptual_weight: float,
              perceptual: Optional[Term] = None) -> tuple[Tensor, Tensor, Tensor]:
    """(z [B, z_dim], w [B, num_ws, w_dim], data term [B]) of the best of `candidates` draws.

    Candidate k of image i is the k-th z drawn from a generator seeded seed + i (seed[i])."""
    batch, device = problem.target.shape[0], problem.target.device
    zs = seeded_randn((candidates, G.z_dim), seed, batch, device)    # [B, N, z_dim]
    best = torch.full((batch,), math.inf, device=device)
    best_z = zs[:, 0].clone()
    best_w = None
    with torch.no_grad():
        for k in range(candidates):
            z = zs[:, k]
            w = G.mapping(z, None, truncation_psi=truncation)          # [B, num_ws, w_dim]
            value, _ = _data_term(G, w, problem, pixel_weight, perceptual_weight, perceptual)
            better = value < best
            best = torch.where(better, value, best)
            best_z[better] = z[better]
            best_w = w.clone() if best_w is None else torch.where(better[:, None, None], w, best_w)
    return best_z, best_w, best


def lbrgm(G, target: Tensor, degradation=None, *, loss: LossSpec = None, seed: Seed = 0,
          callback: Optional[Callable[[StepInfo], None]] = None, progress: bool = True,
          steps: int = 500, lr: float = 0.1, init_candidates: int = 200, truncation: float = 0.8,
          pixel_weight: float = 13.005, perceptual: str = "vgg16",
          perceptual_weight: Optional[float] = None, mapping_weight: float = 30.0,
          z_weight: float = 0.4, resolution: Optional[int] = None, **unknown) -> RestoreResult:
    """Restore `target` ([B, 3, h, w] in [0, 1]) with L-BRGM: joint z / W+ MAP with its priors.

    perceptual: "vgg16" (L-BRGM's; falls back to "loss" without its weights, recorded) or
    "loss": `loss`, (x, y, mask=None) -> [B], None taking the generator's default preset like
    `restore`. perceptual_weight: None takes the term's own (2e7 / 1).
    steps / lr: Adam on z and w. seed: the candidate
    draws (image i from seed + i, or seed[i] for a sequence) and the loss's noise (from the
    first seed). See the module doc.
    """
    config = dict(steps=int(steps), lr=lr, init_candidates=int(init_candidates),
                  truncation=truncation, pixel_weight=pixel_weight, perceptual=perceptual,
                  perceptual_weight=perceptual_weight, mapping_weight=mapping_weight,
                  z_weight=z_weight, resolution=int(resolution or G.img_resolution),
                  seed=seed_config(seed))
    reject_unknown("lbrgm", unknown, config)
    if init_candidates < 1:
        raise ValueError(f"init_candidates must be >= 1, got {init_candidates}")
    start = time.perf_counter()
    used, features, fallback = choose_perceptual(perceptual, next(G.parameters()).device)
    if perceptual_weight is None:
        perceptual_weight = lbrgm_perceptual.WEIGHT if used == "vgg16" else 1.0
    config.update(perceptual=used, perceptual_weight=float(perceptual_weight))
    problem = prepare(G, target, degradation, loss, seed=loss_seed(seed), resolution=resolution,
                      need_loss=bool(perceptual_weight) and used == "loss")
    term = _vgg16_term(features, problem.target) if features is not None else None
    terms = dict(pixel_weight=pixel_weight, perceptual_weight=perceptual_weight, perceptual=term)
    z0, w0, init_data = best_of_n(G, problem, config["init_candidates"], truncation, seed, **terms)
    z = z0.detach().clone().requires_grad_(True)
    w = w0.detach().clone().requires_grad_(True)

    def objective() -> tuple[Tensor, Tensor]:
        """Data term plus L-BRGM's priors: W+ tied to mapping(z), z Gaussian. [B], prediction."""
        data, prediction = _data_term(G, w, problem, **terms)
        prior_w = (G.mapping(z, None) - w).square().flatten(1).mean(1)
        prior_z = z.square().mean(1)
        return data + mapping_weight * prior_w + z_weight * prior_z, prediction

    losses = run_steps(objective, torch.optim.Adam([z, w], lr=lr), config["steps"], phase="lbrgm",
                       callback=callback, progress=progress)
    with torch.no_grad():
        images = render(G, w, problem.resolution)
    info = {"z": z.detach(), "init_data_loss": init_data.tolist(),
            "perceptual": "L-BRGM's VGG16 LPIPS feature distance" if used == "vgg16" else "rusir loss"}
    if fallback is not None:
        info["perceptual_fallback"] = fallback
    phase = PhaseResult("W+", images, w.detach(), losses, lr)
    return RestoreResult(images, {"lbrgm": phase}, time.perf_counter() - start, config, info)


lbrgm.seeds_per_image = True   # takes one seed per image (see seeds.py)
lbrgm.wants_true_mask = True   # the true dead-pixel mask of denoising, as the paper ran it
lbrgm.table = "lbrgm"           # its tuned (task, level) hyperparameters: rusir/baselines/tables/[<generator>/]lbrgm.yaml
