"""Compositions of the tasks, always in the order U -> N -> A -> P (spec 5.7) -> G.

Grayscale (G, not one of the paper's tasks) comes last: whatever happened to a black-and-white
photo before, the file a user has holds luminance only, so the target is exactly grey (and G
after A is the luma JPEG kept: `rusir.degradations.grayscale`). `COMPOSITIONS` stays the
paper's eleven; any ordered initials compose (`UG`, `UNAPG`).

Each stage's true degradation is re-serialised to 8 bits before the next stage, as the
authors write every stage to a file. The approximation is the chain of the stage
approximations. Every stage is prepared at the composition's input resolution (the
inpainting mask is drawn there and bicubic-resized to the stage's size, e.g. 128 px after
8x downsampling), and all stages share the composition's seed: each task salts it with its
own name, so a composition equals the manual chain of its stages built with the same seed.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import torch

from .base import DEFAULT_SEED, Degradation, Seed, cycle_8bit
from .inpainting import resize_mask

PAPER_ORDER = "UNAP"
ORDER = PAPER_ORDER + "G"                 # every initial, in the order a chain applies them
COMPOSITIONS: tuple[str, ...] = tuple(
    "".join(c) for n in (2, 3, 4) for c in combinations(PAPER_ORDER, n)
)  # the paper's: UN, UA, UP, NA, NP, AP, UNA, UNP, UAP, NAP, UNAP


class Composition(Degradation):
    """A chain of degradations applied in order; the mask is the last stage's."""

    name = "composition"

    def __init__(self, stages: list[Degradation], name: str | None = None,
                 level: str | None = None, seed: Seed = DEFAULT_SEED) -> None:
        if len(stages) < 1:
            raise ValueError("a composition needs at least one stage")
        super().__init__(None, seed)
        self.level = level
        self.stages = list(stages)
        self.name = name or "+".join(s.name for s in stages)
        self._out_shape: tuple[int, int] | None = None

    def prepare(self, height: int, width: int, seeds: list[int], device: torch.device) -> None:
        for stage in self.stages:
            stage.prepare(height, width, seeds, device)
        self._out_shape = self.target_shape(height, width)

    def target_shape(self, height: int, width: int) -> tuple[int, int]:
        for stage in self.stages:
            height, width = stage.target_shape(height, width)
        return height, width

    @property
    def mask(self) -> torch.Tensor | None:
        m = self.stages[-1].mask
        if m is None or self._out_shape is None:
            return m
        return resize_mask(m, *self._out_shape)

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        for stage in self.stages:  # each stage is written to an 8-bit file in turn
            x = stage.true_degradation(x.clamp(0, 1), seeds)
            x = cycle_8bit(x) if stage.serialise else x
        return x

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage.approximation(x)
        return x

    def params(self) -> dict[str, Any]:
        return {"length": len(self.stages), "stages": [s.describe() for s in self.stages]}
