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
from ..validation import MAX_RATE, number, step_counts
from .latents import SPACES

PAPER_STEPS: tuple[int, int, int] = (150, 150, 150)            # W, W+, W++
PAPER_LRS: tuple[float, float, float] = (0.08, 0.02, 0.005)    # W, W+, W++ (x lr_scale)


def _pick(full: Sequence, spaces: Sequence[str]) -> tuple:
    """The entries of a W/W+/W++ triple for the phases in `spaces`."""
    return tuple(full[SPACES.index(s)] for s in spaces)


def check_steps(steps, n: Optional[int] = None, what: str = "steps") -> tuple[int, ...]:
    """Step counts as ints: each a whole number in [0, MAX_STEPS] (0 skips that phase: it passes
    its start latent on; all zeros give the start image, like a baseline's steps=0), and `n` of
    them when given (rusir.validation.step_counts). Anything else is a ValueError."""
    return step_counts(steps, n, what)


def check_rate(value, what: str = "lr_scale") -> float:
    """A learning rate or scale as a float: finite, > 0 and at most MAX_RATE, else a ValueError
    naming `what`."""
    return number(value, what, 0.0, MAX_RATE, "MAX_RATE")


def resolve(G, spaces: Sequence[str] = SPACES, steps: Optional[Sequence[int]] = None,
            lrs: Optional[Sequence[float]] = None, lr_scale: Optional[float] = None
            ) -> tuple[tuple[int, ...], tuple[float, ...], float]:
    """(steps, lrs, lr_scale) for the phases `spaces`: given values win; else G's own
    (`info(G).steps` / `.lrs` / `.lr_scale`); else the paper's.

    Checked here, so every caller (restore, the benchmark, the command line) refuses the same
    things before any step: one step count and one rate per phase; steps whole numbers >= 0
    (0 skips a phase; `check_steps`); rates and lr_scale finite and > 0 (`check_rate`)."""
    own = info(G)
    steps = _pick(own.steps or PAPER_STEPS, spaces) if steps is None else steps
    lrs = _pick(own.lrs or PAPER_LRS, spaces) if lrs is None else lrs
    lr_scale = own.lr_scale if lr_scale is None else lr_scale
    steps = check_steps(steps, len(spaces))
    if isinstance(lrs, (str, bytes)) or not hasattr(lrs, "__iter__") or len(tuple(lrs)) != len(spaces):
        raise ValueError(f"lrs: need one learning rate per phase {tuple(spaces)}, got {lrs!r}")
    lrs = tuple(check_rate(r, "lrs") for r in lrs)
    return steps, lrs, check_rate(lr_scale, "lr_scale")
