"""Face alignment as FFHQ was aligned, from five landmarks; and where each generator wants the face.

The official generators only know faces framed the way their datasets were: FFHQ (and MetFaces,
aligned the same way) takes a square crop along a rotated *quad* built from the eye-to-eye and
eye-to-mouth vectors, so eyes and mouth land at fixed places whatever the head's size, angle and
position in the photo. This module follows the published description of that procedure, in our
own code: quad from the landmarks; shrink the photo first when the face is much larger than the
output (anti-aliasing); crop around the quad; reflect-pad where the quad leaves the photo,
blurring the padding towards its median colour; resample the quad at 4x the output size and
reduce to the output size. A face no larger than the output (a degraded photo's face at its
native size) is resampled once with a bicubic filter instead: nothing to anti-alias there.

Coordinates are photo pixels (x, y) with (0, 0) the top-left corner of the top-left pixel, so
pixel (i, j) covers [i, i+1] x [j, j+1]. Landmarks come in YuNet's order for an upright face:
the eye on the image's left, the other eye, the nose tip, the mouth corner on the image's left,
the other corner ([5, 2]).

A `Template` says where a generator's square frame sits relative to the FFHQ quad: the quad
itself for FFHQ-aligned models, a slightly shifted and scaled square for the embedded
`toyfaces64`, whose training renders put the landmarks at `rusir.data.avatars.landmarks(64)`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Optional, Union

import numpy as np
import torch
from torch import nn
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..data import avatars
from ..data.images import pil_to_tensor
from ..model.generators import alignment, info
from ..validation import MIN_EYE_DISTANCE, side

__all__ = ["Template", "AlignedFace", "TEMPLATES", "ffhq_quad", "template_for", "align",
           "warp_quad", "check_landmarks"]

SUPERSAMPLE = 4   # the quad is resampled at 4x the output size, then reduced (FFHQ: 4096 -> 1024)


def check_landmarks(landmarks, photo_size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """[5, 2] float64 landmarks from five [x, y] points or {"x": .., "y": ..} objects, or a
    ValueError naming what is wrong: not five finite points; given the photo's (width, height),
    a point outside it; eyes closer than MIN_EYE_DISTANCE px (no face can be aligned from them,
    and the restoration would be enlarged without bound)."""
    if isinstance(landmarks, (list, tuple)):
        landmarks = [(p["x"], p["y"]) if isinstance(p, Mapping) and {"x", "y"} <= set(p) else p
                     for p in landmarks]
    try:
        lm = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError):
        lm = np.zeros(0)
    if lm.shape != (5, 2):
        raise ValueError("landmarks must be 5 (x, y) points, each [x, y] or {\"x\": .., \"y\": ..} "
                         f"(eyes, nose tip, mouth corners), got {str(landmarks)[:80]}")
    if not np.isfinite(lm).all():
        raise ValueError("landmarks contain a NaN or infinite coordinate")
    if photo_size is not None:
        w, h = photo_size
        outside = [i for i, (x, y) in enumerate(lm) if not (0 <= x <= w and 0 <= y <= h)]
        if outside:
            raise ValueError(f"landmark {outside[0]} {lm[outside[0]].tolist()} lies outside the "
                             f"{w}x{h} px photo")
    eyes = float(np.hypot(*(lm[1] - lm[0])))
    if eyes < MIN_EYE_DISTANCE:
        raise ValueError(f"landmarks: the eyes are {eyes:.3g} px apart, less than a face has "
                         f"(limit rusir.validation.MIN_EYE_DISTANCE = {MIN_EYE_DISTANCE:g} px)")
    return lm


def ffhq_quad(landmarks) -> np.ndarray:
    """FFHQ's crop quad [4, 2] (top-left, bottom-left, bottom-right, top-right corners).

    Its axis x follows the eye-to-eye vector corrected by the eye-to-mouth vector turned by 90
    degrees (so a tilted mouth line also straightens the head); its half side is the larger of
    2x the eye distance and 1.8x the eye-to-mouth distance; its centre sits 0.1 of the
    eye-to-mouth vector below the eyes' midpoint.
    """
    eye_l, eye_r, _nose, mouth_l, mouth_r = check_landmarks(landmarks)
    eye_avg, mouth_avg = (eye_l + eye_r) / 2, (mouth_l + mouth_r) / 2
    eye_to_eye, eye_to_mouth = eye_r - eye_l, mouth_avg - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])   # e2m turned by -90 degrees
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])                                        # x turned by +90 (down)
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _axes(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Origin (top-left corner) and the two side vectors (along x, along y) of a quad."""
    return quad[0], quad[3] - quad[0], quad[1] - quad[0]


@dataclass(frozen=True)
class Template:
    """Where a generator's square frame sits in units of the FFHQ quad: centre (0.5, 0.5) and
    side 1 is the quad itself (FFHQ alignment)."""
    name: str
    centre: tuple[float, float] = (0.5, 0.5)
    side: float = 1.0

    @classmethod
    def from_landmarks(cls, name: str, landmarks, size: int) -> "Template":
        """The template of a generator whose training images (side `size`) hold the landmarks
        at `landmarks` ([5, 2], upright: the FFHQ quad of them must not be rotated)."""
        origin, ex, ey = _axes(ffhq_quad(landmarks))
        if abs(ex[1]) > 1e-6 * np.hypot(*ex):
            raise ValueError(f"template {name}: its landmarks are not upright")
        centre = np.linalg.solve(np.stack([ex, ey], axis=1), np.full(2, size / 2) - origin)
        return cls(name, (float(centre[0]), float(centre[1])), float(size / np.hypot(*ex)))

    def frame(self, landmarks) -> np.ndarray:
        """The generator's square frame in the photo [4, 2] (corners as `ffhq_quad`)."""
        origin, ex, ey = _axes(ffhq_quad(landmarks))
        c = origin + self.centre[0] * ex + self.centre[1] * ey
        hx, hy = ex * self.side / 2, ey * self.side / 2
        return np.stack([c - hx - hy, c - hx + hy, c + hx + hy, c + hx - hy])


FFHQ = Template("ffhq")
TOYFACES64 = Template.from_landmarks("toyfaces64", avatars.landmarks(64), 64)
# alignment name (a generator's `info(G).alignment`) -> template; MetFaces was aligned as FFHQ was.
TEMPLATES: dict[str, Template] = {"ffhq": FFHQ, "metfaces": replace(FFHQ, name="metfaces"),
                                  "toyfaces64": TOYFACES64}


def template_for(generator: Union[str, Template, nn.Module, None]) -> Template:
    """The alignment a generator was trained with: a Template, a loaded generator, a registered
    name, or None / a file path (FFHQ's, what custom StyleGAN face models use). A generator whose
    images are not aligned human faces (AFHQ, BreCaHAD) is refused in one line."""
    if isinstance(generator, Template):
        return generator
    name = alignment(generator)
    if name is None:
        label = info(generator).name if isinstance(generator, nn.Module) else generator
        raise ValueError(f"generator {label} draws no human faces aligned by landmarks: there is "
                         "no face alignment for it (restore without --align; its images are "
                         "centre-cropped)")
    return TEMPLATES[name]


@dataclass
class AlignedFace:
    """A face cut out of a photo along `quad`, and the way back to the photo.

    image: [1, 3, S, S] in [0, 1]. quad: the crop's corners in photo pixels [4, 2] (top-left,
    bottom-left, bottom-right, top-right). landmarks: [5, 2] in photo pixels.
    """
    image: torch.Tensor
    quad: np.ndarray
    landmarks: np.ndarray

    @property
    def size(self) -> int:
        return int(self.image.shape[-1])

    @property
    def native_size(self) -> float:
        """The crop's side in photo pixels: the resolution the photo really has of this face."""
        return float(np.hypot(*(self.quad[3] - self.quad[0])))

    def matrix(self, size: Optional[int] = None) -> np.ndarray:
        """3x3 affine map from aligned pixels (of a crop of side `size`, default this one's) to
        photo pixels."""
        origin, ex, ey = _axes(self.quad)
        s = size or self.size
        return np.array([[ex[0] / s, ey[0] / s, origin[0]], [ex[1] / s, ey[1] / s, origin[1]],
                         [0.0, 0.0, 1.0]])

    def to_photo(self, points, size: Optional[int] = None) -> np.ndarray:
        """Aligned pixels [N, 2] -> photo pixels [N, 2]."""
        p = np.asarray(points, dtype=np.float64)
        return p @ self.matrix(size)[:2, :2].T + self.matrix(size)[:2, 2]

    def to_aligned(self, points, size: Optional[int] = None) -> np.ndarray:
        """Photo pixels [N, 2] -> aligned pixels [N, 2]."""
        m = np.linalg.inv(self.matrix(size))
        p = np.asarray(points, dtype=np.float64)
        return p @ m[:2, :2].T + m[:2, 2]


def _soft_pad(a: np.ndarray, pad: np.ndarray, qsize: float) -> np.ndarray:
    """Blur the reflected border of a padded [H, W, C] float array towards its median colour,
    more the further from the photo (padding is invented content; it should not look sharp)."""
    h, w = a.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    left, top, right, bottom = np.maximum(pad, 1).astype(np.float32)
    mask = np.maximum(1 - np.minimum(xx / left, (w - 1 - xx) / right),
                      1 - np.minimum(yy / top, (h - 1 - yy) / bottom))[..., None]
    sigma = max(qsize * 0.02, 1e-3)
    blurred = gaussian_filter(a, [sigma, sigma, 0])
    a = a + (blurred - a) * np.clip(mask * 3 + 1, 0, 1)
    return a + (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0, 1)


def warp_quad(img: Image.Image, quad: np.ndarray, size: int, soft_pad: bool = True) -> Image.Image:
    """Resample the region of `img` under `quad` to a `size` x `size` image (FFHQ's steps).

    `soft_pad` blurs the reflect-padding of a quad that leaves the photo (images); masks are
    reflect-padded only."""
    size = side(size, "aligned size")
    quad = np.asarray(quad, dtype=np.float64).copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:                                  # a large face: reduce the photo first
        small = (max(int(round(img.width / shrink)), 1), max(int(round(img.height / shrink)), 1))
        quad *= np.array(small, dtype=np.float64) / img.size
        img, qsize = img.resize(small, Image.LANCZOS), qsize / shrink
    border = max(int(round(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    box = (max(lo[0] - border, 0), max(lo[1] - border, 0),
           min(hi[0] + border, img.width), min(hi[1] + border, img.height))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError("the face lies entirely outside the photo")
    if box != (0, 0, img.width, img.height):        # keep only what the quad needs
        img, quad = img.crop(box), quad - box[:2]
        lo, hi = lo - box[:2], hi - box[:2]
    pad = np.array([-lo[0] + border, -lo[1] + border, hi[0] - img.width + border,
                    hi[1] - img.height + border]).clip(0)
    if pad.max() > border - 4:                      # the quad leaves the photo: mirror it there
        pad = np.maximum(pad, int(round(qsize * 0.3)))
        a = np.asarray(img, dtype=np.float32)
        spec = ((pad[1], pad[3]), (pad[0], pad[2])) + ((0, 0),) * (a.ndim - 2)
        a = np.pad(a, spec, mode="reflect")
        if soft_pad:
            a = _soft_pad(a if a.ndim == 3 else a[..., None], pad, qsize).reshape(a.shape)
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), img.mode)
        quad = quad + pad[:2]
    if qsize <= size:       # not reducing (a small face at its native size): resample once,
        # sharply; supersampling would only blur (measured: 40 % further from the face's own
        # degradation on the benchmark's faces)
        return img.transform((size, size), Image.QUAD, tuple(quad.flatten()), Image.BICUBIC)
    big = SUPERSAMPLE * size
    out = img.transform((big, big), Image.QUAD, tuple(quad.flatten()), Image.BILINEAR)
    return out.resize((size, size), Image.LANCZOS)


def align(photo: Image.Image, landmarks, size: int,
          template: Union[str, Template, None] = None) -> AlignedFace:
    """The face with these landmarks cut out of `photo` as `template`'s generator expects it,
    at `size` x `size` (1024 for FFHQ, 64 for toyfaces64, or the face's native size for a
    degraded photo). Returns the crop, its quad in the photo and the landmarks."""
    size = side(size, "aligned size")
    lm = check_landmarks(landmarks, photo.size)
    quad = template_for(template).frame(lm)
    crop = warp_quad(photo.convert("RGB"), quad, int(size))
    return AlignedFace(pil_to_tensor(crop), quad, lm)   # [1, 3, S, S]
