"""Denoising: Poisson (shot) noise followed by dead pixels (spec 5.4).

True: y = Poisson(lambda x) / lambda per pixel and channel, then each pixel (all channels
together) is zeroed with probability p, clamped to [0, 1].
Approximation (fresh noise at every call, from each image's own seeded stream, so an image's
noise does not depend on its batch neighbours):
  x' = c(x);  y' = ((lambda x' - 1/2) + sqrt(lambda x' + 1e-3) n) / lambda,  n ~ N(0, 1);
  y' *= Bernoulli keep-mask (u > p, one draw per pixel, shared by the channels);
  out = c(y'),
where c is the surrogate clamp (forward clamp, sigmoid-slope backward, k = 2). The true
dead-pixel mask is unknown to the method, so it is redrawn. The -1/2 photon shift is the
authors' (purpose undocumented; kept for faithfulness).
"""

from __future__ import annotations

from typing import Any

import torch

from ..validation import MAX_PHOTONS, number
from .base import DEFAULT_SEED, Degradation, Seed, per_image_draw, surrogate_clamp


class Denoising(Degradation):
    """Poisson noise with photon count lambda and dead pixels with probability p."""

    name = "denoising"
    LEVEL_PARAMS = {"XS": (96, 0.04), "S": (48, 0.08), "M": (24, 0.16), "L": (12, 0.32),
                    "XL": (6, 0.64)}

    def __init__(self, level: str = "M", seed: Seed = DEFAULT_SEED, photons: float | None = None,
                 dead_prob: float | None = None, clamp_slope: float = 2.0) -> None:
        super().__init__(level, seed)
        lam, p = self.LEVEL_PARAMS[level]
        self.photons = number(photons if photons is not None else lam, "photons", 0.0,
                              MAX_PHOTONS, "MAX_PHOTONS")
        self.dead_prob = float(dead_prob if dead_prob is not None else p)
        if not 0 <= self.dead_prob <= 1:
            raise ValueError(f"dead_prob must be in [0, 1], got {self.dead_prob}")
        self.clamp_slope = clamp_slope

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        out = []
        lam = self.photons
        for img, s in zip(x, seeds):
            # Draw on the CPU so the target is the same on every device.
            gen = torch.Generator().manual_seed(self.stream_seed(s))
            img = img.detach().cpu().double()  # [3, H, W]
            if lam > 0:  # lambda <= 0: dead pixels only (spec 5.4)
                img = torch.poisson(img * lam, generator=gen) / lam
            keep = torch.rand(img.shape[1:], generator=gen, dtype=torch.double) > self.dead_prob
            out.append((img * keep).clamp(0, 1).to(x.device, x.dtype))
        return torch.stack(out)

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        gens = self.prediction_generators(b, x.device)  # one stream per image
        lam, k = self.photons, self.clamp_slope
        x = surrogate_clamp(x, k)
        if lam > 0:
            n = per_image_draw(torch.randn, (c, h, w), gens, x.device, x.dtype)
            x = ((lam * x - 0.5) + torch.sqrt(lam * x + 1e-3) * n) / lam
        u = per_image_draw(torch.rand, (1, h, w), gens, x.device, x.dtype)
        return surrogate_clamp(x * (u > self.dead_prob).to(x.dtype), k)

    def params(self) -> dict[str, Any]:
        return {"photons": self.photons, "dead_prob": self.dead_prob}
