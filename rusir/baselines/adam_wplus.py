"""W+ with Adam: the common Image2StyleGAN-style baseline (Abdal et al. 2019).

One W+ code per image, started at w_avg, optimised with Adam against exactly RUSIR's loss through
the same degradation approximation. Compared with `restore` it drops NGD and the W -> W+ -> W++
phases, so the gap between the two isolates what those buy. Deterministic (no random draws);
`seed` is accepted for the shared call shape and recorded.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from torch import Tensor

from ..inversion.latents import initial_latent
from ..inversion.restore import StepInfo, run_phase
from ._common import BaselineResult, prepare, reject_unknown

__all__ = ["adam_wplus"]


def adam_wplus(G, target: Tensor, degradation=None, loss: Optional[Callable] = None,
               steps: int = 450, lr: float = 0.01, seed: int = 0,
               callback: Optional[Callable[[StepInfo], None]] = None, progress: bool = True,
               resolution: Optional[int] = None, **unknown) -> BaselineResult:
    """Restore `target` ([B, 3, h, w] in [0, 1]) by Adam in W+ from w_avg with RUSIR's loss
    (`loss=None`: the generator's default preset, as `restore`)."""
    reject_unknown(adam_wplus, unknown)
    start = time.perf_counter()
    target, degradation, loss_fn = prepare(G, target, degradation, loss)
    resolution = resolution or G.img_resolution
    latent = initial_latent(G, "W+", target.shape[0]).to(target.device)

    def relabel(info: StepInfo) -> None:
        info.phase = "adam_wplus"
        callback(info)

    phase = run_phase(G, latent, target, degradation, loss_fn, int(steps), lr, "W+",
                      optimizer="adam", resolution=resolution,
                      callback=relabel if callback is not None else None, progress=progress)
    return BaselineResult(phase.images, {"adam_wplus": phase}, time.perf_counter() - start,
                          {"seed": seed, "init": "w_avg"})
