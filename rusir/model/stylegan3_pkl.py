"""Load official StyleGAN3 network pickles (T and R) without executing anything stored in them.

The same restricted unpickler as for StyleGAN2-ADA (rusir.model.unpickler) turns the file into
records; here the StyleGAN3 generator is rebuilt from its record tree. Class names alone cannot
tell the families apart (the StyleGAN2 and StyleGAN3 source files embedded in one file both
define `MappingNetwork` and `FullyConnectedLayer`), so the tree decides
(../shared/spec/stylegan3-format.md 1.1-1.2, 1.6): only G_ema's (or G's) subtree is read, its
`synthesis` must hold an `input` child and a `layer_names` list. Every layer's design values are
read from the file (they are authoritative), range-checked, and the padding checked against the
official formula before anything is built; weights then load with strict=True, in order.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .pkl import MAX_MODULE_TENSORS, record_state_dict
from .safety import (BUILD_SLACK, MAX_DIM, MAX_IMG_CHANNELS, MAX_MAPPING_LAYERS, MAX_PARAMETERS,
                     MAX_RESOLUTION, as_float, as_int, clip, describe, load_checked)
from .stylegan3 import Generator, InputSpec, LayerSpec, StyleGAN3Config, layer_padding
from .unpickler import NetworkPickleError, PersistentRecord, read_network_pickle

__all__ = ["load_stylegan3_pickle", "is_stylegan3", "stylegan3_design"]

E = NetworkPickleError
MAX_SYNTHESIS_LAYERS = 64   # official: 15
MAX_FACTOR = 16             # up/down-sampling factors (official: 1, 2, 4)
MAX_TAPS = 256              # filter taps (official: 12, 24)
MAX_RATE = 4 * MAX_RESOLUTION


def _modules(record: PersistentRecord) -> dict:
    value = record.state.get("_modules")
    return value if isinstance(value, dict) else {}


def is_stylegan3(record: Any) -> bool:
    """A StyleGAN3 generator record: its synthesis has an `input` child and `layer_names`
    (a StyleGAN2 one has `block_resolutions` and children b4, b8, ...)."""
    if not isinstance(record, PersistentRecord) or record.class_name != "Generator":
        return False
    synthesis = _modules(record).get("synthesis")
    return isinstance(synthesis, PersistentRecord) and "layer_names" in synthesis.state \
        and isinstance(_modules(synthesis).get("input"), PersistentRecord)


def _int(rec: PersistentRecord, name: str, lo: int, hi: int) -> int:
    return as_int(rec.attr(name), f"{rec.class_name}.{name}", lo, hi, E)


def _float(rec: PersistentRecord, name: str, lo: float, hi: float) -> float:
    return as_float(rec.attr(name), f"{rec.class_name}.{name}", lo, hi, E)


def _flag(rec: PersistentRecord, name: str) -> bool:
    value = rec.attr(name)
    if type(value) is bool or isinstance(value, np.bool_):
        return bool(value)
    raise E(f"{rec.class_name}.{name} is {describe(value)}, not a bool")


def _size(rec: PersistentRecord, name: str) -> tuple[int, int]:
    """A [width, height] size: a numpy int64 array of 2 (official) or a list/tuple of 2 ints."""
    value = rec.attr(name)
    items = value.tolist() if hasattr(value, "tolist") and getattr(value, "shape", None) == (2,) else value
    if type(items) not in (list, tuple) or len(items) != 2:
        raise E(f"{rec.class_name}.{name} is {describe(value)}, not a [width, height] pair")
    w, h = (as_int(v, f"{rec.class_name}.{name}", 1, MAX_RESOLUTION + 256, E) for v in items)
    if w != h:
        raise E(f"{rec.class_name}.{name} is {w}x{h}: only square feature maps are supported")
    return w, h


def _layer_spec(rec: PersistentRecord, name: str) -> LayerSpec:
    clamp = rec.attr("conv_clamp")
    spec = LayerSpec(
        name=name, is_torgb=_flag(rec, "is_torgb"), is_critically_sampled=_flag(rec, "is_critically_sampled"),
        in_channels=_int(rec, "in_channels", 1, MAX_DIM), out_channels=_int(rec, "out_channels", 1, MAX_DIM),
        in_size=_size(rec, "in_size"), out_size=_size(rec, "out_size"),
        in_sampling_rate=_float(rec, "in_sampling_rate", 1, MAX_RATE),
        out_sampling_rate=_float(rec, "out_sampling_rate", 1, MAX_RATE),
        tmp_sampling_rate=_float(rec, "tmp_sampling_rate", 1, MAX_RATE),
        in_cutoff=_float(rec, "in_cutoff", 1e-6, MAX_RATE),
        out_cutoff=_float(rec, "out_cutoff", 1e-6, MAX_RATE),
        in_half_width=_float(rec, "in_half_width", 1e-6, MAX_RATE),
        out_half_width=_float(rec, "out_half_width", 1e-6, MAX_RATE),
        conv_kernel=_int(rec, "conv_kernel", 1, 15),
        conv_clamp=None if clamp is None else as_float(clamp, f"{name}.conv_clamp", 1e-6, 1e9, E),
        up_factor=_int(rec, "up_factor", 1, MAX_FACTOR), up_taps=_int(rec, "up_taps", 1, MAX_TAPS),
        down_factor=_int(rec, "down_factor", 1, MAX_FACTOR), down_taps=_int(rec, "down_taps", 1, MAX_TAPS),
        down_radial=_flag(rec, "down_radial"),
        padding=tuple(rec.attr("padding")) if type(rec.attr("padding")) in (list, tuple) else ())
    expected = layer_padding(spec.in_size[0], spec.out_size[0], spec.conv_kernel, spec.up_factor,
                        spec.down_factor, spec.up_taps, spec.down_taps)
    if spec.padding != expected * 2:
        raise E(f"layer {name} has padding {describe(rec.attr('padding'))}, not the "
                f"{list(expected * 2)} its sizes and filters need")
    return spec


def _check_chain(inp: InputSpec, layers: list[LayerSpec], img_channels: int, resolution: int) -> None:
    """Consecutive layers must fit together, and the last must be a toRGB layer of the image size."""
    channels, size = inp.channels, inp.size
    for spec in layers:
        if spec.in_channels != channels or spec.in_size != size:
            raise E(f"layer {spec.name} takes {spec.in_channels} channels of {spec.in_size[0]} px, "
                    f"the layer before gives {channels} of {size[0]} px")
        channels, size = spec.out_channels, spec.out_size
    last = layers[-1]
    if not last.is_torgb or any(s.is_torgb for s in layers[:-1]) or last.out_channels != img_channels \
            or last.out_size != (resolution, resolution):
        raise E(f"the last layer {last.name} is not the toRGB layer of a {img_channels}-channel "
                f"{resolution} px image")


def _parameter_count(cfg: StyleGAN3Config, inp: InputSpec, layers: list[LayerSpec]) -> int:
    w = cfg.w_dim
    count = inp.channels ** 2 + 5 * w + 4 + 9 + inp.channels * 3
    count += sum(s.out_channels * s.in_channels * s.conv_kernel ** 2 + s.out_channels + 1
                 + s.in_channels * (w + 1) + s.up_taps + s.down_taps ** (2 if s.down_radial else 1)
                 for s in layers)
    features = [cfg.z_dim + (w if cfg.c_dim else 0)] + [w] * cfg.mapping_layers
    count += w + (cfg.c_dim * w + w if cfg.c_dim else 0)
    count += sum(a * b + b for a, b in zip(features, features[1:]))
    return count


def stylegan3_design(record: PersistentRecord) -> tuple[StyleGAN3Config, InputSpec, tuple[LayerSpec, ...]]:
    """The checked configuration, input and layer designs of a StyleGAN3 generator record."""
    if not is_stylegan3(record):
        raise E(f"the generator is {describe(record)}, not a StyleGAN3 Generator (its synthesis "
                "has no 'input' child and 'layer_names')")
    mapping, synthesis = record.child("mapping"), record.child("synthesis")
    inp_rec = synthesis.child("input")
    res = _int(record, "img_resolution", 16, MAX_RESOLUTION)
    kwargs = record.state.get("_init_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    fc0 = mapping.child("fc0")
    fields = dict(
        z_dim=_int(record, "z_dim", 1, MAX_DIM), w_dim=_int(record, "w_dim", 1, MAX_DIM), img_resolution=res,
        img_channels=_int(record, "img_channels", 1, MAX_IMG_CHANNELS),
        c_dim=_int(record, "c_dim", 0, MAX_DIM),
        mapping_layers=_int(mapping, "num_layers", 1, MAX_MAPPING_LAYERS),
        lr_multiplier=as_float(fc0.attr("bias_gain"), "mapping lr_multiplier", 1e-9, 1e3, E),
        channel_base=as_int(kwargs.get("channel_base", 32768), "channel_base", 1, 2 ** 24, E),
        channel_max=as_int(kwargs.get("channel_max", 512), "channel_max", 1, MAX_DIM, E),
        num_layers=_int(synthesis, "num_layers", 1, MAX_SYNTHESIS_LAYERS - 1),
        num_critical=_int(synthesis, "num_critical", 0, MAX_SYNTHESIS_LAYERS - 2),
        margin_size=_int(synthesis, "margin_size", 0, 256),
        output_scale=_float(synthesis, "output_scale", -1e6, 1e6))
    inp = InputSpec(channels=_int(inp_rec, "channels", 1, MAX_DIM), size=_size(inp_rec, "size"),
                    sampling_rate=_float(inp_rec, "sampling_rate", 1, MAX_RATE),
                    bandwidth=_float(inp_rec, "bandwidth", 1e-6, MAX_RATE))
    if inp.sampling_rate / 2 <= inp.bandwidth:
        raise E(f"input bandwidth {inp.bandwidth} is not below half its sampling rate {inp.sampling_rate}")
    names = synthesis.attr("layer_names")
    count = fields["num_layers"] + 1
    if type(names) is not list or len(names) != count \
            or any(type(n) is not str or not n.isidentifier() or len(n) > 40 for n in names):
        raise E(f"synthesis.layer_names is {describe(names)}, not {count} layer names")
    layers = [_layer_spec(synthesis.child(name), name) for name in names]
    _check_chain(inp, layers, fields["img_channels"], res)
    clamps = {s.conv_clamp for s in layers}
    if len(clamps) > 1:
        raise E(f"layers use different conv_clamp values {sorted(map(str, clamps))}")
    # what the layers say wins over the Generator's constructor keywords (which only record
    # what train.py passed)
    cfg = StyleGAN3Config(**fields, conv_clamp=clamps.pop(), conv_kernel=layers[0].conv_kernel,
                          use_radial_filters=any(s.down_radial for s in layers))
    if _int(record, "num_ws", 1, MAX_SYNTHESIS_LAYERS + 1) != len(layers) + 1:
        raise E(f"num_ws {record.attr('num_ws')} is not the {len(layers) + 1} rows of {len(layers)} layers")
    return cfg, inp, tuple(layers)


def load_stylegan3_pickle(path: Union[str, Path], key: str = "G_ema",
                          records: Optional[dict] = None) -> Generator:
    """Official StyleGAN3 pickle -> our StyleGAN3 `Generator` holding the weights of `key`
    (G_ema, the one to use; 'G' only to compare), in eval mode, frozen. records: the file's
    `read_network_pickle(path)` when already read (not read again)."""
    if key not in ("G_ema", "G"):
        raise ValueError(f"key must be 'G_ema' or 'G', got {key!r}")
    data = read_network_pickle(path) if records is None else records
    record = data.get(key)
    try:
        cfg, inp, layers = stylegan3_design(record)
        needed = _parameter_count(cfg, inp, list(layers))
        if needed > MAX_PARAMETERS:
            raise E(f"the generator would hold {needed:,} weights, more than {MAX_PARAMETERS:,}")
        state = record_state_dict(record, max_entries=MAX_MODULE_TENSORS)
        held = sum(math.prod(t.shape) for t in state.values())
        if needed > held + BUILD_SLACK:
            raise E(f"its tensors hold {held:,} weights, its configuration describes {needed:,}")
        G = Generator(cfg, inp, layers)
    except NetworkPickleError as e:
        raise NetworkPickleError(f"{path}: {key}: {e}") from None
    except (ValueError, RuntimeError) as e:
        raise NetworkPickleError(f"{path}: {key} does not describe a StyleGAN3 generator "
                                 f"({clip(str(e), 200)})") from None
    return load_checked(G, state, NetworkPickleError, f"{path}: {key}", ordered=True)
