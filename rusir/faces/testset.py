"""Build a test set like the paper's FFHQ-X: every face of a folder of photos, aligned as the
generator's training data were, filtered and deduplicated, with a manifest to rebuild and verify.

FFHQ-X is "100 additional test images ... using the same alignment script", taken after FFHQ was
collected so that none is in the generator's training set. `build_testset` does that for any
folder of photos (`rusir data build`):

1. photos are read upright (EXIF orientation applied), sorted by path (one that cannot be read
   is skipped, saying why); with `exclude_before`,
   a photo whose EXIF DateTimeOriginal is earlier is skipped, and so is a photo with no EXIF
   date unless `keep_undated` (an undated photo cannot show it is new);
2. each face's landmarks come from the detector (`find_faces`: dlib's 68 points, reduced to
   FFHQ's five by the alignment, or YuNet's five) or from a JSON file {file name: [[x, y] x 5,
   ...]} (paths relative to the photos folder);
3. a face whose generator frame is smaller than `min_face` photo pixels (default: the output
   size, so that no test image is an enlargement) is skipped;
4. the face is aligned at the generator's resolution with its template (`align`), and a face
   whose difference hash is within `dedup_bits` bits of a face already kept is skipped as a
   duplicate (the same photo twice, or re-encoded, or resized);
5. kept faces are written as `0000.png`, `0001.png`, ... and `manifest.json` last
   (`rusir.data.manifest`: source, landmarks, crop quad, sha256 of every PNG, detector,
   template), with every skipped face and why.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from ..data.images import ImageFileError, open_image
from ..data.manifest import (FORMAT, MANIFEST, dhash, dumps, exif_date, hamming, parse_date,
                             read_manifest, sha256_file)
from ..data.outputs import OutputClaims, check_output, write_file, write_text
from ..model.generators import REGISTRY
from ..validation import MAX_IMAGE_SIDE, number, read_json, side, whole
from .align import TEMPLATES, Template, align, check_landmarks, template_for
from .photo import find_faces

__all__ = ["BuildConfig", "build_testset", "rebuild_differences", "PHOTO_EXTENSIONS"]

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")
DEFAULT_DEDUP_BITS = 32   # of 256 dHash bits; avatars re-placed at another scale and angle: <= 24, different faces: >= 69


@dataclass(frozen=True)
class BuildConfig:
    """What `build_testset` does, checked once (`check`)."""
    photos: Path
    out: Path
    generator: Union[str, Template] = "toyfaces64"   # its template and (if registered) its resolution
    size: Optional[int] = None             # output side; None: the registered generator's
    min_face: Optional[float] = None       # photo px of the frame; None: the output side
    dedup_bits: int = DEFAULT_DEDUP_BITS   # 0: only identical hashes are duplicates
    exclude_before: Optional[date] = None
    keep_undated: bool = False
    landmarks: Optional[Path] = None       # JSON {file: [faces]}; None: the detector
    detector: Optional[str] = None         # "dlib" | "yunet"; None: the one that works offline
    overwrite: bool = False

    def check(self) -> "BuildConfig":
        """The config with defaults filled in, or a one-line ValueError."""
        photos = Path(self.photos)
        if not photos.is_dir():
            raise ValueError(f"--photos {photos}: not a folder")
        template = template_for(self.generator)          # AFHQ refused here
        size = self.size
        if size is None:
            if self.generator not in REGISTRY:
                raise ValueError(f"--size is needed for generator {self.generator!r} (its "
                                 "resolution is known only once loaded)")
            size = REGISTRY[self.generator].resolution
        size = side(size, "--size")
        min_face = float(size) if self.min_face is None else number(
            self.min_face, "--min-face (px)", 0.0, MAX_IMAGE_SIDE, "MAX_IMAGE_SIDE", strict=False)
        exclude = self.exclude_before
        if exclude is not None and not isinstance(exclude, date):
            exclude = parse_date(exclude)
        return replace(self, photos=photos, out=Path(self.out), generator=template.name,
                       size=size, min_face=min_face,
                       dedup_bits=whole(self.dedup_bits, "--dedup-bits (of 256 bits)", 0, 256, None),
                       exclude_before=exclude, keep_undated=bool(self.keep_undated),
                       landmarks=None if self.landmarks is None else Path(self.landmarks),
                       detector=self._detector(), overwrite=bool(self.overwrite))

    def _detector(self) -> Optional[str]:
        """The detector's name (checked), or None when the landmarks are given."""
        if self.landmarks is not None:
            return None
        from . import detect        # dlib / OpenCV are optional: only their names are read here
        name = self.detector or detect.default_detector()
        detect.detector(name)       # an unknown name: one line
        return name


def _photos(folder: Path, out: Path) -> list[Path]:
    """The photos under `folder`, sorted; none from the output folder (it may lie inside)."""
    out = out.resolve()
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_EXTENSIONS
                  and out not in p.resolve().parents)


def _given_landmarks(path: Optional[Path]) -> Optional[dict]:
    if path is None:
        return None
    data = read_json(path, f"--landmarks {path}", finite=True)
    if not isinstance(data, dict):
        raise ValueError(f"--landmarks {path}: expected {{photo file name: list of faces}}")
    return data


def _date_skip(path: Path, config: BuildConfig) -> tuple[Optional[str], Optional[str]]:
    """(the photo's EXIF date or None, the reason to skip it or None)."""
    taken = exif_date(path)
    if config.exclude_before is None:
        return (taken.isoformat() if taken else None), None
    if taken is None:
        return None, None if config.keep_undated else "no EXIF DateTimeOriginal (--keep-undated keeps it)"
    if taken.date() < config.exclude_before:
        return taken.isoformat(), f"taken {taken.date()} before {config.exclude_before}"
    return taken.isoformat(), None


def _png_bytes(image: Image.Image) -> bytes:
    """The PNG a face is written as (fixed encoder settings: a rebuild gives the same bytes)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _aligned_pil(photo: Image.Image, landmarks: np.ndarray, config: BuildConfig):
    face = align(photo, landmarks, config.size, config.generator)
    arr = (face.image[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return face, Image.fromarray(arr, "RGB")


def build_testset(config: BuildConfig, progress: bool = True) -> dict:
    """Build the set (module doc); returns the manifest written to `out/manifest.json`."""
    config = config.check()
    given = _given_landmarks(config.landmarks)
    check_output(config.out / MANIFEST, config.overwrite)          # before any work
    if config.out.exists() and any(config.out.glob("*.png")) and not config.overwrite:
        raise ValueError(f"--out {config.out} already holds PNGs: choose an empty folder or --overwrite")
    # one build per folder: the manifest claimed first, so a second build into it is refused
    with OutputClaims(config.out, [config.out / MANIFEST], config.overwrite):
        return _build(config, given, progress)


def _build(config: BuildConfig, given: Optional[dict], progress: bool) -> dict:
    """`build_testset`'s work, once its folder is claimed."""
    faces, skipped, hashes = [], [], []
    for path in _photos(config.photos, config.out):
        source = path.relative_to(config.photos).as_posix()
        try:
            photo = open_image(path).convert("RGB")
        except ImageFileError as exc:   # one corrupt file does not stop the set
            skipped.append({"source": source, "face": None, "reason": str(exc)})
            continue
        taken, reason = _date_skip(path, config)
        if reason:
            skipped.append({"source": source, "face": None, "reason": reason})
            continue
        if given is not None and source not in given:
            skipped.append({"source": source, "face": None, "reason": "no entry in --landmarks"})
            continue
        try:
            located = find_faces(photo, None if given is None else given[source], None,
                                 name=source, detector=config.detector)
        except ImportError as exc:      # no detector installed: one line, saying how
            raise ValueError(str(exc)) from None
        except ValueError as exc:       # no face found: recorded, not fatal for the set
            if given is not None and given[source]:
                raise                   # a malformed landmark set the user gave: refused
            skipped.append({"source": source, "face": None, "reason": str(exc)})
            continue
        for index, lm in located:
            entry = _face_entry(photo, path, source, index, lm, taken, config, faces, hashes)
            (faces if "file" in entry else skipped).append(entry)
            if progress and "file" in entry:
                print(f"{entry['file']}: {source} face {index}", flush=True)
    manifest = {"format": FORMAT, "template": config.generator, "resolution": config.size,
                "detector": _detector_name(config), "min_face": config.min_face,
                "dedup_bits": config.dedup_bits,
                "exclude_before": config.exclude_before and config.exclude_before.isoformat(),
                "keep_undated": config.keep_undated, "faces": faces, "skipped": skipped}
    write_text(config.out / MANIFEST, dumps(manifest), config.overwrite)
    return manifest


def _face_entry(photo: Image.Image, path: Path, source: str, index: int, lm: np.ndarray,
                taken: Optional[str], config: BuildConfig, faces: list, hashes: list) -> dict:
    """Align one face and write it, or say why it is skipped (too small, a duplicate)."""
    frame = template_for(config.generator).frame(lm)
    native = float(np.hypot(*(frame[3] - frame[0])))
    if native < config.min_face:
        return {"source": source, "face": index,
                "reason": f"face frame {native:.1f} px < --min-face {config.min_face:g} px"}
    face, image = _aligned_pil(photo, lm, config)
    code = dhash(image)
    for kept, other in zip(faces, hashes):
        if hamming(code, other) <= config.dedup_bits:
            return {"source": source, "face": index,
                    "reason": f"duplicate of {kept['file']} ({hamming(code, other)} dHash bits apart)"}
    name = f"{len(faces):04d}.png"
    data = _png_bytes(image)
    write_file(config.out / name, lambda tmp: tmp.write_bytes(data), config.overwrite)
    hashes.append(code)
    return {"file": name, "sha256": sha256_file(config.out / name), "source": source,
            "source_sha256": sha256_file(path), "face": index,
            "landmarks": face.landmarks.tolist(),          # full precision: a rebuild is exact
            "quad": face.quad.tolist(), "native_size": round(native, 2),
            "dhash": code, "date": taken}


def _detector_name(config: BuildConfig) -> str:
    if config.landmarks is not None:
        return f"landmarks file {config.landmarks.name} (sha256 {sha256_file(config.landmarks)})"
    return config.detector


def rebuild_differences(folder: Union[str, Path], photos: Union[str, Path]) -> list[str]:
    """Re-align every face of a set from its source photo and recorded landmarks and compare
    pixels with the PNG: what differs (a source photo changed or missing, a face that does not
    come out the same). Needs no detector: the landmarks are the manifest's."""
    folder, photos = Path(folder), Path(photos)
    data = read_manifest(folder)
    template = TEMPLATES.get(data["template"], data["template"])      # the very template used
    config = BuildConfig(photos, folder, template, data["resolution"]).check()
    problems = []
    for face in data["faces"]:
        source = photos / face["source"]
        if not source.is_file():
            problems.append(f"{face['file']}: source {face['source']} missing")
            continue
        if sha256_file(source) != face.get("source_sha256"):
            problems.append(f"{face['file']}: source {face['source']} changed (sha256)")
            continue
        photo = open_image(source).convert("RGB")
        _, image = _aligned_pil(photo, check_landmarks(face["landmarks"]), config)
        written = np.asarray(open_image(folder / face["file"]).convert("RGB"))
        if not np.array_equal(np.asarray(image), written):
            problems.append(f"{face['file']}: re-aligned from {face['source']} differs")
    return problems
