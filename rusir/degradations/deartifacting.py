"""Deartifacting: JPEG compression at low quality (spec 5.5).

True: Pillow (libjpeg) JPEG encode at quality 18, 15, 12, 9, 6 with Pillow's default chroma
subsampling, then decode. Pillow's default is 4:2:0; the authors' code asserts it, while the
paper's text reportedly says 4:2:2 -- we follow the code (spec 9.6) and fail loudly if
Pillow's default ever changes. Approximation: :class:`DifferentiableJPEG` with the tables
read from a Pillow JPEG at the same quality (natural orientation by default;
``authors_exact_tables=True`` reproduces the authors' transposed tables).
"""

from __future__ import annotations

from typing import Any

import torch

from ..validation import whole
from .base import DEFAULT_SEED, Degradation, Seed, from_pil, to_pil
from .jpeg import DifferentiableJPEG, pillow_jpeg_roundtrip


class Deartifacting(Degradation):
    """libjpeg compression at quality 18..6 (XS..XL); deterministic (the seed is unused)."""

    name = "deartifacting"
    LEVEL_PARAMS = {"XS": 18, "S": 15, "M": 12, "L": 9, "XL": 6}

    def __init__(self, level: str = "M", seed: Seed = DEFAULT_SEED, quality: int | None = None,
                 authors_exact_tables: bool = False, fancy_upsampling: bool = False,
                 round_k: float = 0.8) -> None:
        super().__init__(level, seed)
        self.quality = whole(quality if quality is not None else self.LEVEL_PARAMS[level],
                             "JPEG quality", 1, 100, None)
        self.jpeg = DifferentiableJPEG(self.quality, authors_exact_tables=authors_exact_tables,
                                       round_k=round_k, fancy_upsampling=fancy_upsampling)

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        return torch.stack([from_pil(pillow_jpeg_roundtrip(to_pil(img), self.quality), img)
                            for img in x])

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        return self.jpeg.to(x.device)(x)

    def params(self) -> dict[str, Any]:
        return {"quality": self.quality, "chroma_subsampling": "4:2:0",
                "authors_exact_tables": self.jpeg.authors_exact_tables,
                "fancy_upsampling": self.jpeg.fancy_upsampling, "round_k": self.jpeg.round_k}
