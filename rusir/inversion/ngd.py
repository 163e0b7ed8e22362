"""Normalised gradient descent: every latent row moves exactly `lr` per step.

RUSIR's optimiser (spec section 3): the gradient of each row (last axis) is divided by its own
L2 norm, with no epsilon. Rows whose gradient norm is zero or not finite do not move (0/0 -> 0),
which is what freezes the W++ slots of layers narrower than F. A row never spans two images
(W [B, w]: one row per image; W+ [B, num_ws, w]: per image and layer; W++ [B, num_ws, F, w]: per
image, layer and filter), so NGD never mixes the images of a batch. It does amplify rounding: a
row moves lr however small its gradient, so a ~1e-6 difference (float32 batched vs single-image
kernels) grows step by step; docs/python-api.md gives the measured size.

Two options, both off by default (off = exactly the step above), for W++ on the embedded generator
(docs/method.md, issue 20): most W++ rows' gradients are noise, yet each moves lr per step.
- anchor=rho: after each step, p <- a + (1 - rho) (p - a), a = p at construction (the phase's
  start). A row with a steady gradient settles ~lr/rho from a, a random-walking one ~lr/sqrt(2 rho).
- normalize="image": one norm over all rows of an image (first dim) instead of one per row, the
  step scaled by sqrt(rows that have a gradient): the same total length, but rows with weak
  gradients move less.
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


NORMALIZE = ("row", "image")


def image_direction(grad: Tensor) -> Tensor:
    """sqrt(n) * grad / ||grad||, one norm per image (dim 0) over its n rows that have a gradient
    (a finite, non-zero row norm); rows without one, and images with none, do not move."""
    rows = grad.norm(dim=-1, keepdim=True)                                  # [B, ..., 1]
    ok = torch.isfinite(rows) & (rows > 0)
    g = torch.where(ok, grad, torch.zeros_like(grad))
    dims = tuple(range(1, grad.dim()))
    norm = torch.linalg.vector_norm(g, dim=dims, keepdim=True)             # [B, 1, ..., 1]
    n = ok.sum(dim=dims, keepdim=True).to(grad.dtype)
    scale = torch.where(norm > 0, n.sqrt() / torch.where(norm > 0, norm, torch.ones_like(norm)),
                        torch.zeros_like(norm))
    return g * scale


class NGD(torch.optim.Optimizer):
    """row <- row - lr * g_row / ||g_row||; no momentum, no weight decay. Options (module
    docstring): `anchor` pulls back toward the start, `normalize="image"` shares one norm per image."""

    def __init__(self, params: Iterable[Tensor], lr: float, anchor: float = 0.0,
                 normalize: str = "row"):
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if isinstance(anchor, bool) or not isinstance(anchor, (int, float)) or not 0 <= anchor < 1:
            raise ValueError(f"NGD anchor must be a number in [0, 1), got {anchor!r}")
        if normalize not in NORMALIZE:
            raise ValueError(f"NGD normalize must be one of {NORMALIZE}, got {normalize!r}")
        super().__init__(params, dict(lr=lr, anchor=float(anchor), normalize=normalize))
        for group in self.param_groups:
            if group["anchor"] > 0:
                for p in group["params"]:
                    self.state[p]["start"] = p.detach().clone()

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
                if group["normalize"] == "image":
                    p.sub_(image_direction(p.grad), alpha=group["lr"])
                else:
                    p.sub_(normalized_direction(p.grad), alpha=group["lr"])
                if group["anchor"] > 0:     # p <- a + (1 - rho) (p - a)
                    start = self.state[p]["start"]
                    p.sub_(start).mul_(1 - group["anchor"]).add_(start)
                if not torch.isfinite(p).all():
                    raise FloatingPointError("NGD produced a non-finite latent")
        return loss
