"""Reading images: any file or PIL image to a ``[1, 3, size, size]`` tensor, and the
held-out avatar set shipped in ``rusir/assets/heldout/`` (no renderer needed)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..validation import side
from .inputs import regular_file

HELDOUT_DIR = "assets/heldout"


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB version of any PIL mode; transparency is composited over white."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        scale = 257.0 if img.mode.startswith("I;16") or a.max() > 255 else 1.0
        img = Image.fromarray(np.clip(np.round(a / scale), 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        check_finite(img, "the image")
        a = np.asarray(img, dtype=np.float64)
        a = a * 255.0 if a.max() <= 1.0 else a
        img = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        return white.convert("RGB")
    return img.convert("RGB")


def _center_crop_square(img: Image.Image) -> Image.Image:
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s))


class ImageFileError(ValueError):
    """A path that is not a readable image (corrupt, not an image, a folder, too large, ...)."""


class MissingImageError(ImageFileError, FileNotFoundError):
    """An image path that does not exist (a ValueError like the others, and a FileNotFoundError)."""


def check_finite(img: Image.Image, what: str) -> None:
    """Refuse a float image ('F', e.g. a float TIFF) with NaN or infinite pixels: one of them
    made the whole image read as almost black (its maximum decides the scale), and restoring
    that gave back a plausible face with no error."""
    if img.mode == "F":
        bad = int(np.count_nonzero(~np.isfinite(np.asarray(img))))
        if bad:
            raise ImageFileError(f"{what} has {bad} non-finite pixel(s) (NaN or infinity); "
                                 "a float image must hold numbers")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def open_image(path: Union[str, os.PathLike]) -> Image.Image:
    """Open an image file fully decoded, upright (EXIF orientation applied), in its own mode.

    Every way a path can fail to be an image -- missing, a folder, unreadable, corrupt or
    truncated, not an image, or over Pillow's decompression-bomb limit (twice
    ``PIL.Image.MAX_IMAGE_PIXELS``; over once, Pillow only warns) -- raises one
    ``ImageFileError`` (a ``ValueError``; a ``FileNotFoundError`` too when missing) whose
    one-line message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise MissingImageError(f"no such image file: {path}")
    regular_file(path, "image file", ImageFileError)   # a FIFO, a device, a folder: not opened
    try:
        with Image.open(path) as f:
            img = ImageOps.exif_transpose(f)  # a loaded copy, upright
            img.load()
    except Image.DecompressionBombError as exc:
        raise ImageFileError(f"{path} is too large to open safely: {_one_line(exc)} (raise "
                             "PIL.Image.MAX_IMAGE_PIXELS if the file is trusted)") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageFileError(f"cannot read {path} as an image: {_one_line(exc)}") from exc
    check_finite(img, str(path))
    return img


def load_image(path_or_pil, size: int = 64) -> torch.Tensor:
    """Open an image (path or ``PIL.Image``) as a float tensor ``[1, 3, size, size]`` in
    [0, 1]: EXIF orientation applied, any mode converted to RGB (alpha composited over
    white), centre-cropped to a square and resized to ``size`` with an area (box) filter
    when shrinking, Lanczos when enlarging.

    A path that is not a readable image raises a ``ValueError`` with a one-line message
    naming the file (see ``open_image``; a missing one is also a ``FileNotFoundError``).
    """
    if isinstance(path_or_pil, Image.Image):
        img = path_or_pil
        img.load()
    elif isinstance(path_or_pil, (str, os.PathLike)):
        img = open_image(path_or_pil)
    else:
        raise TypeError(f"load_image expects a path or a PIL.Image, got {type(path_or_pil).__name__}")
    size = side(size, "load_image size")
    if img.width == 0 or img.height == 0:
        raise ValueError("cannot load an empty (0-pixel) image")
    img = _center_crop_square(to_rgb(img))
    if img.width != size:
        resample = Image.BOX if img.width > size else Image.LANCZOS
        img = img.resize((size, size), resample)
    return pil_to_tensor(img)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An 8-bit PIL image as [1, 3, H, W] float32 in [0, 1] (RGB; alpha composited over white)."""
    a = np.asarray(to_rgb(img), dtype=np.uint8).copy()
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def heldout_paths() -> list[Path]:
    """Paths of the shipped held-out PNGs, sorted (``0000.png`` is seed 2_000_000_000)."""
    root = resources.files("rusir").joinpath(HELDOUT_DIR)
    try:
        entries = [p for p in root.iterdir() if p.name.endswith(".png")]
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    if not entries:
        raise FileNotFoundError(
            f"no held-out PNGs found in the rusir package ({root}); the package data "
            "'assets/heldout/*.png' is missing from this installation"
        )
    return [Path(str(p)) for p in sorted(entries, key=lambda p: p.name)]


def heldout(n: int | None = None, size: int = 64) -> torch.Tensor:
    """The first ``n`` (default: all) shipped held-out avatars as ``[n, 3, size, size]``
    float32 in [0, 1], in file-name order. Raises ``ValueError`` if more are requested
    than are shipped."""
    paths, size = heldout_paths(), side(size, "size")
    if n is None:
        n = len(paths)
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if n > len(paths):
        raise ValueError(
            f"requested {n} held-out images but only {len(paths)} are shipped in "
            f"rusir/{HELDOUT_DIR}; render more with rusir.data.render(2_000_000_000 + i) "
            "(pip install 'rusir[train]')"
        )
    if n == 0:
        return torch.empty(0, 3, size, size)
    return torch.cat([load_image(p, size) for p in paths[:n]], dim=0)


def pick_image(image: Union[int, str, Path] = 0, size: int = 64) -> torch.Tensor:
    """A clean image ``[1, 3, size, size]``: held-out image number ``image`` (an int, or a string
    of digits), or the path of an image file of one's own."""
    if isinstance(image, (str, Path)) and not str(image).lstrip("-").isdigit():
        return load_image(image, size)
    index, paths = int(image), heldout_paths()
    if not 0 <= index < len(paths):
        raise ValueError(f"held-out image index must be in 0..{len(paths) - 1}, got {index}")
    return load_image(paths[index], size)
