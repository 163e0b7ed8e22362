"""Restore the faces of a photograph: align each, restore it in its aligned frame, paste it back.

A degraded photo's face is small, and its size sets the degradation: for upsampling the target
is the aligned crop at the face's *native* resolution n (its side in photo pixels, rounded) and
the factor is R / n for a generator of resolution R (any factor, not only the five levels),
unless a factor is given. Noise, JPEG and holes are the task's own at the chosen level, applied
by the approximations at the target's resolution. A mask given in photo coordinates is warped
with the face. The restored faces are pasted into the photo enlarged by the upsampling factor of
the largest face (so it keeps every restored pixel; smaller faces are reduced on pasting), or
into the photo itself for the other tasks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from .. import degradations
from ..data.images import pil_to_tensor
from ..degradations.base import to_pil as _to_pil
from ..degradations import Degradation
from ..inversion.method import default_loss
from ..inversion.restore import RestoreResult, restore
from ..validation import MAX_FACTOR, MAX_OUTPUT_MEGAPIXELS, number
from .align import AlignedFace, Template, align, check_landmarks, template_for, warp_quad
from .paste import paste_all

__all__ = ["FaceRestoration", "PhotoRestoration", "find_faces", "photo_degradation",
           "restore_photo", "align_face", "pil_to_tensor"]

LandmarkProvider = Callable[[Image.Image], Sequence[np.ndarray]]


@dataclass
class FaceRestoration:
    """One face: its aligned target (`face.image`), the degradation and RUSIR's result."""
    index: int
    face: AlignedFace
    degradation: Degradation
    result: RestoreResult

    @property
    def factor(self) -> float:
        """Generator resolution / target resolution (1 without upsampling)."""
        return self.result.images.shape[-1] / self.face.size


@dataclass
class PhotoRestoration:
    """The whole restored photo [1, 3, H', W'] (H' = H x scale) and each face's restoration."""
    photo: torch.Tensor
    scale: float
    faces: list[FaceRestoration] = field(default_factory=list)


def find_faces(photo: Image.Image, landmarks: Union[Sequence, LandmarkProvider, None] = None,
               face: Optional[int] = None, name: str = "the photo") -> list[tuple[int, np.ndarray]]:
    """(index, landmarks [5, 2]) of the faces to restore: given landmarks, a provider's, or
    YuNet's (`rusir.faces.detect`). `face` picks one. No face is a ValueError saying so."""
    if landmarks is None:
        from .detect import detect_faces   # OpenCV is optional: loaded only to detect
        landmarks = detect_faces
    found = list(landmarks(photo) if callable(landmarks) else landmarks)
    if not found:
        raise ValueError(f"no face found in {name}: nothing to align (give the landmarks, or "
                         "restore without --align)")
    faces = []
    for i, lm in enumerate(found):
        try:
            faces.append((i, check_landmarks(lm, photo.size)))
        except ValueError as exc:
            raise ValueError(f"{name}, face {i}: {exc}") from None
    if face is None:
        return faces
    if not 0 <= int(face) < len(faces):
        raise ValueError(f"--face {face}: {name} has {len(faces)} face(s), "
                         f"numbered 0..{len(faces) - 1} from the left")
    return [faces[int(face)]]


def align_face(photo: Union[str, Image.Image], size: int,
               generator: Union[str, Template, None] = None, face: int = 0,
               landmarks: Union[Sequence, LandmarkProvider, None] = None) -> AlignedFace:
    """One face of a (clean) photo, aligned as `generator`'s training data were, at `size`: what
    a notebook or the panel uses as the ground truth of "your own image"."""
    name = str(photo) if not isinstance(photo, Image.Image) else "the image"
    if not isinstance(photo, Image.Image):
        from ..data.images import open_image
        photo = open_image(photo)
    photo = photo.convert("RGB")
    template = template_for(generator)
    ((_, lm),) = find_faces(photo, landmarks, face, name)
    return align(photo, lm, size, template)


def photo_degradation(task: str, level: str, seed: int, factor: float = 1.0,
                      mask: Optional[torch.Tensor] = None) -> Degradation:
    """The task at `level`, its upsampling (if any) by `factor`, its inpainting (if any) by
    `mask` ([1, 1, R, R], 1 = known) when one is given."""
    task = degradations.canonical_task(task)
    initials = task if degradations.is_composition(task) else {
        name: c for c, name in degradations.INITIALS.items()}.get(task)
    if initials is None:                            # a registered custom task: as it is
        return degradations.make(task, level, seed=seed)
    stages = []
    for c in initials:
        if c == "U":
            stages.append(degradations.Upsampling(level, seed, factor=factor))
        elif c == "P" and mask is not None:
            stages.append(degradations.Inpainting.from_mask(mask))
        else:
            stages.append(degradations.make(c, level, seed=seed))
    if len(stages) == 1:
        return stages[0]
    return degradations.Composition(stages, initials, level, seed)


def _target_side(resolution: int, native: float, factor: Optional[float]) -> int:
    """Side of the aligned target: the face's native size (or R / factor), at most R."""
    n = resolution / factor if factor is not None else native
    return int(min(max(round(n), 1), resolution))


def restore_photo(G, photo: Image.Image, task: str, level: str = "M", *,
                  landmarks: Union[Sequence, LandmarkProvider, None] = None,
                  template: Union[str, Template, None] = None, face: Optional[int] = None,
                  factor: Optional[float] = None, mask: Optional[Image.Image] = None,
                  loss=None, seed: int = 0, steps=None, lr_scale=None, discrepancy=None,
                  progress: bool = True, name: str = "the photo") -> PhotoRestoration:
    """Find (or take) the faces of `photo`, restore each in its aligned frame, paste them back.

    template: the generator's alignment, a Template or a generator name
    (`rusir.faces.align.template_for`; default G's own, `info(G).alignment`). factor:
    upsampling factor (default: inferred per face). mask: an inpainting mask the photo's size (white = known).
    steps, lr_scale, discrepancy: as `rusir.restore` (None: the generator's own)."""
    if not isinstance(photo, Image.Image):
        raise TypeError(f"restore_photo takes the photo as a PIL.Image (e.g. "
                        f"rusir.data.images.open_image(path)), got {type(photo).__name__}")
    template = template_for(G if template is None else template)
    R = G.img_resolution
    device = next(G.parameters()).device
    names = degradations.task_names(task)
    upsampling = "upsampling" in names
    if factor is not None and not upsampling:
        raise ValueError("a factor only applies to tasks with upsampling")
    if factor is not None:
        factor = number(factor, "factor", 1.0, MAX_FACTOR, "MAX_FACTOR", strict=False)
    if mask is not None and "inpainting" not in names:
        raise ValueError("--mask only applies to the inpainting task")
    if mask is not None and mask.size != photo.size:
        raise ValueError(f"mask is {mask.size[0]}x{mask.size[1]} px but the photo is "
                         f"{photo.size[0]}x{photo.size[1]} px: with --align it must have the "
                         "photo's size")
    photo = photo.convert("RGB")
    faces = find_faces(photo, landmarks, face, name)
    sides = [_target_side(R, _native_side(template, lm), factor) if upsampling else R
             for _, lm in faces]
    scale = 1.0 if not upsampling else factor or min(R / n for n in sides)
    size = _output_size(photo, scale)                 # refused before any face is restored
    done = []
    for (index, lm), n in zip(faces, sides):
        aligned = align(photo, lm, n, template)                       # [1, 3, n, n]
        known = None
        if mask is not None:                                          # warped with the face
            rgb = _to_pil(pil_to_tensor(mask)[0])                      # alpha over white, as unaligned
            warped = warp_quad(rgb, aligned.quad, R, soft_pad=False)
            known = pil_to_tensor(warped).mean(1, keepdim=True)       # [1, 1, R, R]
        deg = photo_degradation(task, level, seed + index, R / n, known)
        loss = default_loss(G) if loss is None else loss   # built once, for every face
        result = restore(G, aligned.image.to(device), deg, loss=loss, seed=seed, steps=steps,
                         discrepancy=discrepancy,
                         lr_scale=lr_scale, progress=progress)
        done.append(FaceRestoration(index, aligned, deg, result))
    base = pil_to_tensor(photo.resize(size, Image.BICUBIC) if size != photo.size else photo)
    pasted = paste_all(base, [(f.face, f.result.images.detach().cpu().clamp(0, 1)) for f in done],
                       scale=size[0] / photo.width)
    return PhotoRestoration(pasted, size[0] / photo.width, done)


def _native_side(template: Template, landmarks: np.ndarray) -> float:
    """The side, in photo pixels, of the generator's frame around this face."""
    corners = template.frame(landmarks)
    return float(np.hypot(*(corners[3] - corners[0])))


def _output_size(photo: Image.Image, scale: float) -> tuple[int, int]:
    """(width, height) of the photo enlarged by `scale`, refused above MAX_OUTPUT_MEGAPIXELS."""
    size = (max(int(round(photo.width * scale)), 1), max(int(round(photo.height * scale)), 1))
    megapixels = size[0] * size[1] / 1e6
    if megapixels > MAX_OUTPUT_MEGAPIXELS:
        raise ValueError(
            f"the restored photo would be {size[0]}x{size[1]} px ({megapixels:.0f} MP: "
            f"{photo.width}x{photo.height} enlarged {scale:.3g}x), more than "
            f"rusir.validation.MAX_OUTPUT_MEGAPIXELS = {MAX_OUTPUT_MEGAPIXELS}: crop the photo "
            "around the face, or give a smaller factor")
    return size
