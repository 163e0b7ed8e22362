"""Loss presets: YAML data in `rusir/inversion/loss_presets/*.yaml` (package data), loaded as `LossConfig`.

A preset file holds its loss under the `loss:` key (LossConfig fields), so the same file can
later carry other sections. Shipped presets:
- `paper`: multiresolution LPIPS-VGG + 0.1 L1 (spec section 4); needs the VGG16 backbone.
- `offline`: weight-free multiresolution L2 (+ 0.1 coarse L1), measured best on the embedded
  64-px generator (see the YAML); for any machine without the ImageNet backbones.

`load_preset("paper").build()` gives the loss callable; `build_loss(spec)` builds one from any
loss-as-data (term name, preset, YAML path, dict, LossConfig).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Union

from ..validation import read_yaml
from .losses import TERMS, CompositeLoss, LossConfig

__all__ = ["PRESET_DIR", "list_presets", "preset_path", "load_preset", "build_loss"]

PRESET_DIR = Path(__file__).with_name("loss_presets")


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name_or_path: Union[str, Path]) -> Path:
    """A shipped preset's file, or an explicit YAML path. A name is looked up among the shipped
    presets, never joined to the folder ('../../x' would leave it)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise FileNotFoundError(f"loss preset file {p} does not exist")
        return p
    if str(name_or_path) not in list_presets():
        raise ValueError(f"unknown loss preset {str(name_or_path)[:200]!r}; shipped presets: "
                         f"{list_presets()} (or give a path to a .yaml file)")
    return PRESET_DIR / f"{name_or_path}.yaml"


def load_preset(name_or_path: Union[str, Path]) -> LossConfig:
    """LossConfig of a shipped preset (by name) or of a YAML file (path)."""
    path = preset_path(name_or_path)
    data = read_yaml(path) or {}
    section = data.get("loss", data) if isinstance(data, dict) else None
    if not isinstance(section, dict) or "terms" not in section:
        raise ValueError(f"{path}: expected a mapping with `loss: {{terms: {{...}}, ...}}`")
    section = dict(section)
    section.setdefault("name", path.stem)
    try:
        return LossConfig.from_dict(section)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a loss: {' '.join(str(exc).split())}") from exc


def build_loss(spec: Union[str, Mapping, LossConfig], degradation_fn=None) -> CompositeLoss:
    """A loss from data.

    spec: a LossConfig; a term name (-> that term in the paper's pyramid with 0.1 L1, so
    "lpips_vgg" is the paper's loss); a preset name or YAML path (rusir.inversion.presets); a dict of
    LossConfig fields (with `terms`); or a flat {term: weight} dict.
    """
    if isinstance(spec, LossConfig):
        return spec.build(degradation_fn)
    if isinstance(spec, str):
        if spec in TERMS:
            return LossConfig({spec: 1.0}, name=spec).build(degradation_fn)
        if spec in list_presets() or spec.endswith((".yaml", ".yml")):
            return load_preset(spec).build(degradation_fn)
        raise ValueError(f"unknown loss {spec!r}: not a term {sorted(TERMS)}, a preset "
                         f"{list_presets()} or a .yaml file")
    if isinstance(spec, Mapping):
        if "terms" in spec:
            return LossConfig.from_dict(spec).build(degradation_fn)
        return LossConfig(dict(spec)).build(degradation_fn)
    raise TypeError(f"loss spec must be a name, dict or LossConfig, got {type(spec).__name__}")
