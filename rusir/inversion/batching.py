"""Restoring a batch in chunks that fit in memory: what chunk k needs, and how big a chunk can be.

`restore(..., batch_size=n)` runs images [a, b) of a batch as their own restore. That gives the
images of the whole batch because nothing couples them (docs/method.md, "Batching"):

- the degradation of chunk k is a copy whose per-image seeds are the whole batch's seeds
  [a, b) (image i with seed s is image i alone with seed s + i), so its masks and its
  approximation's per-image noise streams are those image i sees in the whole batch;
- the loss's own noise (hole fill, consistency) is one image's draw per call shared by the batch,
  restarted at the run's seed for every chunk, so every chunk sees the whole batch's draws;
  a loss built around the degradation (consistency) is copied onto the chunk's degradation,
  sharing its network weights.

In float64 chunked equals unchunked to <= 2.2e-13 after 2 steps per phase
(tests/test_batching.py). In float32 it is not bit for bit: batched kernels round differently
from smaller batches (~1e-6) and NGD's fixed-length steps amplify that (docs/python-api.md).

`batch_size="auto"` measures the peak memory of one W++ step (forward, backward, NGD step --
the largest phase) at 1 and 2 images, fits memory = fixed + per_image * n, and takes the largest
n that fits in `SAFETY` x the free GPU memory. On the CPU "auto" is the whole batch (nothing is
measured; host memory is the user's to manage).
"""
from __future__ import annotations

import copy
from typing import Callable, Optional, Union

import torch
import torch.nn as nn

from ..degradations.base import Degradation
from ..validation import MAX_BATCH, whole

__all__ = ["BatchSize", "SAFETY", "check_batch_size", "chunks", "chunk_degradation", "chunk_loss",
           "free_memory", "fit_batch_size", "auto_batch_size", "largest_that_fits"]

BatchSize = Union[None, int, str]
SAFETY = 0.9   # share of the free memory "auto" plans to use (allocator fragmentation, workspaces)


def check_batch_size(batch_size: BatchSize) -> BatchSize:
    """None (one batch), an int in [1, MAX_BATCH], or "auto"; anything else is a ValueError."""
    if batch_size is None or batch_size == "auto":
        return batch_size
    if not isinstance(batch_size, int):
        raise ValueError(f"batch_size must be None, a whole number >= 1 or 'auto', got {batch_size!r}")
    return whole(batch_size, "batch_size", 1, MAX_BATCH, "MAX_BATCH")


def chunks(batch: int, size: int) -> list[tuple[int, int]]:
    """[(start, stop), ...] covering range(batch) in order, each at most `size` long."""
    return [(a, min(a + size, batch)) for a in range(0, batch, size)]


def _set_seeds(deg, seeds: list[int], start: int, stop: int, batch: int) -> None:
    """Give `deg` (and a composition's stages) the per-image seeds of images [start, stop)."""
    deg.seed = list(seeds)
    fixed = getattr(deg, "_fixed", None)           # a user's inpainting mask, one per image
    if fixed is not None and fixed.shape[0] == batch and batch > 1:
        deg._fixed = fixed[start:stop]
    for stage in getattr(deg, "stages", ()):
        _set_seeds(stage, seeds, start, stop, batch)


def chunk_degradation(degradation, start: int, stop: int, batch: int):
    """A copy of `degradation` that treats images [start, stop) of a batch of `batch` as the
    whole batch does (their seeds, masks and approximation noise streams, in their current state).
    A degradation that is not a rusir `Degradation` cannot be split: ValueError."""
    if start == 0 and stop == batch:
        return degradation
    if not isinstance(degradation, Degradation):
        raise ValueError(f"batch_size splits the batch per image, which needs a rusir Degradation "
                         f"(per-image seeds); got {type(degradation).__name__}: use batch_size=None")
    part = copy.deepcopy(degradation)
    _set_seeds(part, degradation.seeds_for(batch)[start:stop], start, stop, batch)
    return part


def chunk_loss(loss, degradation, part):
    """`loss` for a chunk whose degradation is `part`: a module that holds the degradation (the
    consistency term) is copied with `part` in its place, sharing every weight and buffer; any
    other loss is itself (its noise is restarted by `prepare`)."""
    if part is degradation or not isinstance(loss, nn.Module) or not _holds(loss, degradation):
        return loss
    for module in loss.modules():
        if hasattr(module, "clear_target_cache"):
            module.clear_target_cache()          # the whole batch's cached target: not copied
    memo = {id(t): t for t in [*loss.parameters(), *loss.buffers()]}
    memo[id(degradation)] = part
    return copy.deepcopy(loss, memo)


def _holds(loss: nn.Module, degradation) -> bool:
    """Whether a term of `loss` calls `degradation` (the consistency term's bound `fn`)."""
    return any(getattr(getattr(m, "fn", None), "__self__", None) is degradation
               for m in loss.modules())


def free_memory(device: torch.device) -> Optional[int]:
    """Bytes this process can still allocate on a CUDA device: the device's free memory plus
    what PyTorch's allocator holds unused, within `set_per_process_memory_fraction` (how a
    16 GB card is simulated on a larger one); None off CUDA."""
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    available = free + torch.cuda.memory_reserved(device) - allocated
    fraction = getattr(torch.cuda, "get_per_process_memory_fraction", lambda d: 1.0)(device)
    return int(max(0, min(available, fraction * total - allocated)))


def fit_batch_size(batch: int, free: int, fixed: int, per_image: int,
                   safety: float = SAFETY) -> int:
    """The largest n <= batch with fixed + per_image * n <= safety * free; 0 when none fits."""
    budget = safety * free - fixed
    if per_image <= 0:
        return batch if budget >= 0 else 0
    return max(0, min(batch, int(budget // per_image)))


def auto_batch_size(batch: int, device: torch.device,
                    step_memory: Callable[[int], int]) -> int:
    """The chunk "auto" picks: the whole batch off CUDA; on CUDA the largest that fits the
    free memory by the measured cost of one step (`step_memory(n)`: peak bytes of one W++ step
    with n images). Raises torch.OutOfMemoryError when not even one image fits."""
    free = free_memory(device)
    if free is None or batch == 1:
        return batch
    one = step_memory(1)
    per_image = max(step_memory(2) - one, 1)
    fixed = max(one - per_image, 0)
    n = fit_batch_size(batch, free, fixed, per_image)
    if n < 1:
        raise torch.OutOfMemoryError(
            f"one image needs ~{one / 2**30:.2f} GiB for a W++ step, but {device} has "
            f"{free / 2**30:.2f} GiB free: lower the resolution, or use precision='bf16'")
    return n


def largest_that_fits(fits: Callable[[int], bool], upper: int) -> int:
    """The largest n in [1, upper] with fits(n) (fits is monotone: True up to some n), by
    bisection; 0 when fits(1) is False."""
    low, high = 0, upper + 1                     # fits(low) holds (or low = 0), fits(high) fails
    while high - low > 1:
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low
