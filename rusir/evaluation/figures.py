"""Image grids for figures: rows of [0, 1] tensors with column labels, saved as PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor


def to_uint8(img: Tensor) -> np.ndarray:
    """[3, H, W] in ~[0, 1] -> HxWx3 uint8 (clamped and rounded: for display only)."""
    return (img.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def to_pil(img: Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(img))


def fit(img: Tensor, size: int) -> Tensor:
    """[3, h, w] -> [3, size, size]; small images (low-res targets) are enlarged by nearest."""
    if img.shape[-1] == size:
        return img
    mode = "nearest" if img.shape[-1] < size else "area"
    return F.interpolate(img[None].float(), size=(size, size), mode=mode)[0]


def image_grid(rows: Sequence[Sequence[Tensor]], labels: Sequence[str] = (), cell: int = 128,
               pad: int = 2) -> Image.Image:
    """A grid of images (each [3, h, w] in [0, 1]) with optional column labels on top."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    header = 14 if labels else 0
    canvas = Image.new("RGB", (n_cols * (cell + pad) + pad, header + n_rows * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(labels):
        draw.text((pad + j * (cell + pad) + 2, 1), label, fill=(0, 0, 0))
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            tile = to_pil(fit(img, cell))
            canvas.paste(tile, (pad + j * (cell + pad), header + pad + i * (cell + pad)))
    return canvas


def save_grid(path: Union[str, Path], rows: Sequence[Sequence[Tensor]], labels: Sequence[str] = (),
              cell: int = 128) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(rows, labels, cell).save(path)
    return path
