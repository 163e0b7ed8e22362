"""One restoration experiment: degrade ground truth, restore it, score it against naive baselines.

Shared by the demo, the CLI, the notebooks and the benchmark so that they all measure the
same thing the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import degradations
from ..inversion.restore import RestoreResult, restore


@dataclass
class TaskRun:
    """Everything one (task, level) run on a batch of ground-truth images produced."""
    task: str
    level: str
    ground_truth: Tensor             # [B, 3, R, R]
    target: Tensor                   # [B, 3, h, w] true degradation (8-bit cycled)
    result: RestoreResult
    naive: Tensor                    # [B, 3, R, R] naive baseline (bicubic / the target itself)
    degradation: object
    scores: dict = field(default_factory=dict)


def naive_restoration(target: Tensor, size: int) -> Tensor:
    """The do-nothing baseline: bicubic upsampling of a small target, else the target itself."""
    if target.shape[-1] == size:
        return target.clone()
    return F.interpolate(target, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def score(prediction: Tensor, ground_truth: Tensor) -> dict[str, list[float]]:
    """PSNR and SSIM per image (weight-free, always available)."""
    from ..metrics import psnr, ssim
    pred = prediction.clamp(0, 1)
    return {"psnr": psnr(pred, ground_truth).tolist(), "ssim": ssim(pred, ground_truth).tolist()}


def run_task(G, ground_truth: Tensor, task: str, level: str = "M", seed: int = 0,
             loss: Optional[Callable] = None, method: Callable = restore,
             degradation_kwargs: Optional[dict] = None, **restore_kwargs) -> TaskRun:
    """Degrade `ground_truth` ([B, 3, R, R] in [0, 1]) with `task` at `level`, restore, score.

    Scores: `restored` and `naive` (PSNR/SSIM vs ground truth) and `fidelity_psnr` (PSNR of the
    TRUE degradation of the restoration vs the target).
    """
    device = next(G.parameters()).device
    ground_truth = ground_truth.to(device)
    deg = degradations.make(task, level, seed=seed, **(degradation_kwargs or {}))
    target = deg.degrade_ground_truth(ground_truth)
    result = method(G, target, deg, loss=loss, **restore_kwargs)
    naive = naive_restoration(target, ground_truth.shape[-1])
    with torch.no_grad():
        fidelity = deg.degrade_ground_truth(result.images.clamp(0, 1))
    from ..metrics import psnr
    scores = {"restored": score(result.images, ground_truth), "naive": score(naive, ground_truth),
              "fidelity_psnr": psnr(fidelity, target).tolist(),
              "phases": {s: score(p.images, ground_truth) for s, p in result.phases.items()},
              "seconds": result.seconds}
    return TaskRun(task, level, ground_truth, target, result, naive, deg, scores)


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / max(len(values), 1))
