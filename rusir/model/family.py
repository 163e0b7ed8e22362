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

A family built as the StyleGANs are (a `mapping` network holding `w_avg`, a `synthesis` network
that lists its modulated layers) gets `w_avg`, `modulated_layers()` and `forward` from
`MappedGenerator`, and its synthesis checks a latent's layout with `latent_rows`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, runtime_checkable

from torch import Tensor, nn

from .. import plugins

__all__ = ["ModulatedLayer", "StyleGenerator", "MappedGenerator", "latent_rows", "GeneratorFile",
           "Family", "FAMILIES", "register_family", "check_generator", "wpp_filters", "to_unit_range",
           "family_of_file"]


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


class MappedGenerator(nn.Module):
    """The protocol's generator-level part, for a family made of two networks: a subclass sets
    `mapping` (z -> ws [B, num_ws, w_dim], with a `w_avg` buffer) and `synthesis` (any latent
    layout -> image, with its own `modulated_layers()`), and the ints of the protocol."""
    mapping: nn.Module
    synthesis: nn.Module

    @property
    def w_avg(self) -> Tensor:
        return self.mapping.w_avg

    def modulated_layers(self) -> list[ModulatedLayer]:
        """The seam's view of the layers W++ addresses."""
        return self.synthesis.modulated_layers()

    def forward(self, z: Tensor, c: Optional[Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, noise_mode: str = "const") -> Tensor:
        """z [B, z_dim] -> image [B, C, R, R]: mapping, then synthesis of its W+ code."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)


def latent_rows(latent: Tensor, num_ws: int, w_dim: int, filters: int) -> Tensor:
    """A latent in one of the three layouts, with W's code repeated for every row (a view):
    W [B, w_dim] -> [B, num_ws, w_dim]; W+ [B, num_ws, w_dim] and W++ [B, num_ws, >= filters,
    w_dim] as given. Any other shape is one ValueError naming the three layouts."""
    if latent.dim() == 2 and latent.shape[1] == w_dim:
        return latent.unsqueeze(1).expand(-1, num_ws, -1)
    if latent.dim() == 3 and latent.shape[1:] == (num_ws, w_dim):
        return latent
    if latent.dim() == 4 and latent.shape[1] == num_ws and latent.shape[3] == w_dim \
            and latent.shape[2] >= filters:
        return latent
    raise ValueError(f"latent of shape {tuple(latent.shape)} fits none of W [B, {w_dim}], "
                     f"W+ [B, {num_ws}, {w_dim}], W++ [B, {num_ws}, {filters}, {w_dim}]")


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

class GeneratorFile:
    """A file given to `load_generator`, as the families see it: its `path` (and `suffix`; a
    path-like, so `Path(file)` and `open(file)` work), and `read(reader)`: reader(path) computed
    on first use and kept, so that recognising a file's family and loading it parse the file once
    (the official pickles: both StyleGAN families read them with
    rusir.model.unpickler.read_network_pickle)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._read: dict[Callable[[Path], Any], Any] = {}

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def suffix(self) -> str:
        return self.path.suffix

    def read(self, reader: Callable[[Path], Any]) -> Any:
        if reader not in self._read:
            self._read[reader] = reader(self.path)
        return self._read[reader]


@dataclass(frozen=True)
class Family:
    """A generator family as `load_generator` sees it: `recognises(file)` says whether a
    GeneratorFile holds one of its generators (by structure, without building it), `load(file)`
    builds it. Both read the file through the GeneratorFile, so it is read once."""
    name: str
    recognises: Callable[[GeneratorFile], bool]
    load: Callable[[GeneratorFile], nn.Module]


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
        elif FAMILIES[family.name] is not family:
            raise plugins.clash("rusir.families", name, f"the built-in family {family.name!r}")


def family_of_file(file: GeneratorFile) -> Family:
    """The registered family that recognises `file` (the latest registered first; plug-ins'
    families are registered on the first call)."""
    load_plugin_families()
    for family in reversed(list(FAMILIES.values())):
        if family.recognises(file):
            return family
    raise ValueError(f"don't know how to load {file.path}: no generator family recognises it "
                     f"(known: {', '.join(FAMILIES) or 'none'})")
