"""RUSIR's per-phase step counts and learning rates: the paper's, or a generator's own.

The paper runs 150 steps per phase at 0.08 (W), 0.02 (W+) and 0.005 (W++), times one
`global_lr_scale`, for every task and level (spec section 3), and notes that other generators
may need other rates. A named generator may therefore have its own schedule (still one set for
every task and level), recorded as data in its `GeneratorInfo` (rusir.model.generators.info);
official generators keep the paper's.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..model.generators import info
from .latents import SPACES

PAPER_STEPS: tuple[int, int, int] = (150, 150, 150)            # W, W+, W++
PAPER_LRS: tuple[float, float, float] = (0.08, 0.02, 0.005)    # W, W+, W++ (x lr_scale)


def _pick(full: Sequence, spaces: Sequence[str]) -> tuple:
    """The entries of a W/W+/W++ triple for the phases in `spaces`."""
    return tuple(full[SPACES.index(s)] for s in spaces)


def resolve(G, spaces: Sequence[str] = SPACES, steps: Optional[Sequence[int]] = None,
            lrs: Optional[Sequence[float]] = None, lr_scale: Optional[float] = None
            ) -> tuple[tuple[int, ...], tuple[float, ...], float]:
    """(steps, lrs, lr_scale) for the phases `spaces`: given values win; else G's own
    (`info(G).steps` / `.lrs` / `.lr_scale`); else the paper's."""
    own = info(G)
    steps = _pick(own.steps or PAPER_STEPS, spaces) if steps is None else tuple(steps)
    lrs = _pick(own.lrs or PAPER_LRS, spaces) if lrs is None else tuple(lrs)
    lr_scale = float(own.lr_scale if lr_scale is None else lr_scale)
    return tuple(int(n) for n in steps), tuple(float(r) for r in lrs), lr_scale
