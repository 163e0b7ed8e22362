"""Grayscale: the target is the image's luminance, as a black-and-white photo records it.

Luminance is ITU-R BT.601 luma on the 8-bit (gamma-encoded sRGB) values,

    Y' = 0.299 R + 0.587 G + 0.114 B,

because that is what a grayscale file made by the usual tools holds: Pillow's `convert("L")`
uses exactly these weights (in 16-bit fixed point, rounded), and so does JPEG's Y channel, so a
grayscale stage after deartifacting equals the luma JPEG kept. (BT.709's 0.2126/0.7152/0.0722
are for linear-light HDTV signals; no common grayscale file is made with them.)

The target keeps three channels, each the luminance: every other stage, loss and metric takes
[B, 3, H, W], and a grayscale image read as RGB (`rusir.data.images`) is exactly that, so the
task composes anywhere in a chain without a special case.

True: Pillow's `convert("L")` of the 8-bit image (what a user's own conversion gives).
Approximation: the weighted sum in floating point -- linear, exact up to the true operator's
rounding to whole 8-bit levels (at most 1/2 level). Deterministic: no seed, nothing redrawn,
so under the discrepancy stop its floor is that rounding alone (the stop does not fire on
grayscale by itself; composed with noise, the noise sets the floor).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import Degradation, to_pil

BT601: tuple[float, float, float] = (0.299, 0.587, 0.114)   # R, G, B weights (sum 1)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of [B, 3, H, W] -> [B, 1, H, W] (differentiable, any float dtype)."""
    w = torch.tensor(BT601, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 3, H, W] with every channel the BT.601 luma."""
    return luminance(x).expand(-1, 3, -1, -1)


def is_grayscale(image, tolerance: int = 2) -> bool:
    """Whether a PIL image holds no colour: a one-channel mode (L, LA, I, F, 1), or RGB(A)
    whose channels differ by at most `tolerance` 8-bit levels anywhere (a scan saved as RGB,
    a JPEG's chroma rounding)."""
    if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return True
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)          # [H, W, 3]
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return bool(spread.max(initial=0) <= tolerance)


class Grayscale(Degradation):
    """RGB -> BT.601 luminance, replicated to three channels; level-free and deterministic."""

    name = "grayscale"

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        out = []
        for img in x:  # Pillow's own conversion, one image at a time
            gray = np.asarray(to_pil(img).convert("L"), dtype=np.uint8).copy()   # [H, W]
            out.append(torch.from_numpy(gray).to(img.device, img.dtype).div(255).expand(3, -1, -1))
        return torch.stack(out)  # [B, 3, H, W]

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        return to_grayscale(x)

    def params(self) -> dict[str, Any]:
        return {"weights": "ITU-R BT.601", "rgb": list(BT601)}
