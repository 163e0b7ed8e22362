"""The seed of a baseline that draws per image (PULSE's start, L-BRGM's candidates).

`seed` is an int (image i draws with seed + i, as `rusir.degradations` do) or one seed per
image. The benchmark passes a sequence when it restores a batch of items that each ran alone
with the same seed s: `[s, s, ...]` makes every image of the batch start as it would alone. The
loss's own noise (hole fill, consistency) is one draw shared by the batch, seeded by the first.
A method marked `seeds_per_image = True` takes such a sequence (rusir.engine.runner).
"""
from __future__ import annotations

from typing import Union

from ..degradations.base import Seed

__all__ = ["loss_seed", "seed_config"]


def loss_seed(seed: Seed) -> int:
    """The seed of the loss's noise: the int, or the first of a sequence."""
    return int(seed) if isinstance(seed, int) or hasattr(seed, "__index__") else int(list(seed)[0])


def seed_config(seed: Seed) -> Union[int, list[int]]:
    """What `result.config["seed"]` records: the int, or the list."""
    return int(seed) if isinstance(seed, int) or hasattr(seed, "__index__") else [int(s) for s in seed]
