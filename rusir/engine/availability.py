"""Which metrics cannot be computed on this machine (missing weights or packages), remembered:
`MetricCache` is the one such memory, shared by the per-item metrics of the runner and the set
metrics of the report (`rusir.engine.records` re-exports it)."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from torch import Tensor

from ..metrics import PER_IMAGE_METRICS, MetricUnavailable
from ..model.weights import MissingWeightsError

__all__ = ["MetricCache", "UNAVAILABLE"]

# Exceptions meaning "this metric cannot be computed on this machine" (remembered, not retried).
UNAVAILABLE = (MissingWeightsError, MetricUnavailable)


class MetricCache:
    """Which metrics cannot be computed here, remembered: a metric found unavailable once
    (UNAVAILABLE: missing weights or package) is not retried on every item or cell. A ValueError
    (e.g. an image too small for the metric, FID on one image) is reported but not remembered."""

    def __init__(self):
        self.reasons: dict[str, str] = {}

    def compute(self, name: str, fn: Callable[[], Any]) -> tuple[Any, Optional[str]]:
        """(fn(), None), or (None, why not)."""
        if name in self.reasons:
            return None, self.reasons[name]
        try:
            return fn(), None
        except UNAVAILABLE as exc:
            self.reasons[name] = f"{type(exc).__name__}: {exc}"
            return None, self.reasons[name]
        except ValueError as exc:
            return None, f"ValueError: {exc}"

    def item_metrics(self, names: Sequence[str], pred: Tensor, gt: Tensor, degraded: Tensor,
                     target: Tensor) -> tuple[dict, dict]:
        """Per-image metrics of one item ([1, 3, H, W] each): `accuracy_<m>` (prediction vs ground
        truth) and `fidelity_<m>` (true degradation of the prediction vs target) -> (values,
        {key: reason} of those that are None)."""
        values: dict[str, Optional[float]] = {}
        unavailable: dict[str, str] = {}
        for kind, a, b in (("accuracy", pred, gt), ("fidelity", degraded, target)):
            for name in names:
                key = f"{kind}_{name}"
                values[key], reason = self.compute(
                    name, lambda: float(PER_IMAGE_METRICS[name](a, b).detach().reshape(-1)[0]))
                if reason is not None:
                    unavailable[key] = reason
        return values, unavailable
