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

The true mask, for the baselines (the paper: "baselines employ the ground truth Bernoulli mask
... in their differentiable approximation"): `true_mask=True` (or `expose_true_mask(deg)`, which
also reaches the denoising stage of a composition) makes the approximation multiply by the
dead-pixel mask the true degradation drew for each image, instead of a fresh draw. The mask of
an image is known once `degrade_ground_truth` made its target with the option on (kept per image
seed; a composition's stages see the same seeds). RUSIR never
gets it: the benchmark exposes it only to a method marked `wants_true_mask` (rusir.engine.unit).
"""

from __future__ import annotations

from typing import Any

import torch

from ..validation import MAX_PHOTONS, number
from .base import DEFAULT_SEED, Degradation, Seed, per_image_draw, surrogate_clamp

__all__ = ["Denoising", "expose_true_mask", "exposes_true_mask"]


class Denoising(Degradation):
    """Poisson noise with photon count lambda and dead pixels with probability p."""

    name = "denoising"
    LEVEL_PARAMS = {"XS": (96, 0.04), "S": (48, 0.08), "M": (24, 0.16), "L": (12, 0.32),
                    "XL": (6, 0.64)}

    def __init__(self, level: str = "M", seed: Seed = DEFAULT_SEED, photons: float | None = None,
                 dead_prob: float | None = None, clamp_slope: float = 2.0,
                 true_mask: bool = False) -> None:
        super().__init__(level, seed)
        lam, p = self.LEVEL_PARAMS[level]
        self.photons = number(photons if photons is not None else lam, "photons", 0.0,
                              MAX_PHOTONS, "MAX_PHOTONS")
        self.dead_prob = float(dead_prob if dead_prob is not None else p)
        if not 0 <= self.dead_prob <= 1:
            raise ValueError(f"dead_prob must be in [0, 1], got {self.dead_prob}")
        self.clamp_slope = clamp_slope
        if not isinstance(true_mask, bool):
            raise ValueError(f"true_mask must be True or False, got {true_mask!r}")
        self.true_mask = true_mask
        self._true_keep: dict[int, torch.Tensor] = {}   # image seed -> its dead-pixel keep mask [H, W]

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
            if self.true_mask:   # kept per image seed for the approximation
                self._true_keep[s] = keep
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
        if self.true_mask:
            keep = self.known_keep_mask(b, h, w).to(x.device, x.dtype)      # [B, 1, h, w]
        else:
            keep = (per_image_draw(torch.rand, (1, h, w), gens, x.device, x.dtype)
                    > self.dead_prob).to(x.dtype)
        return surrogate_clamp(x * keep, k)

    def known_keep_mask(self, batch: int, height: int, width: int) -> torch.Tensor:
        """The true keep mask (1 = alive) of the batch's images [B, 1, H, W], as their targets
        drew it; ValueError when a target was not made by this object or had another size."""
        masks = []
        for s in self.seeds_for(batch):
            keep = self._true_keep.get(s)
            if keep is None:
                raise ValueError(f"the true dead-pixel mask of image seed {s} is not known: make "
                                 "the target with this degradation's degrade_ground_truth first")
            if tuple(keep.shape) != (height, width):
                raise ValueError(f"the true dead-pixel mask is {list(keep.shape)} px, the "
                                 f"prediction {[height, width]}")
            masks.append(keep[None].float())
        return torch.stack(masks)

    def params(self) -> dict[str, Any]:
        out = {"photons": self.photons, "dead_prob": self.dead_prob}
        if self.true_mask:   # recorded only when on, so records of plain runs are unchanged
            out["true_mask"] = True
        return out


def _stages(deg: Degradation) -> list[Degradation]:
    return list(getattr(deg, "stages", None) or [deg])


def expose_true_mask(deg: Degradation) -> bool:
    """Give `deg`'s approximation the true dead-pixel mask (its denoising stage(s), a
    composition's included); True if it has one (a task without dead pixels is left alone)."""
    found = False
    for stage in _stages(deg):
        if isinstance(stage, Denoising):
            stage.true_mask = found = True
    return found


def exposes_true_mask(deg: Degradation) -> bool:
    """Whether `deg`'s approximation uses the true dead-pixel mask (what RUSIR must never get)."""
    return any(isinstance(s, Denoising) and s.true_mask for s in _stages(deg))
