"""Baselines in RUSIR's harness: same generator, degradations and metrics, and the same call
shape and result as `rusir.restore` (rusir.inversion.method), so `rusir bench --methods
rusir,pulse,lbrgm,adam_wplus` compares them directly.

    method = get_method("pulse")
    result = method(G, target, degradation, loss=None, seed=0, callback=None, progress=True,
                    **baseline_config("pulse", "upsampling", "M"))
    result.images, result.phases["pulse"].losses, result.config, result.info["reached_eps"]

- pulse: PULSE on the sphere of the Gaussianised W (spec 7.1), adapted to StyleGAN2-ADA.
- lbrgm: L-BRGM, joint z / W+ with its priors, best-of-N init, fixed steps (spec 7.2).
- adam_wplus: Adam in W+ from w_avg with RUSIR's loss (Image2StyleGAN-style).
- ddrm: DDRM on a diffusion prior of the generator's domain (not G itself; docs/ddrm.md).
Per-(task, level) hyperparameters live in rusir/baselines/tables/ (package data; see `config`).
"""
from __future__ import annotations

from typing import Callable

from .. import plugins
from ..inversion.restore import restore
from .adam_wplus import adam_wplus
from .config import baseline_config, load_table
from .ddrm import ddrm
from .lbrgm import lbrgm
from .pulse import pulse

METHODS: dict[str, Callable] = {"rusir": restore, "pulse": pulse, "lbrgm": lbrgm,
                                "adam_wplus": adam_wplus, "ddrm": ddrm}

__all__ = ["METHODS", "get_method", "baseline_config", "load_table", "pulse", "lbrgm",
           "adam_wplus", "ddrm"]


def get_method(name: str) -> Callable:
    """The restoration function registered under `name`: one of METHODS, or an installed
    package's `rusir.methods` entry point (rusir.plugins; looked up when the name is not built in)."""
    if isinstance(name, str) and name not in METHODS:
        for plugin, fn in plugins.load("rusir.methods"):
            if METHODS.get(plugin, fn) is not fn:
                raise plugins.clash("rusir.methods", plugin, f"the built-in method {plugin!r}")
            if not callable(fn):
                raise ValueError(f"plug-in method {plugin!r} is a {type(fn).__name__}, not a "
                                 "function with restore's call shape")
            METHODS[plugin] = fn
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}; valid methods: {sorted(METHODS)}") from None
