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
the other corner ([5, 2]); or as dlib's 68 points (iBUG 300-W order, [68, 2]), which are reduced
to those five exactly as the FFHQ script does (`five_points`).

`check_landmarks` refuses what cannot be a face (one line) and mends the one common slip: a set
listed from the subject's point of view (their left eye first) is mirrored; it is put back in
the image's order with a warning instead of giving a mirrored, upside-down crop.

A `Template` says where a generator's square frame sits relative to the FFHQ quad: the quad
itself for FFHQ-aligned models, a slightly shifted and scaled square for the embedded
`toyfaces64`, whose training renders put the landmarks at `rusir.data.avatars.landmarks(64)`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Optional, Union

import numpy as np
import torch
from torch import nn
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..data import avatars
from ..data.images import pil_to_tensor
from ..model.generators import REGISTRY, alignment, info
from ..validation import MIN_EYE_DISTANCE, side

__all__ = ["Template", "AlignedFace", "TEMPLATES", "ffhq_quad", "template_for", "align",
           "warp_quad", "check_landmarks", "five_points", "LandmarkWarning",
           "MOUTH_DROP", "MAX_EYES_PER_SIDE"]

SUPERSAMPLE = 4   # the quad is resampled at 4x the output size, then reduced (FFHQ: 4096 -> 1024)
# Plausible faces, as multiples of the eye distance: the mouth lies MOUTH_DROP[0]..[1] of it off
# the eye line (frontal faces ~1.0-1.3, toyfaces64 0.9; a head turned aside raises it); the
# nose within NOSE_REACH of the eyes-mouth centre. And the eyes span at most MAX_EYES_PER_SIDE
# of the photo's larger side (a face is ~2.2 eye distances wide: a wider gap cannot be a face
# that fits the photo; FFHQ's own crops have 0.25).
MOUTH_DROP = (0.3, 5.0)
NOSE_REACH = 2.0
MAX_EYES_PER_SIDE = 0.6


class LandmarkWarning(UserWarning):
    """Landmarks were mended (a mirrored order put back); the message says what was done."""


def five_points(lm68) -> np.ndarray:
    """dlib's 68 points [68, 2] -> the five the alignment uses [5, 2], as the FFHQ script does:
    each eye's centre is the mean of its six points (36-41 on the image's left, 42-47), the
    mouth corners are points 48 and 54; the nose tip (30) is carried along, unused by the quad."""
    lm = np.asarray(lm68, dtype=np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def _as_points(landmarks) -> np.ndarray:
    """[5, 2] or [68, 2] float64 from [x, y] pairs or {"x": .., "y": ..} objects, or one line."""
    if isinstance(landmarks, (list, tuple)):
        landmarks = [(p["x"], p["y"]) if isinstance(p, Mapping) and {"x", "y"} <= set(p) else p
                     for p in landmarks]
    try:
        lm = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError):
        lm = np.zeros(0)
    if lm.shape not in ((5, 2), (68, 2)):
        raise ValueError("landmarks must be 5 (x, y) points, each [x, y] or {\"x\": .., \"y\": ..} "
                         "(eyes, nose tip, mouth corners), or dlib's 68, got "
                         f"{str(landmarks)[:80]}")
    if not np.isfinite(lm).all():
        raise ValueError("landmarks contain a NaN or infinite coordinate")
    return lm


def _cross(a: np.ndarray, b: np.ndarray) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def _mend_order(lm: np.ndarray) -> np.ndarray:
    """Five points in the image's order. With y down, eye-to-eye x eye-to-mouth > 0 for a face
    at any angle listed as the image shows it; < 0 for a mirrored (subject's-view) listing. The
    mouth corners must run the way the eyes do; whichever pair disagrees is swapped, warned."""
    eye_l, eye_r, nose, mouth_l, mouth_r = lm
    eye_to_mouth = (mouth_l + mouth_r) / 2 - (eye_l + eye_r) / 2
    mended = []
    if _cross(eye_r - eye_l, eye_to_mouth) < 0:
        eye_l, eye_r = eye_r, eye_l
        mended.append("eyes")
    if np.dot(mouth_r - mouth_l, eye_r - eye_l) < 0:
        mouth_l, mouth_r = mouth_r, mouth_l
        mended.append("mouth corners")
    if mended:
        warnings.warn(f"landmarks: the {' and '.join(mended)} were listed from the subject's "
                      "side (their left first); swapped to the image's order (the eye on the "
                      "image's left first)", LandmarkWarning, stacklevel=3)
    return np.stack([eye_l, eye_r, nose, mouth_l, mouth_r])


def _check_face(lm: np.ndarray) -> None:
    """One line if five image-ordered points cannot be a face."""
    eye_l, eye_r, nose, mouth_l, mouth_r = lm
    eyes = float(np.hypot(*(eye_r - eye_l)))
    if eyes < MIN_EYE_DISTANCE:
        raise ValueError(f"landmarks: the eyes are {eyes:.3g} px apart, less than a face has "
                         f"(limit rusir.validation.MIN_EYE_DISTANCE = {MIN_EYE_DISTANCE:g} px)")
    mouth = (mouth_l + mouth_r) / 2
    drop = _cross(eye_r - eye_l, mouth - (eye_l + eye_r) / 2) / eyes    # signed, off the eye line
    if not MOUTH_DROP[0] * eyes <= drop <= MOUTH_DROP[1] * eyes:
        raise ValueError(f"landmarks: the mouth lies {drop / eyes:.2g} eye distances below the "
                         f"eyes; a face has {MOUTH_DROP[0]:g}-{MOUTH_DROP[1]:g} (eyes, nose tip, "
                         "mouth corners in that order?)")
    reach = float(np.hypot(*(nose - (eye_l + eye_r + mouth_l + mouth_r) / 4))) / eyes
    if reach > NOSE_REACH:
        raise ValueError(f"landmarks: the nose tip is {reach:.2g} eye distances from the face's "
                         f"centre (at most {NOSE_REACH:g}; is the third point the nose tip?)")


def check_landmarks(landmarks, photo_size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """The face's landmarks, checked, as [5, 2] float64 (or [68, 2] when 68 are given), or a
    ValueError naming what is wrong: not 5 or 68 finite points; given the photo's (width,
    height), a point outside it or eyes wider apart than the photo; eyes closer than
    MIN_EYE_DISTANCE px (no face can be aligned from them, and the restoration would be
    enlarged without bound); a mouth not below the eyes (in the face's own frame, so a tilted
    or upside-down face is fine) or a nose far from the face. A five-point set listed from the
    subject's side is put in the image's order with a `LandmarkWarning`; 68 points come from a
    detector in iBUG order and are never reordered (a mirrored set of 68 is refused)."""
    lm = _as_points(landmarks)
    if photo_size is not None:
        w, h = photo_size
        outside = [i for i, (x, y) in enumerate(lm) if not (0 <= x <= w and 0 <= y <= h)]
        if outside:
            raise ValueError(f"landmark {outside[0]} {lm[outside[0]].tolist()} lies outside the "
                             f"{w}x{h} px photo")
    five = five_points(lm) if len(lm) == 68 else lm
    if len(lm) == 5:
        lm = five = _mend_order(lm)
    elif _cross(five[1] - five[0], (five[3] + five[4] - five[0] - five[1]) / 2) < 0:
        raise ValueError("landmarks: these 68 points are mirrored (not in dlib's iBUG order)")
    _check_face(five)
    if photo_size is not None:
        eyes = float(np.hypot(*(five[1] - five[0])))
        if eyes > max(photo_size) * MAX_EYES_PER_SIDE:
            raise ValueError(f"landmarks: the eyes are {eyes:.0f} px apart in a "
                             f"{photo_size[0]}x{photo_size[1]} px photo: no face that large fits")
    return lm


def ffhq_quad(landmarks) -> np.ndarray:
    """FFHQ's crop quad [4, 2] (top-left, bottom-left, bottom-right, top-right corners).

    Its axis x follows the eye-to-eye vector corrected by the eye-to-mouth vector turned by 90
    degrees (so a tilted mouth line also straightens the head); its half side is the larger of
    2x the eye distance and 1.8x the eye-to-mouth distance; its centre sits 0.1 of the
    eye-to-mouth vector below the eyes' midpoint.
    """
    lm = _as_points(landmarks)
    eye_l, eye_r, _nose, mouth_l, mouth_r = five_points(lm) if len(lm) == 68 else lm
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
    if isinstance(generator, str) and generator in TEMPLATES:
        return TEMPLATES[generator]
    if isinstance(generator, str) and generator not in REGISTRY and not _path_like(generator):
        raise ValueError(f"unknown generator {generator!r}: not one of {sorted(REGISTRY)}, and "
                         "not a file path (a typo would silently align faces as FFHQ's)")
    name = alignment(generator)
    if name is None:
        label = info(generator).name if isinstance(generator, nn.Module) else generator
        raise ValueError(f"generator {label} draws no human faces aligned by landmarks: there is "
                         "no face alignment for it (restore without --align; its images are "
                         "centre-cropped)")
    return TEMPLATES[name]


def _path_like(text: str) -> bool:
    """A generator named by its file: a path with a folder or a suffix, or an existing file."""
    path = Path(text).expanduser()
    return len(path.parts) > 1 or bool(path.suffix) or path.exists()


@dataclass
class AlignedFace:
    """A face cut out of a photo along `quad`, and the way back to the photo.

    image: [1, 3, S, S] in [0, 1]. quad: the crop's corners in photo pixels [4, 2] (top-left,
    bottom-left, bottom-right, top-right). landmarks: [5, 2] in photo pixels; points: all that
    were given ([68, 2] from dlib, else the five), for the face-mask paste.
    """
    image: torch.Tensor
    quad: np.ndarray
    landmarks: np.ndarray
    points: Optional[np.ndarray] = field(default=None, repr=False)

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
    points = check_landmarks(landmarks, photo.size)
    lm = five_points(points) if len(points) == 68 else points
    quad = template_for(template).frame(lm)
    crop = warp_quad(photo.convert("RGB"), quad, int(size))
    return AlignedFace(pil_to_tensor(crop), quad, lm, points)   # [1, 3, S, S]
