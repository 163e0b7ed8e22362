"""Inpainting: random thick brush strokes hide part of the image (spec 5.6).

Mask generator (our own, following the authors' procedure with OpenCV replaced by Pillow):
on a canvas 4x the image size, draw ``n`` strokes of thickness 4 * floor(0.08 * side); each
end point's coordinates are drawn independently from the outer thirds of their axis (so
strokes cross the image or cut corners); round caps are filled discs at both end points
(OpenCV's thick lines are round-capped). Two Gaussian-pyramid reductions (1-4-6-4-1 kernel,
reflect-101 borders, like ``cv2.pyrDown``) bring the canvas back to the image size with soft
edges. mask = 1 - coverage (1 = known pixel).

True degradation = approximation = x * mask (holes are black); the mask is known to the loss.
Within a composition the mask is drawn at the input resolution and bicubic-resized to the
stage's size (e.g. 128 px after 8x downsampling), as the authors.
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..validation import MAX_STROKES, whole
from .base import DEFAULT_SEED, Degradation, Seed, check_known_pixels

SUPERSAMPLE = 4
BRUSH_FRACTION = 0.08
_PYR_WEIGHTS = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)


def _outer_third(rng: random.Random, size: int) -> int:
    """A coordinate in [0, (size-1)//3] or [2(size-1)//3, size-1], each with probability 1/2."""
    if rng.random() < 0.5:
        return rng.randint(0, (size - 1) // 3)
    return rng.randint(2 * (size - 1) // 3, size - 1)


def pyramid_down(x: torch.Tensor) -> torch.Tensor:
    """Gaussian pyramid reduction [B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)]."""
    b, c, h, w = x.shape
    x = F.pad(x.reshape(b * c, 1, h, w), (2, 2, 2, 2), mode="reflect")  # reflect-101
    oh, ow = (h + 1) // 2, (w + 1) // 2
    # Strided slices instead of conv2d: only the kept outputs are computed (much faster).
    x = sum(wk * x[:, :, :, k:k + 2 * ow:2] for k, wk in enumerate(_PYR_WEIGHTS))
    x = sum(wk * x[:, :, k:k + 2 * oh:2, :] for k, wk in enumerate(_PYR_WEIGHTS))
    return x.reshape(b, c, oh, ow)


def stroke_mask(height: int, width: int, strokes: int, rng: random.Random) -> torch.Tensor:
    """Soft stroke mask [1, H, W] (1 = known) drawn with ``rng``."""
    ch, cw = SUPERSAMPLE * height, SUPERSAMPLE * width
    thickness = SUPERSAMPLE * max(1, int(BRUSH_FRACTION * min(height, width)))
    radius = thickness / 2
    canvas = Image.new("L", (cw, ch), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(strokes):
        x0, y0 = _outer_third(rng, cw), _outer_third(rng, ch)
        x1, y1 = _outer_third(rng, cw), _outer_third(rng, ch)
        draw.line([(x0, y0), (x1, y1)], fill=255, width=thickness)
        for px, py in ((x0, y0), (x1, y1)):  # round caps
            draw.ellipse([px - radius, py - radius, px + radius, py + radius], fill=255)
    cover = torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).float() / 255
    cover = cover.view(1, 1, ch, cw)
    for _ in range(2):  # two 2x reductions: 4x canvas -> image size
        cover = pyramid_down(cover)
    return (1 - cover[0, :, :height, :width]).clamp(0, 1)


def resize_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic resize of a mask [B, 1, h, w] (may overshoot [0, 1] slightly, as the authors)."""
    if mask.shape[-2:] == (height, width):
        return mask
    return F.interpolate(mask, size=(height, width), mode="bicubic", align_corners=False)


class Inpainting(Degradation):
    """1, 5, 9, 13, 17 strokes (XS..XL), or a user's own mask via :meth:`from_mask`."""

    name = "inpainting"
    LEVEL_PARAMS = {"XS": 1, "S": 5, "M": 9, "L": 13, "XL": 17}

    def __init__(self, level: str = "M", seed: Seed = DEFAULT_SEED,
                 strokes: int | None = None) -> None:
        super().__init__(level, seed)
        self.strokes = whole(strokes if strokes is not None else self.LEVEL_PARAMS[level],
                             "strokes", 0, MAX_STROKES, "MAX_STROKES")
        self._fixed: torch.Tensor | None = None  # user mask [B or 1, 1, H, W]
        self._full: torch.Tensor | None = None  # mask at the drawing resolution [B, 1, H, W]
        self._key: tuple | None = None

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> "Inpainting":
        """Inpainting with a known mask (1 = known), [H, W], [1, H, W] or [B, 1, H, W]."""
        m = torch.as_tensor(mask).float()
        while m.dim() < 4:
            m = m.unsqueeze(0)
        if m.shape[1] != 1:
            raise ValueError(f"mask must be [B, 1, H, W] (or [H, W]), got {list(mask.shape)}")
        if not torch.isfinite(m).all():
            raise ValueError("mask has non-finite values (NaN or infinity); 1 = known pixel, 0 = missing")
        check_known_pixels(m, "inpainting")
        obj = cls("M")
        obj.level, obj.strokes, obj._fixed = "custom", None, m.clamp(0, 1)
        return obj

    def prepare(self, height: int, width: int, seeds: list[int], device: torch.device) -> None:
        if self._fixed is not None:
            m = self._fixed
            if m.shape[0] not in (1, len(seeds)):
                raise ValueError(f"mask batch {m.shape[0]} does not match images {len(seeds)}")
            self._full = m.expand(len(seeds), -1, -1, -1).to(device)
            self._mask = resize_mask(self._full, height, width)
            return
        key = (height, width, tuple(seeds))
        if key != self._key:
            masks = [stroke_mask(height, width, self.strokes,
                                 random.Random(self.stream_seed(s))) for s in seeds]
            self._full, self._key = torch.stack(masks), key  # [B, 1, H, W]
        self._full = self._full.to(device)
        self._mask = self._full

    def mask_at(self, height: int, width: int) -> torch.Tensor:
        """The prepared mask resized (bicubic) to (height, width)."""
        if self._full is None:
            raise RuntimeError("the mask is built at first use; degrade an image first")
        return resize_mask(self._full, height, width)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mask_at(x.shape[2], x.shape[3]).to(x.device, x.dtype)
        self._mask = m
        return x * m

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        return self._apply(x)

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x)

    def params(self) -> dict[str, Any]:
        hole = None if self._full is None else [round(1 - float(m.mean()), 4) for m in self._full]
        return {"strokes": self.strokes, "hole_fraction": hole}
