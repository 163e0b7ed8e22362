"""Paste a restored face back into its photo: the inverse of the alignment warp, feathered.

Each photo pixel under the face's quad is mapped to the aligned frame (the inverse of
`AlignedFace.matrix`) and sampled from the restored image with `torch.nn.functional.grid_sample`;
a weight that falls smoothly to 0 over the outer `feather` of the crop blends it into the photo,
so no seam shows where the crop ends. The photo may have been enlarged by `scale` (upsampling:
the restored face has more pixels than the photo had), so the quad is scaled with it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .align import AlignedFace

__all__ = ["FEATHER", "paste", "paste_all", "face_weight"]

FEATHER = 0.1   # the blend weight rises from 0 to 1 over the outer 10 % of the crop's side


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0, 1)
    return t * t * (3 - 2 * t)


def _region(face: AlignedFace, scale: float, height: int, width: int):
    """Pixel box (x0, y0, x1, y1) of the scaled quad, clipped to the photo; None if outside."""
    quad = face.quad * scale
    x0, y0 = np.floor(quad.min(0)).astype(int).clip(0, [width, height])
    x1, y1 = np.ceil(quad.max(0)).astype(int).clip(0, [width, height])
    return None if x1 <= x0 or y1 <= y0 else (int(x0), int(y0), int(x1), int(y1))


def _aligned_coords(face: AlignedFace, scale: float, box) -> torch.Tensor:
    """[h, w, 2] position of each photo pixel centre of `box` in the crop, in [0, 1] units."""
    x0, y0, x1, y1 = box
    inv = np.linalg.inv(face.matrix(size=1))            # photo px -> crop units
    xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    p = np.stack([xs, ys], -1) / scale                  # back to the photo the face was cut from
    uv = p @ inv[:2, :2].T + inv[:2, 2]
    return torch.from_numpy(uv).float()


def face_weight(uv: torch.Tensor, feather: float = FEATHER) -> torch.Tensor:
    """Blend weight [h, w] of crop positions uv [h, w, 2]: 0 outside, 1 inside the feather."""
    edge = torch.minimum(uv, 1 - uv).amin(-1)           # distance to the nearest crop side
    return _smoothstep(edge / feather) if feather > 0 else (edge >= 0).float()


def paste(photo: torch.Tensor, restored: torch.Tensor, face: AlignedFace, scale: float = 1.0,
          feather: float = FEATHER) -> torch.Tensor:
    """`photo` [1, 3, H, W] (already enlarged by `scale`) with `restored` [1, 3, S, S] warped
    back under the face's quad and feather-blended; a new tensor."""
    out = photo.clone()
    box = _region(face, scale, photo.shape[-2], photo.shape[-1])
    if box is None:
        return out
    side = face.native_size * scale                     # the face's side in output pixels
    src = restored.to(photo.dtype)
    if side < src.shape[-1]:                            # shrinking: filter first (no aliasing)
        n = max(int(round(side)), 1)
        src = F.interpolate(src, size=(n, n), mode="bilinear", antialias=True, align_corners=False)
    uv = _aligned_coords(face, scale, box).to(photo.device)               # [h, w, 2]
    grid = (uv * 2 - 1).unsqueeze(0).to(photo.dtype)                      # [1, h, w, 2]
    sampled = F.grid_sample(src, grid, mode="bilinear", padding_mode="border",
                            align_corners=False)                          # [1, 3, h, w]
    w = face_weight(uv, feather).to(photo.dtype)                          # [h, w]
    x0, y0, x1, y1 = box
    region = out[..., y0:y1, x0:x1]
    out[..., y0:y1, x0:x1] = region + (sampled - region) * w
    return out


def paste_all(photo: torch.Tensor, faces: Sequence[tuple[AlignedFace, torch.Tensor]],
              scale: float = 1.0, feather: float = FEATHER) -> torch.Tensor:
    """Paste each (face, restored) in turn."""
    for face, restored in faces:
        photo = paste(photo, restored, face, scale, feather)
    return photo
