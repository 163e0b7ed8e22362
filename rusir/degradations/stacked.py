"""Several degradations side by side over one batch: a combinator for studies that restore many
settings at once.

A batch's images are restored independently (`tests/test_batch_independence.py`), so restoring
the targets of several (task, level) settings as ONE batch, slice k degraded by degradation k,
gives each slice what restoring that setting alone gives, in fewer, larger steps. The settings
of one batch must share a target size (`rusir.studies.robustness.settings_by_target_side`).
`restore` sees a `Stacked` as any degradation: `degrade_prediction` (the loss), `mask` and
`redraw` (the discrepancy stop's floor).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

__all__ = ["Stacked"]


class Stacked:
    """Slice k of a batch ([sum n_k, 3, H, W]) degraded by degradation k, for `parts` =
    [(degradation_k, n_k), ...]. The mask joins the parts' masks; an unmasked part's slice is
    ones (a loss with an all-ones mask equals one without: inpainting's term masks by
    multiplication). `mask` is that of the last call, as a single degradation's is."""

    def __init__(self, parts: Sequence[tuple[object, int]]) -> None:
        if not parts or any(n < 1 for _, n in parts):
            raise ValueError("Stacked needs at least one (degradation, n >= 1) part")
        self.parts = list(parts)
        self.mask: Optional[torch.Tensor] = None

    @property
    def batch(self) -> int:
        return sum(n for _, n in self.parts)

    def degrade_ground_truth(self, x: torch.Tensor) -> torch.Tensor:
        return self._each(lambda deg, part: deg.degrade_ground_truth(part), x)

    def degrade_prediction(self, x: torch.Tensor) -> torch.Tensor:
        return self._each(lambda deg, part: deg.degrade_prediction(part), x)

    def redraw(self, x: torch.Tensor, draw: int = 0) -> torch.Tensor:
        """Each slice's true degradation drawn afresh (the discrepancy stop's floor)."""
        return self._each(lambda deg, part: deg.redraw(part, draw), x)

    def _each(self, apply: Callable, x: torch.Tensor) -> torch.Tensor:
        """`apply(degradation k, slice k)` per slice, joined; the masks joined likewise."""
        if x.shape[0] != self.batch:
            raise ValueError(f"Stacked expects a batch of {self.batch} images, got {x.shape[0]}")
        outs, masks, i = [], [], 0
        for deg, n in self.parts:
            outs.append(apply(deg, x[i:i + n]))                      # [n, 3, h, w]
            masks.append(getattr(deg, "mask", None))                 # [n, 1, h, w] or None
            i += n
        y = torch.cat(outs)
        self.mask = None
        if any(m is not None for m in masks):
            self.mask = torch.cat([m if m is not None else y.new_ones(o.shape[0], 1, *o.shape[-2:])
                                   for m, o in zip(masks, outs)])
        return y
