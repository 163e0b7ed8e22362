"""Upsampling (super-resolution): the target is a downsampled image (spec 5.3).

True: Pillow resize of the 8-bit image to floor(H/f) x floor(W/f) with a filter drawn per
image (seeded) from bilinear, bicubic and Lanczos -- Pillow antialiases when reducing, so the
kernel support is stretched by f. Approximation: f x f average pooling; the filter actually
used is deliberately unknown to the method. Targets stay at low resolution; the loss compares
at the target's size.

Any factor > 1 can be given (`factor=5.8`, e.g. a face 11 px wide in a photo restored at 64 px):
the target is floor(H/f) px and a non-integer factor's approximation is area averaging to that
size (`adaptive_avg_pool2d`: boxes of f pixels, rounded to whole pixels); whole factors keep the
exact f x f average pooling.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from ..validation import MAX_FACTOR, number
from .base import DEFAULT_SEED, Degradation, Seed, from_pil, to_pil

FILTERS: dict[str, Image.Resampling] = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def average_pool_downsample(x: torch.Tensor, factor: float) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, floor(H/f), floor(W/f)] box average (kernel = stride = f for a
    whole factor; area averaging for any other)."""
    if factor == int(factor):
        return F.avg_pool2d(x, int(factor)) if factor > 1 else x
    return F.adaptive_avg_pool2d(x, downsampled_shape(x.shape[2], x.shape[3], factor))


def downsampled_shape(height: int, width: int, factor: float) -> tuple[int, int]:
    """floor(H/f) x floor(W/f), robust to the rounding of f = H/n (which must give n)."""
    return math.floor(height / factor + 1e-6), math.floor(width / factor + 1e-6)


class Upsampling(Degradation):
    """Downsampling by 2, 4, 8, 16, 32 (XS..XL) with a seeded random Pillow filter."""

    name = "upsampling"
    LEVEL_PARAMS = {"XS": 2, "S": 4, "M": 8, "L": 16, "XL": 32}

    def __init__(self, level: str = "M", seed: Seed = DEFAULT_SEED, factor: float | None = None,
                 filters: tuple[str, ...] = tuple(FILTERS)) -> None:
        super().__init__(level, seed)
        factor = self.LEVEL_PARAMS[level] if factor is None else number(
            factor, "upsampling factor", 1.0, MAX_FACTOR, "MAX_FACTOR", strict=False)
        self.factor = int(factor) if factor == int(factor) else factor
        unknown = [f for f in filters if f not in FILTERS]
        if unknown or not filters:
            raise ValueError(f"unknown filters {unknown}; valid: {list(FILTERS)}")
        self.filters = tuple(filters)
        self._chosen: list[str] | None = None  # filter per image of the last batch

    def filter_for(self, seed: int) -> str:
        """The filter drawn for one image seed (uniform over ``self.filters``)."""
        return random.Random(self.stream_seed(seed)).choice(self.filters)

    def prepare(self, height: int, width: int, seeds: list[int], device: torch.device) -> None:
        self.target_shape(height, width)
        self._chosen = [self.filter_for(s) for s in seeds]

    def target_shape(self, height: int, width: int) -> tuple[int, int]:
        """floor(H/f) x floor(W/f); an image smaller than the factor (an 8 px generator at XL)
        has no target: refused naming the factor, the size and the smallest size it needs."""
        if min(height, width) < self.factor:
            raise ValueError(
                f"upsampling by {self.factor:g} (level {self.level}) needs images of at least "
                f"{math.ceil(self.factor)} px, got {height}x{width} px: use a lower level or "
                "factor, or a generator of higher resolution")
        return downsampled_shape(height, width, self.factor)

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        h, w = self.target_shape(x.shape[2], x.shape[3])
        out = []
        for img, s in zip(x, seeds):  # PIL works one image at a time
            im = to_pil(img).resize((w, h), FILTERS[self.filter_for(s)])
            out.append(from_pil(im, img))
        return torch.stack(out)  # [B, 3, h, w]

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        return average_pool_downsample(x, self.factor)

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor, "filters": self._chosen}
