"""Named generators: the embedded default shipped in the package, and official StyleGAN2-ADA pickles.

`load_generator(name_or_path)` is the one way to get a generator:
- "toyfaces64" (the default): the small generator this project trained on offline cartoon
  faces, shipped inside the package; needs no download and uses the weight-free loss preset.
- an official name: StyleGAN2-ADA ("ffhq", "metfaces", "afhqcat", ...) or StyleGAN3
  ("stylegan3-t-ffhqu-1024", "stylegan3-r-afhqv2-512", ...): downloaded once into the cache
  (`$RUSIR_CACHE`, default ~/.cache/rusir) when online; offline, a clear error says which
  file to put where. Loaded with the exec-free pickle reader.
- a path to a `.pkl` (official StyleGAN2-ADA or StyleGAN3 format) or `.safetensors`
  (rusir.model.checkpoint) file. The file's family is recognised from its content through the
  families registered with rusir.model.family (the built-in ones are registered here).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Union

import torch

from . import weights
from .checkpoint import CheckpointError, load_generator_file, read_metadata
from .family import Family, GeneratorFile, family_of_file, register_family
from .pkl import load_network_pickle
from .safety import describe
from .stylegan2 import Generator
from .stylegan3_pkl import is_stylegan3, load_stylegan3_pickle
from .unpickler import read_network_pickle

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT = "toyfaces64"
PRESET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # a loss preset's name: no path, no suffix
_OFFICIAL_BASE = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
_STYLEGAN3_BASE = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"


@dataclass(frozen=True)
class GeneratorInfo:
    """What a generator is and its own defaults for restoration: data, read by
    `rusir.inversion.schedule` and `restore` through `info(G)`. Kept on the module itself
    (`INFO_ATTRIBUTE`), so it travels with it: pickle, deepcopy, a Ray worker or a subprocess
    restoring with the same G runs with the same schedule, tau and loss preset."""
    name: str
    description: str
    resolution: int
    default_loss: str = "paper"  # preset name (rusir/inversion/loss_presets/*.yaml)
    weight: Optional[str] = None  # rusir.model.weights registry name, None for shipped files
    path: Optional[Path] = None
    lr_scale: float = 1.0      # RUSIR's global_lr_scale for this generator's latent scale
    steps: Optional[tuple[int, int, int]] = None      # RUSIR steps per phase W, W+, W++; None: the paper's
    lrs: Optional[tuple[float, float, float]] = None  # RUSIR rates per phase (x lr_scale); None: the paper's
    discrepancy: Optional[float] = None  # tau of RUSIR's noise-level stop; None: off (the paper)
    sha256: Optional[str] = None  # of the file loaded (pinned for the shipped one: tuned on it)
    family: str = "stylegan2"     # the rusir.model.family name of the file's family
    # how its training faces were aligned: a rusir.faces.align template name; None when its images
    # are not aligned human faces (animals, histology): photos are then refused (rusir.faces)
    alignment: Optional[str] = "ffhq"


# The attribute of a generator that holds its GeneratorInfo: a plain (non-parameter) attribute of
# the nn.Module, so it pickles and deep-copies with it (a side table keyed by the module did not:
# a Ray worker got the paper's defaults for the embedded generator).
INFO_ATTRIBUTE = "rusir_info"


def info(G: Generator) -> GeneratorInfo:
    """The info `load_generator` recorded for G; for a generator built in code, the paper's
    defaults (loss preset `paper`, the paper's schedule)."""
    found = getattr(G, INFO_ATTRIBUTE, None)
    if isinstance(found, GeneratorInfo):
        return found
    return GeneratorInfo(type(G).__name__, "a generator not loaded by name", int(G.img_resolution))


def set_info(G: Generator, record: GeneratorInfo) -> Generator:
    """Record G's own defaults (what `load_generator` does; also for generators built in code)."""
    if not isinstance(record, GeneratorInfo):
        raise ValueError(f"a generator's info must be a GeneratorInfo, got {type(record).__name__}")
    object.__setattr__(G, INFO_ATTRIBUTE, record)   # not a parameter, buffer or submodule
    return G


def _cache_dir() -> str:
    return os.environ.get("RUSIR_CACHE", "~/.cache/rusir")


def _official(name: str, res: int, what: str, alignment: Optional[str] = "ffhq",
              remote: Optional[str] = None) -> GeneratorInfo:
    # The NVIDIA CDN publishes no checksums for these files, so none is pinned here: the
    # structural checks of the pickle reader (official names and shapes, strict load) apply.
    weights.register(weights.WeightFile(
        name=f"stylegan2-ada-{name}", url=_OFFICIAL_BASE + f"{remote or name}.pkl", filename=f"{name}.pkl",
        sha256=None, cache_dir=_cache_dir(), note=f"official StyleGAN2-ADA {what}"))
    return GeneratorInfo(name, f"official StyleGAN2-ADA {what}", res, "paper", f"stylegan2-ada-{name}",
                         alignment=alignment)


def _official_stylegan3(config: str, data: str, res: int, what: str,
                        alignment: Optional[str] = "ffhq") -> tuple[str, GeneratorInfo]:
    """(name, info) of an official StyleGAN3 pickle, config "t" or "r" (docs/generator-family.md
    lists the twelve registered, as rusir names them). NGC publishes no checksums for them and none could be taken
    offline here, so none is pinned: the exec-free reader's structural checks apply. The schedule
    is the paper's (tuned for StyleGAN2) until someone tunes one on these weights."""
    name = f"stylegan3-{config}-{data}-{res}"
    filename = f"stylegan3-{config}-{data}-{res}x{res}.pkl"
    label = f"official StyleGAN3-{config.upper()} {what}"
    weights.register(weights.WeightFile(name=name, url=_STYLEGAN3_BASE + filename, filename=filename,
                                        sha256=None, cache_dir=_cache_dir(), note=label))
    return name, GeneratorInfo(name, label, res, "paper", name, family="stylegan3",
                               alignment=alignment)


REGISTRY: dict[str, GeneratorInfo] = {
    DEFAULT: GeneratorInfo(DEFAULT, "embedded default: 64 px cartoon faces trained by rusir (offline)",
                           64, "offline", None, ASSETS / "toyfaces64.safetensors",
                           # lr_scale and schedule chosen on held-out faces 4..11 (not the demo's
                           # 0..3) over the five demo tasks at M: docs/method.md, "Loss" and "Schedule"
                           lr_scale=8.0, steps=(50, 50, 300), lrs=(0.08, 0.02, 0.02),
                           # stop at the target's noise level: docs/method.md, "Robustness"
                           discrepancy=1.05,
                           sha256="7b1edd94a98c568428dee4982ab24efe8193e72840a9a608a49d73681441cc17",
                           alignment="toyfaces64"),
    "ffhq": _official("ffhq", 1024, "FFHQ 1024 px faces (the paper's generator)"),
    "metfaces": _official("metfaces", 1024, "MetFaces 1024 px art faces", "metfaces"),
    "afhqcat": _official("afhqcat", 512, "AFHQ cats 512 px", None),
    "afhqdog": _official("afhqdog", 512, "AFHQ dogs 512 px", None),
    "afhqwild": _official("afhqwild", 512, "AFHQ wild animals 512 px", None),
    "brecahad": _official("brecahad", 512, "BreCaHAD histology 512 px", None),
    # the paper's Table 3 generator (DDRM has a CelebA-HQ model, not an FFHQ one): NVIDIA's
    # CelebA-HQ 256 px StyleGAN2-ADA, published among its transfer-learning source networks.
    # CelebA-HQ's crops (Karras et al. 2018) are close to, not equal to, FFHQ's alignment.
    "celebahq256": _official("celebahq256", 256, "CelebA-HQ 256 px faces (the paper's Table 3)",
                             "ffhq", "transfer-learning-source-nets/celebahq-res256-mirror-"
                             "paper256-kimg100000-ada-target0.5"),
}
# StyleGAN3-T and -R: FFHQ-U (unaligned crops) and MetFaces-U were aligned as FFHQ / MetFaces,
# with a random shift and rotation in training; AFHQv2 holds animal faces (no face template).
REGISTRY.update(_official_stylegan3(config, data, res, what, alignment)
                for config in ("t", "r")
                for data, res, what, alignment in (
                    ("ffhq", 1024, "FFHQ 1024 px faces", "ffhq"),
                    ("ffhqu", 1024, "FFHQ-U 1024 px faces (unaligned)", "ffhq"),
                    ("ffhqu", 256, "FFHQ-U 256 px faces (unaligned)", "ffhq"),
                    ("metfaces", 1024, "MetFaces 1024 px art faces", "metfaces"),
                    ("metfacesu", 1024, "MetFaces-U 1024 px art faces (unaligned)", "metfaces"),
                    ("afhqv2", 512, "AFHQv2 512 px cats, dogs and wild animals", None)))


def alignment(generator) -> Optional[str]:
    """How a generator's training faces were aligned (a rusir.faces.align template name), or
    None when its images are not aligned human faces. `generator`: a loaded G (its `info`), a
    registry name, or a file path / None (FFHQ's, what custom StyleGAN face models use)."""
    if isinstance(generator, torch.nn.Module):
        return info(generator).alignment
    record = REGISTRY.get(str(generator)) if generator is not None else None
    return record.alignment if record is not None else "ffhq"


def available() -> dict[str, str]:
    """Generator names with a one-line description."""
    return {k: v.description for k, v in REGISTRY.items()}


def _shipped_file(info: GeneratorInfo) -> Path:
    """The file shipped for `info`, checked against its pinned sha256: the registry's schedule and
    loss preset were measured on exactly that file, so another one must not pass silently."""
    path = info.path
    if not path.is_file():
        raise weights.MissingWeightsError(
            f"the embedded generator file {path} is missing from this installation; "
            "reinstall rusir (the file ships inside the package)")
    if info.sha256 is not None:
        digest = weights.file_sha256(path)
        if digest != info.sha256:
            raise weights.CorruptWeightsError(
                f"the embedded generator file {path} has sha256 {digest[:16]}..., expected "
                f"{info.sha256[:16]}... (the file this rusir version ships and was tuned on); "
                f"reinstall rusir, or load another file by its path instead of the name {info.name!r}")
    return path


def _is_stylegan3_pickle(file: GeneratorFile) -> bool:
    """An official pickle whose G_ema has StyleGAN3's structure (read exec-free, once: the
    GeneratorFile keeps what it read for the family that loads it)."""
    return file.suffix == ".pkl" and is_stylegan3(file.read(read_network_pickle)["G_ema"])


def _load_stylegan2(file: GeneratorFile) -> Generator:
    if file.suffix == ".safetensors":
        return load_generator_file(file.path)
    return load_network_pickle(file.path, records=file.read(read_network_pickle))


# Built-in families, the general first: a family registered later is asked first.
register_family(Family("stylegan2", lambda file: file.suffix in (".pkl", ".safetensors"), _load_stylegan2))
register_family(Family("stylegan3", _is_stylegan3_pickle,
                       lambda file: load_stylegan3_pickle(file.path, records=file.read(read_network_pickle))))


def _load_file(path: Path) -> tuple[Generator, str]:
    """(generator, family name) of a file, by the first registered family that recognises it."""
    file = GeneratorFile(path)
    family = family_of_file(file)
    return family.load(file), family.name


def _file_default_loss(path: Path) -> str:
    """A rusir checkpoint may name its loss preset in its metadata; official pickles use the paper's.
    The file is untrusted: only a bare name passes (never a path, which would make rusir read a
    YAML file of the file's choosing); rusir.inversion.presets resolves names only among the
    presets it ships."""
    if path.suffix == ".safetensors":
        loss = read_metadata(path)["meta"].get("default_loss", "paper")
        if type(loss) is not str or not PRESET_NAME.fullmatch(loss):
            raise CheckpointError(f"{path}: meta 'default_loss' is {describe(loss)}, not a loss "
                                  "preset name (a shipped preset such as 'paper'; never a path)")
        return loss
    return "paper"


def load_generator(name_or_path: Union[str, Path] = DEFAULT, device: Union[str, torch.device] = "cpu",
                   download: Optional[bool] = None) -> Generator:
    """A frozen generator in eval mode; `info(G)` then gives its name, loss preset and RUSIR
    schedule (rusir.inversion.schedule)."""
    key = str(name_or_path)
    if key in REGISTRY:
        record = REGISTRY[key]
        if record.path is not None:
            path = _shipped_file(record)
        else:
            path = weights.fetch(record.weight, download=download)
    else:
        path = Path(key).expanduser()
        if not path.exists():
            raise ValueError(f"unknown generator {key!r}: not a file, and not one of {sorted(REGISTRY)}")
        record = None
    G, family = _load_file(path)
    record = record or replace(_file_info(path, key, G.img_resolution), family=family)
    if record.sha256 is None:   # name the exact file (a benchmark folder records it: RunConfig)
        record = replace(record, sha256=weights.file_sha256(path))
    set_info(G, record)
    return G.to(device).eval().requires_grad_(False)


def _file_info(path: Path, key: str, resolution: int) -> GeneratorInfo:
    """A file's defaults: a named generator's own when it is that file (the shipped toyfaces64 by
    its path, say), else the loss preset its metadata names (official pickles: the paper's)."""
    for record in REGISTRY.values():
        if record.path is not None and record.path.resolve() == path.resolve():
            return replace(record, name=key)
    return GeneratorInfo(key, f"generator file {path.name}", int(resolution), _file_default_loss(path),
                         path=path)
