"""Normalised gradient descent: every latent row moves exactly `lr` per step.

RUSIR's optimiser (spec section 3): the gradient of each row (last axis) is divided by its own
L2 norm, with no epsilon. Rows whose gradient norm is zero or not finite do not move (0/0 -> 0),
which is what freezes the W++ slots of layers narrower than F. A row never spans two images
(W [B, w]: one row per image; W+ [B, num_ws, w]: per image and layer; W++ [B, num_ws, F, w]: per
image, layer and filter), so NGD never mixes the images of a batch. It does amplify rounding: a
row moves lr however small its gradient, so a ~1e-6 difference (float32 batched vs single-image
kernels) grows step by step; README, "Python API", gives the measured size.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor


def normalized_direction(grad: Tensor) -> Tensor:
    """grad / ||grad|| per row (last dim); zero where the norm is zero or not finite."""
    norm = grad.norm(dim=-1, keepdim=True)
    ok = torch.isfinite(norm) & (norm > 0)
    direction = grad / torch.where(ok, norm, torch.ones_like(norm))
    return torch.where(ok, direction, torch.zeros_like(direction))


class NGD(torch.optim.Optimizer):
    """row <- row - lr * g_row / ||g_row||; stateless, no momentum, no weight decay."""

    def __init__(self, params: Iterable[Tensor], lr: float):
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.sub_(normalized_direction(p.grad), alpha=group["lr"])
                if not torch.isfinite(p).all():
                    raise FloatingPointError("NGD produced a non-finite latent")
        return loss
