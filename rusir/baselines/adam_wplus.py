"""W+ with Adam: the common Image2StyleGAN-style baseline (Abdal et al. 2019).

One W+ code per image, started at w_avg, optimised with Adam against exactly RUSIR's loss through
the same degradation approximation. Compared with `restore` it drops NGD and the W -> W+ -> W++
phases, so the gap between the two isolates what those buy. It draws nothing itself: `seed` only
restarts the loss's noise, as in `restore`.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from torch import Tensor

from ..inversion.latents import initial_latent
from ..inversion.loop import StepInfo
from ..inversion.method import LossSpec, RestoreResult, prepare, reject_unknown
from ..inversion.restore import run_phase

__all__ = ["adam_wplus"]


def adam_wplus(G, target: Tensor, degradation=None, *, loss: LossSpec = None, seed: int = 0,
               callback: Optional[Callable[[StepInfo], None]] = None, progress: bool = True,
               steps: int = 450, lr: float = 0.01, resolution: Optional[int] = None,
               **unknown) -> RestoreResult:
    """Restore `target` ([B, 3, h, w] in [0, 1]) by `steps` Adam steps (rate `lr`) in W+ from
    w_avg with RUSIR's loss (`loss=None`: the generator's default preset, as `restore`)."""
    config = dict(steps=int(steps), lr=lr, resolution=int(resolution or G.img_resolution),
                  seed=int(seed))
    reject_unknown("adam_wplus", unknown, config)
    start = time.perf_counter()
    problem = prepare(G, target, degradation, loss, seed=seed, resolution=resolution)
    latent = initial_latent(G, "W+", problem.target.shape[0]).to(problem.target.device)
    phase = run_phase(G, latent, problem.target, problem.degradation, problem.loss,
                      config["steps"], lr, "W+", optimizer="adam", resolution=problem.resolution,
                      callback=callback, progress=progress, phase="adam_wplus")
    return RestoreResult(phase.images, {"adam_wplus": phase}, time.perf_counter() - start, config,
                         {"init": "w_avg"})


adam_wplus.table = "adam_wplus"   # its tuned (task, level) hyperparameters: rusir/baselines/tables/[<generator>/]adam_wplus.yaml
