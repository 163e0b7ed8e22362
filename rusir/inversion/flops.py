"""Floating-point operations of one RUSIR step, counted on the real graph.

`step_flops` runs one step of a phase (render -> degrade -> loss, then backward) under
`torch.utils.flop_counter.FlopCounterMode`, which counts matmuls and convolutions (forward
and backward; elementwise work is not counted), and splits it into the synthesis (render and
its backward, with a unit upstream gradient: the count does not depend on the values) and the
rest (degradation + loss and their backward to the image). Divided by seconds per step it gives
the achieved FLOP/s to set against the GPU's peak (benchmarks/gpu.py).

The degradation and loss are used on copies (their noise streams are not advanced); the loss's
target side is computed before counting when it is cached (`cache_target`), so the count is
that of a step in the middle of a restore.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from .latents import convert, initial_latent
from .loop import Rendered, evaluate_loss, render

__all__ = ["step_flops"]


def _first(degradation, batch: int):
    """The degradation as image 0 of the batch sees it (rusir Degradations; others as given)."""
    from .batching import chunk_degradation
    try:
        return chunk_degradation(degradation, 0, 1, batch)
    except ValueError:
        return degradation


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def step_flops(G, target: Tensor, degradation, loss, space: str,
               resolution: Optional[int] = None, cache_target: bool = True,
               per_image: bool = True) -> dict[str, int]:
    """{"synthesis", "loss", "step"}: FLOPs of one `space` step for target's batch
    (step = synthesis + loss up to the few ops each count leaves out).

    per_image (default): count image 0 alone and multiply by the batch -- exact, as no
    operation couples the images, and needed because torch's counter ignores `groups` in a
    convolution's weight gradient, so W++'s grouped convolution (one group per image) would
    count B times its work. per_image=False counts the batch as it runs."""
    batch = target.shape[0]
    if per_image and batch > 1:
        one = step_flops(G, target[:1], _first(degradation, batch), loss, space, resolution,
                         cache_target, per_image=False)
        return {k: v * batch for k, v in one.items()}
    original, degradation = degradation, copy.deepcopy(degradation)
    memo = {id(t): t for t in [*loss.parameters(), *loss.buffers()]} if hasattr(loss, "parameters") else {}
    memo[id(original)] = degradation             # weights shared, the degradation the copy's
    loss = copy.deepcopy(loss, memo)
    if hasattr(loss, "cache_target"):
        loss.cache_target = cache_target
    latent = convert(initial_latent(G, "W", batch).to(target.device), space, G).requires_grad_(True)

    def loss_of(prediction: Tensor) -> Tensor:
        degraded = degradation.degrade_prediction(prediction)
        rendered = Rendered(prediction, degraded, getattr(degradation, "mask", None))
        return evaluate_loss(loss, rendered, target).sum()

    with torch.no_grad():
        prediction = render(G, latent, resolution)
    if cache_target:
        loss_of(prediction)                       # fills the target cache, as step 1 would

    def synthesis() -> None:
        render(G, latent, resolution).sum().backward()

    def loss_part() -> None:
        loss_of(prediction.detach().requires_grad_(True)).backward()

    def step() -> None:
        loss_of(render(G, latent, resolution)).backward()

    return {"synthesis": _count(synthesis), "loss": _count(loss_part), "step": _count(step)}
