"""A test set's manifest: what each face PNG is, where it came from, and how to check it.

`rusir data build` (`rusir.faces.testset`) writes a folder of aligned faces and `manifest.json`
beside them; this module is the part that needs no detector or generator: file hashes, the
perceptual hash that finds duplicates, the EXIF capture date, and reading and verifying a
manifest. `rusir bench --images DIR` records the sha256 of DIR's manifest in bench.json
(`manifest_hash`) after checking every face against it, so a benchmark names the exact set.

manifest.json fields: `format`, `template`, `resolution`, `detector`, `min_face`,
`dedup_bits`, `exclude_before`, `keep_undated`, `faces` (per written PNG: `file`, `sha256`,
`source` (relative to the photos folder), `source_sha256`, `face` (index in that photo),
`landmarks` [5, 2] and `quad` [4, 2] in the source's upright pixels, `native_size` px,
`dhash`, `date`) and `skipped` (per face or photo left out: `source`, `face`, `reason`).
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from ..validation import file_name, read_json, relative_path, side
from .inputs import regular_file

__all__ = ["MANIFEST", "FORMAT", "sha256_file", "dhash", "hamming", "exif_date", "parse_date",
           "read_manifest", "verify", "manifest_hash", "dumps"]

MANIFEST = "manifest.json"
FORMAT = "rusir-faces/1"
DHASH_SIDE = 16              # 16 x 16 gradient signs: a 256-bit hash
EXIF_IFD, DATE_TIME_ORIGINAL = 0x8769, 36867

PathLike = Union[str, Path]


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(regular_file(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dhash(image: Image.Image, side: int = DHASH_SIDE) -> str:
    """Difference hash (hex, side*side bits): the image in grey reduced to (side+1) x side, one
    bit per horizontal neighbour pair (left brighter than right). Near-identical pictures (the
    same face re-encoded, rescaled, slightly shifted) differ in few bits; different faces in
    about half of them."""
    grey = np.asarray(image.convert("L").resize((side + 1, side), Image.LANCZOS), dtype=np.int16)
    bits = (grey[:, :-1] > grey[:, 1:]).flatten()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):0{side * side // 4}x}"


def hamming(a: str, b: str) -> int:
    """Bits in which two hex hashes of one length differ."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def exif_date(path: PathLike) -> Optional[datetime]:
    """The EXIF DateTimeOriginal (when the picture was taken), or None when the file has none
    (or an unreadable one: a date that is not `YYYY:MM:DD HH:MM:SS`)."""
    with Image.open(regular_file(path)) as im:
        value = im.getexif().get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL)
    try:
        return datetime.strptime(str(value).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except (TypeError, ValueError):
        return None


def parse_date(text: str, what: str = "--exclude-before") -> date:
    """A YYYY-MM-DD date, or a one-line ValueError."""
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise ValueError(f"{what} must be a date YYYY-MM-DD, got {text!r}") from None


def read_manifest(folder: PathLike) -> dict:
    """A set's manifest, checked before any file it names is opened (a one-line ValueError): its
    format, `template` and `resolution`, and per face a plain `file` name in the folder (listed
    once), a sha256 and a `source` path that stays inside the photos folder, so that a crafted
    manifest ("../../etc/passwd") can never make rusir read outside either folder."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise ValueError(f"{folder} has no {MANIFEST}: not a set built by `rusir data build`")
    data = read_json(regular_file(path, MANIFEST), str(path), finite=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} manifest")
    faces = data.get("faces")
    if not isinstance(faces, list) or not all(isinstance(f, dict) for f in faces):
        raise ValueError(f"{path}: `faces` must be a list of {{file, sha256, ...}}")
    seen: set[str] = set()
    for i, face in enumerate(faces):
        name = file_name(face.get("file"), f"{path}: faces[{i}].file")
        if name.casefold() in seen:
            raise ValueError(f"{path}: {name} is listed twice")
        seen.add(name.casefold())
        if not isinstance(face.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", face["sha256"]):
            raise ValueError(f"{path}: {name}: sha256 must be 64 hex digits")
        if face.get("source") is not None:
            relative_path(face["source"], f"{path}: {name}: source")
    side(data.get("resolution"), f"{path}: resolution")
    if not isinstance(data.get("template"), str):
        raise ValueError(f"{path}: template must be a template's name")
    return data


def verify(folder: PathLike) -> list[str]:
    """What is wrong with a set (empty: it is the set its manifest describes): a face file
    missing or altered (its sha256 differs), and any PNG in the folder the manifest does not
    list. A manifest naming a file outside the folder is refused (`read_manifest`)."""
    folder = Path(folder)
    data = read_manifest(folder)
    problems, listed = [], set()
    for face in data["faces"]:
        name = face["file"]
        path = folder / name
        listed.add(name)
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != face["sha256"]:
            problems.append(f"{name}: altered (its sha256 is not the manifest's)")
    extra = sorted(p.name for p in folder.glob("*.png") if p.name not in listed)
    problems += [f"{name}: not in the manifest" for name in extra]
    return problems


def manifest_hash(folder: PathLike) -> Optional[str]:
    """sha256 of `folder`'s manifest when it has one (after `verify`: a set that does not match
    its manifest is refused in one line), else None (a plain folder of images)."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        return None
    problems = verify(folder)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"image set {folder} does not match its {MANIFEST}: {problems[0]}{more}; "
                         "rebuild it with `rusir data build` or check it with `rusir data verify`")
    return sha256_file(folder / MANIFEST)


def dumps(data: dict) -> str:
    """The manifest's text: stable key order, one face per block, so two builds diff cleanly."""
    return json.dumps(data, indent=1, sort_keys=True) + "\n"
