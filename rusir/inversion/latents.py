"""The three latent spaces RUSIR optimises, and how each phase starts from the previous one.

    W    [B, w_dim]               one code shared by every layer, starts at G's w_avg
    W+   [B, num_ws, w_dim]       one code per ws row, starts as W repeated per row
    W++  [B, num_ws, F, w_dim]    one code per output filter, starts as each W+ row repeated F times

The generator is seen only through rusir.model.family (num_ws, w_avg, F = the widest modulated
layer), so every family that implements the seam gets the same three spaces.

Each expansion renders exactly the same image as the latent it came from, so a phase picks up
where the last one stopped. Methods that start from random codes (the baselines) draw them with
`seeded_randn`, per image, so a batch equals its images run one by one.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..degradations.base import Seed, per_image_seeds
from ..model.family import StyleGenerator, check_generator, wpp_filters

SPACES = ("W", "W+", "W++")


def init_w(G: StyleGenerator, batch: int) -> Tensor:
    """W at the generator's tracked mean (the paper's init): [B, w_dim]."""
    check_generator(G)
    w_avg = G.w_avg.detach()
    w_avg = w_avg.to(torch.promote_types(w_avg.dtype, torch.float32))  # fp32, or fp64 for G.double()
    return w_avg.unsqueeze(0).repeat(batch, 1).clone()


def w_to_wplus(w: Tensor, num_ws: int) -> Tensor:
    """[B, w_dim] -> [B, num_ws, w_dim] (the same code in every row)."""
    return w.detach().unsqueeze(1).repeat(1, num_ws, 1).clone()


def wplus_to_wpp(wp: Tensor, filters: int) -> Tensor:
    """[B, num_ws, w_dim] -> [B, num_ws, F, w_dim] (each row repeated once per filter)."""
    return wp.detach().unsqueeze(2).repeat(1, 1, filters, 1).clone()


def seeded_randn(shape: tuple[int, ...], seed: Seed, batch: int, device: torch.device) -> Tensor:
    """[batch, *shape] standard normal draws; image i's come from its own generator seeded
    seed + i, or seed[i] for a sequence (on the CPU, so results do not depend on the device)."""
    draws = [torch.randn(shape, generator=torch.Generator().manual_seed(s))
             for s in per_image_seeds(seed, batch)]
    return torch.stack(draws).to(device)


def space_of(latent: Tensor) -> str:
    """Name the space a latent lives in from its rank."""
    return {2: "W", 3: "W+", 4: "W++"}[latent.dim()]


def convert(latent: Tensor, space: str, G: StyleGenerator) -> Tensor:
    """Lift a latent into `space` (W -> W+ -> W++). Lowering is refused: it would lose information."""
    if space not in SPACES:
        raise ValueError(f"unknown latent space {space!r}; choose one of {SPACES}")
    src = SPACES.index(space_of(latent))
    dst = SPACES.index(space)
    if dst < src:
        raise ValueError(f"cannot lower a {SPACES[src]} latent to {space}")
    x = latent.detach().clone()
    if src == 0 and dst >= 1:
        x = w_to_wplus(x, G.num_ws)
    if src <= 1 and dst == 2:
        x = wplus_to_wpp(x, wpp_filters(G))
    return x


def initial_latent(G: StyleGenerator, space: str, batch: int) -> Tensor:
    """A phase that runs first starts from w_avg lifted into its space."""
    return convert(init_w(G, batch), space, G)
