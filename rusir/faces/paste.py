"""Paste a restored face back into its photo: the inverse of the alignment warp, blended by a mask.

Each photo pixel under the face's quad is mapped to the aligned frame (the inverse of
`AlignedFace.matrix`) and sampled from the restored image with `torch.nn.functional.grid_sample`.
The photo may have been enlarged by `scale` (upsampling: the restored face has more pixels than
the photo had), so the quad is scaled with it. How much of the restoration replaces the photo:

* "square" -- the whole crop, its weight falling smoothly to 0 over the outer `feather` of the
  crop's side, faces pasted in turn (a later face covers an earlier one where crops overlap).
* "mask" (default) -- only the face: a soft mask made in the aligned frame from dlib's 68
  landmarks (the hull of the jaw line and of the eyebrows lifted to the forehead, feathered), or,
  with five landmarks only, an ellipse derived from them (eyes and mouth give the face's width
  and height; hair and ears are left to the photo). Where faces overlap each pixel goes to the
  face whose mask is the more certain there (weights normalised with a sharp power), so no face
  ever overwrites another's masked region, whatever the order.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from .align import AlignedFace

__all__ = ["FEATHER", "PASTES", "paste", "paste_all", "face_weight", "face_mask"]

FEATHER = 0.1   # the blend weight rises from 0 to 1 over the outer 10 % of the crop's side
PASTES = ("mask", "square")
MASK_FEATHER = 0.035  # the mask's edge is blurred by this fraction of the crop's side (sigma)
FOREHEAD = 0.7        # eyebrows lifted by this many eye-to-mouth distances (to the hairline)
# five points only: an ellipse (aligned frame, units of the eye distance d_e and of the
# eye-to-mouth distance d_m): half-width ELLIPSE_WIDTH * d_e, from FOREHEAD * d_m above the eyes
# to CHIN * d_m below the mouth (human averages: face ~2.2 eye distances wide, chin ~0.9 d_m)
ELLIPSE_WIDTH = 1.1
CHIN = 0.9
OWNERSHIP_POWER = 8   # overlapping masks: weight^8 normalised, so the more certain face wins


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


def _outline(face: AlignedFace) -> list[tuple[float, float]]:
    """The face's outline in crop units [0, 1]: the hull of the jaw (68 points: 0-16) and the
    eyebrows (17-26) lifted towards the forehead, or an ellipse from the five points."""
    five = face.to_aligned(face.landmarks, size=1)                       # [5, 2] crop units
    eyes, mouth = (five[0] + five[1]) / 2, (five[3] + five[4]) / 2
    up = eyes - mouth                                                    # eye-to-mouth, upwards
    if face.points is not None and len(face.points) == 68:
        p = face.to_aligned(face.points, size=1)                         # [68, 2]
        outline = np.concatenate([p[:17], p[17:27] + FOREHEAD * up])
    else:
        d_e, d_m = float(np.hypot(*(five[1] - five[0]))), float(np.hypot(*up))
        across = (five[1] - five[0]) / d_e
        down = -up / d_m
        top, bottom = -FOREHEAD * d_m, d_m * (1 + CHIN)                  # along `down`, from the eyes
        centre, half = eyes + down * (top + bottom) / 2, (bottom - top) / 2
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)[:, None]
        outline = centre + np.cos(t) * across * ELLIPSE_WIDTH * d_e + np.sin(t) * down * half
    return [tuple(map(float, q)) for q in _hull(outline)]


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (monotone chain) of [N, 2] points, in order."""
    pts = sorted(map(tuple, np.asarray(points, dtype=np.float64)))

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]
    return np.array(half(pts) + half(pts[::-1]))


def face_mask(face: AlignedFace, size: int = 256) -> torch.Tensor:
    """The face's soft mask in its aligned frame [1, 1, size, size] in [0, 1] (`_outline`
    filled, blurred by MASK_FEATHER of the side)."""
    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).polygon([(x * size, y * size) for x, y in _outline(face)], fill=255)
    soft = gaussian_filter(np.asarray(img, dtype=np.float32) / 255, MASK_FEATHER * size)
    return torch.from_numpy(soft)[None, None]


def _sampled(photo: torch.Tensor, restored: torch.Tensor, face: AlignedFace, scale: float, box):
    """The restoration warped onto the photo pixels of `box` [1, 3, h, w], and their crop
    coordinates uv [h, w, 2]."""
    side = face.native_size * scale                     # the face's side in output pixels
    src = restored.to(photo.dtype)
    if side < src.shape[-1]:                            # shrinking: filter first (no aliasing)
        n = max(int(round(side)), 1)
        src = F.interpolate(src, size=(n, n), mode="bilinear", antialias=True, align_corners=False)
    uv = _aligned_coords(face, scale, box).to(photo.device)               # [h, w, 2]
    grid = (uv * 2 - 1).unsqueeze(0).to(photo.dtype)                      # [1, h, w, 2]
    sampled = F.grid_sample(src, grid, mode="bilinear", padding_mode="border",
                            align_corners=False)                          # [1, 3, h, w]
    return sampled, uv


def paste(photo: torch.Tensor, restored: torch.Tensor, face: AlignedFace, scale: float = 1.0,
          feather: float = FEATHER) -> torch.Tensor:
    """`photo` [1, 3, H, W] (already enlarged by `scale`) with `restored` [1, 3, S, S] warped
    back under the face's quad and feather-blended over the whole square; a new tensor."""
    out = photo.clone()
    box = _region(face, scale, photo.shape[-2], photo.shape[-1])
    if box is None:
        return out
    sampled, uv = _sampled(photo, restored, face, scale, box)
    w = face_weight(uv, feather).to(photo.dtype)                          # [h, w]
    x0, y0, x1, y1 = box
    region = out[..., y0:y1, x0:x1]
    out[..., y0:y1, x0:x1] = region + (sampled - region) * w
    return out


def _masked_weight(face: AlignedFace, uv: torch.Tensor, feather: float) -> torch.Tensor:
    """[h, w] weight of the face mask at crop positions uv, times the square's feather (no
    restored pixel exists outside the crop)."""
    mask = face_mask(face).to(uv.device)                                  # [1, 1, m, m]
    grid = (uv * 2 - 1).unsqueeze(0)                                      # [1, h, w, 2]
    inside = F.grid_sample(mask, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)[0, 0]                     # [h, w]
    return inside * face_weight(uv, feather)


def paste_all(photo: torch.Tensor, faces: Sequence[tuple[AlignedFace, torch.Tensor]],
              scale: float = 1.0, feather: float = FEATHER, how: str = "mask") -> torch.Tensor:
    """`photo` [1, 3, H, W] with every (face, restored) pasted: "square" in turn (today's
    paste), "mask" by each face's mask, overlaps shared by mask certainty. A new tensor."""
    if how not in PASTES:
        raise ValueError(f"paste {how!r}: choose one of {', '.join(PASTES)}")
    if how == "square":
        for face, restored in faces:
            photo = paste(photo, restored, face, scale, feather)
        return photo
    H, W = photo.shape[-2:]
    boxes = [_region(face, scale, H, W) for face, _ in faces]
    used = [b for b in boxes if b is not None]
    out = photo.clone()
    if not used:
        return out
    # accumulate over the union of the faces' boxes only (the photo may be large)
    ux0, uy0 = min(b[0] for b in used), min(b[1] for b in used)
    ux1, uy1 = max(b[2] for b in used), max(b[3] for b in used)
    total = photo.new_zeros(uy1 - uy0, ux1 - ux0)                         # sum of w^k
    most = photo.new_zeros(uy1 - uy0, ux1 - ux0)                          # max of w
    mixed = photo.new_zeros(1, 3, uy1 - uy0, ux1 - ux0)                   # sum of w^k * face
    for (face, restored), box in zip(faces, boxes):
        if box is None:
            continue
        sampled, uv = _sampled(photo, restored, face, scale, box)
        w = _masked_weight(face, uv, feather).to(photo.dtype)             # [h, w]
        x0, y0, x1, y1 = (box[0] - ux0, box[1] - uy0, box[2] - ux0, box[3] - uy0)
        wk = w ** OWNERSHIP_POWER
        total[y0:y1, x0:x1] += wk
        mixed[..., y0:y1, x0:x1] += wk * sampled
        most[y0:y1, x0:x1] = torch.maximum(most[y0:y1, x0:x1], w)
    blended = mixed / total.clamp_min(1e-30)
    region = out[..., uy0:uy1, ux0:ux1]
    out[..., uy0:uy1, ux0:ux1] = region + (blended - region) * most
    return out
