"""The seam between restoration and a generator family: what RUSIR needs from a generator.

Restoration (rusir.inversion, rusir.baselines) only ever talks to this protocol, so a new family
(StyleGAN2, StyleGAN3, ...) is a sibling module in rusir/model/ that implements it, plus, to be
loadable from a file, one `register_family` call. A generator of the protocol has

    z_dim, w_dim, num_ws, img_resolution, img_channels   ints
    w_avg                        [w_dim]   the tracked mean of W (the paper's starting point)
    mapping(z, c, truncation_psi=1.0)  [B, z_dim] -> ws [B, num_ws, w_dim] (truncated to w_avg)
    synthesis(latent, noise_mode="const")  latent -> image [B, C, R, R] in ~[-1, 1], where
        latent is W   [B, w_dim]            one code for every ws row
                  W+  [B, num_ws, w_dim]    one code per ws row
                  W++ [B, num_ws, F, w_dim] one code per output filter of every modulated layer
    modulated_layers()           [ModulatedLayer]: each modulated layer's ws row and filter count

F is the widest modulated layer (`wpp_filters`); a layer with O filters reads the first O codes of
its row. A W++ code whose F codes per row are equal renders what the W+ code renders.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from torch import Tensor, nn

from .. import plugins

__all__ = ["ModulatedLayer", "StyleGenerator", "Family", "FAMILIES", "register_family",
           "check_generator", "wpp_filters", "to_unit_range", "family_of_file"]


@dataclass(frozen=True)
class ModulatedLayer:
    """One layer whose convolution a style modulates: its name, the ws row it reads, and its
    output filters (one W++ code each)."""
    name: str
    row: int
    filters: int


@runtime_checkable
class StyleGenerator(Protocol):
    """What restoration needs from a generator (see the module docstring for shapes)."""
    z_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int
    mapping: Callable[..., Tensor]
    synthesis: Callable[..., Tensor]

    @property
    def w_avg(self) -> Tensor: ...

    def modulated_layers(self) -> list[ModulatedLayer]: ...


_NEEDED = ("z_dim", "w_dim", "num_ws", "img_resolution", "img_channels", "mapping", "synthesis",
           "w_avg", "modulated_layers")


def check_generator(G: Any) -> None:
    """One-line ValueError naming what a generator lacks of the protocol."""
    missing = [name for name in _NEEDED if not hasattr(G, name)]
    if missing:
        raise ValueError(f"{type(G).__name__} is not a generator rusir can restore with: it has no "
                         f"{', '.join(missing)} (see rusir.model.family)")


def wpp_filters(G: StyleGenerator) -> int:
    """F of the W++ layout: the widest modulated layer's filter count."""
    return max(layer.filters for layer in G.modulated_layers())


def to_unit_range(img: Tensor) -> Tensor:
    """Generator output ~[-1, 1] -> ~[0, 1] without clamping (RUSIR never clamps predictions)."""
    return (img + 1) / 2


# ---------------------------------------------------------------------------------------------
# Families loadable from a file

@dataclass(frozen=True)
class Family:
    """A generator family as `load_generator` sees it: `recognises(path)` says whether a file
    holds one of its generators (cheaply, without building it), `load(path)` builds it."""
    name: str
    recognises: Callable[[Path], bool]
    load: Callable[[Path], nn.Module]


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Make `load_generator` try `family` on files (families registered later are asked first,
    so a specific family can claim files a general one would also accept)."""
    if not isinstance(family, Family):
        raise ValueError(f"register a Family, got {type(family).__name__}")
    FAMILIES.pop(family.name, None)
    FAMILIES[family.name] = family
    return family


def load_plugin_families() -> None:
    """Registers the installed packages' `rusir.families` entry points (each a Family), once;
    registered after the built-in ones, so they are asked first."""
    for name, family in plugins.load("rusir.families"):
        if not isinstance(family, Family):
            raise ValueError(f"plug-in family {name!r} is a {type(family).__name__}, not a "
                             "rusir.model.family.Family")
        if family.name not in FAMILIES:
            register_family(family)


def family_of_file(path: Path) -> Family:
    """The registered family that recognises `path` (the latest registered first; plug-ins'
    families are registered on the first call)."""
    load_plugin_families()
    for family in reversed(list(FAMILIES.values())):
        if family.recognises(path):
            return family
    raise ValueError(f"don't know how to load {path}: no generator family recognises it "
                     f"(known: {', '.join(FAMILIES) or 'none'})")
