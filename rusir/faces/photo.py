"""Restore the faces of a photograph: align each, restore it in its aligned frame, paste it back.

A degraded photo's face is small, and its size sets the degradation: for upsampling the target
is the aligned crop at the face's *native* resolution n (its side in photo pixels, rounded) and
the factor is R / n for a generator of resolution R (any factor, not only the five levels),
unless a factor is given. Noise, JPEG and holes are the task's own at the chosen level, applied
by the approximations at the target's resolution. A mask given in photo coordinates is warped
with the face.

The output's size is under control (`PhotoOutput`): the photo is enlarged by `scale`, by default
the largest face's upsampling factor (so it keeps that face's restored pixels; smaller faces are
reduced on pasting) but never beyond DEFAULT_MEGAPIXELS, and never shrunk; 1 for the other
tasks. The memory the photo needs is estimated first and a run that cannot fit is refused in one
line. With `faces_dir`, each face's restoration is written there as soon as it is done
(`face_<i>.png` + `face_<i>.json`) and a re-run with the same settings reuses it (resumable).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from .. import degradations
from ..data.images import to_rgb, open_image, pil_to_tensor
from ..data.outputs import write_file
from ..degradations.base import to_pil
from ..degradations import Degradation
from ..inversion.method import default_loss
from ..inversion.restore import RestoreResult, restore
from ..validation import MAX_FACTOR, MAX_OUTPUT_MEGAPIXELS, number
from .align import AlignedFace, Template, align, check_landmarks, five_points, template_for, warp_quad
from .paste import PASTES, paste_all

__all__ = ["FaceRestoration", "PhotoRestoration", "PhotoOutput", "find_faces",
           "photo_degradation", "restore_photo", "align_face", "pil_to_tensor",
           "DEFAULT_MEGAPIXELS", "BYTES_PER_OUTPUT_PIXEL", "memory_needed", "available_memory",
           "output_scale", "photo_rgb"]

LandmarkProvider = Callable[[Image.Image], Sequence[np.ndarray]]
DEFAULT_MEGAPIXELS = 16.0   # the default output scale keeps the photo within this (4900x3270)
# Peak memory of putting the photo together, per output pixel: the float32 photo, the pasted
# copy, the resized 8-bit input and the 8-bit output (3 x 12 + 2 x 3 bytes), with margin;
# benchmarks/photo_size.py measures it (bench JSON: peak_rss_bytes_per_output_pixel).
BYTES_PER_OUTPUT_PIXEL = 64


@dataclass(frozen=True)
class PhotoOutput:
    """How the restored photo is put together.

    scale: the photo's output scale (None: the largest face's upsampling factor, capped at
    `megapixels`; 1 without upsampling). paste: "mask" (only the face, `rusir.faces.paste`) or
    "square" (the whole aligned crop). faces_dir: a folder where each face is written when done
    and found again by a re-run (None: nothing written). overwrite: redo faces found there."""
    scale: Optional[float] = None
    paste: str = "mask"
    megapixels: float = DEFAULT_MEGAPIXELS
    faces_dir: Optional[Path] = None
    overwrite: bool = False

    def __post_init__(self):
        if self.paste not in PASTES:
            raise ValueError(f"--paste {self.paste!r}: choose one of {', '.join(PASTES)}")
        if self.scale is not None:
            object.__setattr__(self, "scale", number(self.scale, "--scale", 1e-3, MAX_FACTOR,
                                                     "MAX_FACTOR", strict=False))
        number(self.megapixels, "megapixels", 1e-3, MAX_OUTPUT_MEGAPIXELS,
               "MAX_OUTPUT_MEGAPIXELS", strict=False)


@dataclass
class FaceRestoration:
    """One face: its aligned target (`face.image`), the degradation, the restored face
    `restored` [1, 3, R, R] and RUSIR's result (None when reused from `faces_dir`)."""
    index: int
    face: AlignedFace
    degradation: Degradation
    result: Optional[RestoreResult]
    restored: Optional[torch.Tensor] = None

    def __post_init__(self):
        if self.restored is None and self.result is not None:
            self.restored = self.result.images.detach().cpu().clamp(0, 1)

    @property
    def factor(self) -> float:
        """Generator resolution / target resolution (1 without upsampling)."""
        return self.restored.shape[-1] / self.face.size


@dataclass
class PhotoRestoration:
    """The whole restored photo [1, 3, H', W'] (H' = H x scale), its alpha [1, 1, H', W'] when
    the photo had one (else None), and each face's restoration."""
    photo: torch.Tensor
    scale: float
    faces: list[FaceRestoration] = field(default_factory=list)
    alpha: Optional[torch.Tensor] = None

    def to_pil(self, image: Optional[torch.Tensor] = None) -> Image.Image:
        """The photo (or `image` [1, 3, H', W'], e.g. its grey version) as an 8-bit image: RGB,
        or RGBA carrying the input's transparency."""
        rgb = to_pil((self.photo if image is None else image)[0], "round")
        if self.alpha is None:
            return rgb
        a = Image.fromarray((self.alpha[0, 0].clamp(0, 1) * 255).round().byte().numpy(), "L")
        rgb.putalpha(a)
        return rgb


def photo_rgb(photo: Image.Image) -> tuple[Image.Image, Optional[Image.Image]]:
    """The photo as RGB with transparency composited over white (as the unaligned path does),
    and its alpha channel (None when it has none) to put back on the output."""
    has_alpha = photo.mode in ("RGBA", "LA", "PA") or "transparency" in photo.info
    alpha = photo.convert("RGBA").getchannel("A") if has_alpha else None
    return to_rgb(photo), alpha


def find_faces(photo: Image.Image, landmarks: Union[Sequence, LandmarkProvider, None] = None,
               face: Optional[int] = None, name: str = "the photo",
               detector: Optional[str] = None) -> list[tuple[int, np.ndarray]]:
    """(index, landmarks [5, 2] or [68, 2]) of the faces to restore: given landmarks (numbered
    in the order given), a provider's, or the detector's (`rusir.faces.detect`: dlib when
    installed, else YuNet; numbered left to right). `face` picks one. No face is a ValueError."""
    if landmarks is None:
        from . import detect   # optional libraries: loaded only to detect
        found = detect.detect_faces(photo) if detector is None else detect.detect_faces(photo, detector)
        order = "from the left"
    else:
        found = landmarks(photo) if callable(landmarks) else landmarks
        order = "from the left" if callable(landmarks) else "in the order given"
    found = list(found)
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
                         f"numbered 0..{len(faces) - 1} {order}")
    return [faces[int(face)]]


def align_face(photo: Union[str, Image.Image], size: int,
               generator: Union[str, Template, None] = None, face: int = 0,
               landmarks: Union[Sequence, LandmarkProvider, None] = None) -> AlignedFace:
    """One face of a (clean) photo, aligned as `generator`'s training data were, at `size`: what
    a notebook or the panel uses as the ground truth of "your own image"."""
    name = str(photo) if not isinstance(photo, Image.Image) else "the image"
    if not isinstance(photo, Image.Image):
        photo = open_image(photo)
    photo, _ = photo_rgb(photo)
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


def output_scale(photo_size: tuple[int, int], face_factors: Sequence[float],
                 output: PhotoOutput) -> float:
    """The photo's output scale: `output.scale` when given, else the largest face's factor
    (the smallest of `face_factors`; 1 when none) capped so the output stays within
    `output.megapixels`, and never below 1 (a photo already larger is not shrunk unasked)."""
    if output.scale is not None:
        return float(output.scale)
    wanted = min(face_factors, default=1.0)
    budget = math.sqrt(output.megapixels * 1e6 / (photo_size[0] * photo_size[1]))
    return max(1.0, min(wanted, budget))


def available_memory() -> Optional[int]:
    """Bytes of memory available to this process now (Linux: MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_needed(photo_size: tuple[int, int], scale: float) -> int:
    """Bytes the restored photo needs to be put together (BYTES_PER_OUTPUT_PIXEL per pixel)."""
    w, h = _scaled(photo_size, scale)
    return int(w * h * BYTES_PER_OUTPUT_PIXEL)


def _scaled(photo_size: tuple[int, int], scale: float) -> tuple[int, int]:
    return (max(int(round(photo_size[0] * scale)), 1), max(int(round(photo_size[1] * scale)), 1))


def _output_size(photo: Image.Image, scale: float) -> tuple[int, int]:
    """(width, height) of the photo enlarged by `scale`; refused above MAX_OUTPUT_MEGAPIXELS or
    when the memory it needs is more than is available."""
    size = _scaled(photo.size, scale)
    megapixels = size[0] * size[1] / 1e6
    if megapixels > MAX_OUTPUT_MEGAPIXELS:
        raise ValueError(
            f"the restored photo would be {size[0]}x{size[1]} px ({megapixels:.0f} MP: "
            f"{photo.width}x{photo.height} enlarged {scale:.3g}x), more than "
            f"rusir.validation.MAX_OUTPUT_MEGAPIXELS = {MAX_OUTPUT_MEGAPIXELS}: give a smaller "
            "--scale, or crop the photo around the face")
    need, have = memory_needed(photo.size, scale), available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"the restored photo ({size[0]}x{size[1]} px, {photo.width}x{photo.height} enlarged "
            f"{scale:.3g}x) needs about {need / 2**30:.1f} GiB of memory and "
            f"{have / 2**30:.1f} GiB are available: give a smaller --scale")
    return size


def _sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().float().numpy().tobytes()).hexdigest()


def _face_key(settings: dict, aligned: AlignedFace, known: Optional[torch.Tensor],
              index: int) -> dict:
    """What determines face `index`'s restoration: the run's settings, its target, its mask."""
    return {**settings, "face": index, "target_sha256": _sha256(aligned.image),
            "mask_sha256": None if known is None else _sha256(known)}


def _reuse(faces_dir: Optional[Path], index: int, key: dict, overwrite: bool,
           name: str) -> Optional[torch.Tensor]:
    """Face `index`'s restoration saved by an earlier run with this key [1, 3, R, R], or None.
    A saved face made with other settings is refused (unless `overwrite`): never mixed in."""
    if faces_dir is None or overwrite:
        return None
    record, image = faces_dir / f"face_{index}.json", faces_dir / f"face_{index}.png"
    if not (record.is_file() and image.is_file()):
        return None
    try:
        saved = json.loads(record.read_text())["key"]
    except (OSError, ValueError, KeyError, TypeError):
        saved = None
    if saved != key:
        differ = sorted(k for k in set(key) | set(saved or {})
                        if (saved or {}).get(k) != key.get(k)) if isinstance(saved, dict) else ["all"]
        raise ValueError(f"{record} holds face {index} of {name} restored with other settings "
                         f"({', '.join(differ[:3])} differ): delete {faces_dir} or pass "
                         "--overwrite")
    return pil_to_tensor(open_image(image))                           # [1, 3, R, R]


def _save(faces_dir: Path, done: FaceRestoration, key: dict) -> None:
    """face_<i>.png (the restoration) then face_<i>.json (its key and geometry): the JSON
    last, so a face counts as done only when both are whole."""
    i = done.index
    write_file(faces_dir / f"face_{i}.png", to_pil(done.restored[0]).save, folder=faces_dir.parent)
    record = {"key": key, "landmarks": done.face.landmarks.tolist(),
              "quad": done.face.quad.tolist(), "native_px": round(done.face.native_size, 3),
              "factor": round(done.factor, 6)}
    write_file(faces_dir / f"face_{i}.json",
               lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"),
               folder=faces_dir.parent)


def restore_photo(G, photo: Union[str, os.PathLike, Image.Image], task: str, level: str = "M", *,
                  landmarks: Union[Sequence, LandmarkProvider, None] = None,
                  template: Union[str, Template, None] = None, face: Optional[int] = None,
                  factor: Optional[float] = None, mask: Optional[Image.Image] = None,
                  loss=None, seed: int = 0, steps=None, lr_scale=None, discrepancy=None,
                  progress: bool = True, name: str = "the photo",
                  output: Optional[PhotoOutput] = None, detector: Optional[str] = None,
                  on_face: Optional[Callable[[FaceRestoration], None]] = None,
                  settings: Optional[dict] = None) -> PhotoRestoration:
    """Find (or take) the faces of `photo`, restore each in its aligned frame, paste them back.

    photo: a PIL image or a file path (opened upright: EXIF rotation applied, as the CLI does).
    template: the generator's alignment, a Template or a generator name
    (`rusir.faces.align.template_for`; default G's own, `info(G).alignment`).
    factor: upsampling factor (default: inferred per face). mask: an inpainting mask the
    photo's size (white = known). steps, lr_scale, discrepancy: as `rusir.restore`.
    output: scale, paste and resumable per-face files (`PhotoOutput`). detector: "dlib" or
    "yunet" when landmarks are not given. on_face: called with each face once it is done.
    settings: extra JSON-able settings that key the saved faces (the CLI: generator, loss)."""
    if isinstance(photo, (str, os.PathLike)):
        name, photo = str(photo), open_image(photo)
    if not isinstance(photo, Image.Image):
        raise TypeError(f"restore_photo takes the photo as a PIL.Image or a path, got "
                        f"{type(photo).__name__}")
    output = output or PhotoOutput()
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
    photo, alpha = photo_rgb(photo)
    faces = find_faces(photo, landmarks, face, name, detector)
    natives = [_native_side(template, lm) for _, lm in faces]
    sides = [_target_side(R, n, factor) if upsampling else R for n in natives]
    for (index, _), native in zip(faces, natives):
        if native > R * 1.05:
            warnings.warn(f"{name}, face {index}: {native:.0f} px across, larger than the "
                          f"generator's {R} px: it is restored at {R} px and comes back "
                          "blurrier than the photo has it (use a larger generator)", stacklevel=2)
    scale = output_scale(photo.size, [R / n for n in sides] if upsampling else [], output)
    size = _output_size(photo, scale)                 # refused before any face is restored
    key = {"task": task, "level": level, "seed": seed, "factor": factor, "resolution": R,
           "template": template.name, "steps": list(steps) if steps else None,
           "lr_scale": lr_scale, "discrepancy": discrepancy, **(settings or {})}
    loss = default_loss(G) if loss is None else loss     # built once, for every face
    prepared = []
    for (index, lm), n in zip(faces, sides):              # every saved face checked first
        aligned = align(photo, lm, n, template)                       # [1, 3, n, n]
        known = None
        if mask is not None:                                          # warped with the face
            rgb = to_pil(pil_to_tensor(mask)[0])                      # alpha over white, as unaligned
            warped = warp_quad(rgb, aligned.quad, R, soft_pad=False)
            known = pil_to_tensor(warped).mean(1, keepdim=True)       # [1, 1, R, R]
        face_key = _face_key(key, aligned, known, index)
        saved = _reuse(output.faces_dir, index, face_key, output.overwrite, name)
        prepared.append((index, n, aligned, known, face_key, saved))
    done = []
    for index, n, aligned, known, face_key, saved in prepared:
        deg = photo_degradation(task, level, seed + index, R / n, known)
        if saved is not None:
            finished = FaceRestoration(index, aligned, deg, None, saved)
        else:
            result = restore(G, aligned.image.to(device), deg, loss=loss, seed=seed, steps=steps,
                             discrepancy=discrepancy, lr_scale=lr_scale, progress=progress)
            finished = FaceRestoration(index, aligned, deg, result)
            if output.faces_dir is not None:
                _save(output.faces_dir, finished, face_key)
        if on_face is not None:
            on_face(finished)
        done.append(finished)
    base = pil_to_tensor(photo.resize(size, Image.BICUBIC) if size != photo.size else photo)
    pasted = paste_all(base, [(f.face, f.restored) for f in done], scale=size[0] / photo.width,
                       how=output.paste)
    if alpha is not None:
        alpha = pil_to_tensor(alpha.resize(size, Image.BICUBIC).convert("RGB"))[:, :1]
    return PhotoRestoration(pasted, size[0] / photo.width, done, alpha)


def _native_side(template: Template, landmarks: np.ndarray) -> float:
    """The side, in photo pixels, of the generator's frame around this face."""
    lm = five_points(landmarks) if len(landmarks) == 68 else landmarks
    corners = template.frame(lm)
    return float(np.hypot(*(corners[3] - corners[0])))
