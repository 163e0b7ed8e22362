"""Gaussian blur: the worked example of a user-defined degradation.

A custom task is a subclass of :class:`Degradation` with two methods, then one ``register``
call; ``make``, ``restore``, the CLI and the benchmark find it by name::

    from rusir.degradations import Degradation, register, make

    class MyBlur(Degradation):
        name = "myblur"
        LEVEL_PARAMS = {"XS": 1.0, "S": 2.0, "M": 3.0, "L": 5.0, "XL": 8.0}

        def true_degradation(self, x, seeds):   # may be non-differentiable; 8-bit cycled after
            return gaussian_blur(x, self.LEVEL_PARAMS[self.level])

        def approximation(self, x):             # differentiable, used inside the loss
            return gaussian_blur(x, self.LEVEL_PARAMS[self.level])

    register("myblur", MyBlur)
    deg = make("myblur", "M", seed=0)

This module's :class:`GaussianBlur` is that example, registered as ``"blur"``. The blur is
known exactly, so true = approximation (the target is still serialised to 8 bits).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..validation import MAX_BLUR_SIGMA, number
from .base import DEFAULT_SEED, Degradation, Seed


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W] with reflect padding (radius 3 sigma)."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    b, c, h, w = x.shape
    if radius >= min(h, w):
        raise ValueError(f"blur radius {radius} too large for a {h}x{w} image")
    y = F.pad(x.reshape(b * c, 1, h, w), (radius,) * 4, mode="reflect")
    y = F.conv2d(F.conv2d(y, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


class GaussianBlur(Degradation):
    """Gaussian blur with sigma (in pixels) 1, 2, 3, 5, 8 for XS..XL, or ``sigma=``."""

    name = "blur"
    LEVEL_PARAMS = {"XS": 1.0, "S": 2.0, "M": 3.0, "L": 5.0, "XL": 8.0}

    def __init__(self, level: str = "M", seed: Seed = DEFAULT_SEED,
                 sigma: float | None = None) -> None:
        super().__init__(level, seed)
        self.sigma = number(sigma if sigma is not None else self.LEVEL_PARAMS[level], "blur sigma",
                            0.0, MAX_BLUR_SIGMA, "MAX_BLUR_SIGMA", strict=False)

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        return gaussian_blur(x, self.sigma)

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(x, self.sigma)

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma}
