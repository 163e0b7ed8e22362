"""Warm-start a wider network from a trained narrower one, computing the same function.

Why: on a CPU budget a small generator is trained first; when its capacity becomes the limit
(here: W++ identity inversion saturates), training a wider one from scratch would throw the
finished work away. Widening keeps it (the "zero-init" form of Net2Net):

* every old weight is copied into the leading slice of the new tensor;
* new *output* channels keep their fresh initialisation (they start learning at once);
* weights that *read* a new input channel start at zero, so the new channels do not change
  any old output until training moves those weights.

Layers with an equalised-learning-rate gain 1/sqrt(fan_in) (toRGB, the discriminator's convs)
would see their old weights shrink when fan_in grows, so copied weights are scaled by
sqrt(new_in / old_in); demodulated StyleGAN2 convs are invariant to that scale anyway.
The result is exact up to float rounding (tests/test_widen.py checks G and D outputs).
"""
from __future__ import annotations

import math
from typing import Mapping

from torch import Tensor, nn


def _widened(new: Tensor, old: Tensor, name: str) -> Tensor:
    """`old` embedded in a copy of the freshly initialised `new` (same rank, no dim smaller)."""
    if new.dim() != old.dim() or any(n < o for n, o in zip(new.shape, old.shape)):
        raise ValueError(f"{name}: cannot widen {tuple(old.shape)} to {tuple(new.shape)}")
    out = new.detach().clone()
    if new.dim() == 4:  # conv weight [out, in, k, k]
        if new.shape[2:] != old.shape[2:]:
            raise ValueError(f"{name}: kernel size changed {tuple(old.shape)} -> {tuple(new.shape)}")
        o, i = old.shape[:2]
        out[:, i:] = 0  # nothing reads the new input channels yet
        out[:o, :i] = old * math.sqrt(new.shape[1] / i)  # keep w * 1/sqrt(fan_in) unchanged
    elif new.dim() == 2:  # fully connected [out, in]: only outputs may grow (affine -> styles)
        if new.shape[1] != old.shape[1]:
            raise ValueError(f"{name}: a fully connected layer's input width changed; not supported")
        out[:old.shape[0]] = old
    else:  # biases, const [C, r, r], scalars, filters
        out[tuple(slice(0, s) for s in old.shape)] = old
    return out


def widen_state(module: nn.Module, old_state: Mapping[str, Tensor]) -> None:
    """Load `old_state` (a narrower module of the same class) into `module`, widening in place."""
    new_state = module.state_dict()
    missing = set(new_state) ^ set(old_state)
    if missing:
        raise ValueError(f"parameter names differ between the two networks: {sorted(missing)[:5]}")
    merged = {}
    for k, v in new_state.items():
        old = old_state[k].to(v.device, v.dtype)
        merged[k] = old.clone() if v.shape == old.shape else _widened(v, old, k)
    module.load_state_dict(merged)
