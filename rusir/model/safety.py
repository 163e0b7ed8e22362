"""Checks shared by the two generator-file readers (official pickles, rusir safetensors).

A model file is untrusted input. Before anything is built from it, its configuration is
validated (types, ranges, a parameter budget), its tensors are matched by name, shape and dtype
against the generator that configuration describes, each tensor must be a plain view of its own
storage (no stride-0 or overlapping view of a small storage posing as a huge tensor) and every
weight must be finite. Error messages never format an untrusted object whole: `describe` gives
its type and a bounded, non-recursive preview (a memo-shared nested tuple of a few hundred bytes
has a repr of terabytes).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch

from .stylegan2 import Generator

# Sane bounds for a StyleGAN2 generator (FFHQ-1024: dims 512, 8 mapping layers, 30.4M parameters).
MAX_DIM = 4096            # z_dim, c_dim, w_dim, feature and channel counts
MAX_RESOLUTION = 4096
MAX_IMG_CHANNELS = 16
MAX_MAPPING_LAYERS = 32
MAX_CHANNEL_BASE = 2 ** 24
MAX_FP16_RES = 16
MAX_PARAMETERS = 2 ** 28  # elements in the whole state dict (1 GiB of float32)
BUILD_SLACK = 2 ** 20     # weights a generator may be built beyond what its file holds (4 MiB)


class ModelFileError(ValueError):
    """A generator file that cannot be turned into a Generator (malformed, hostile, unsupported)."""


def clip(text: str, limit: int = 60) -> str:
    """repr() of at most `limit` characters of `text` (one line), noting what was cut."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def describe(obj: Any, limit: int = 60) -> str:
    """A short, safe summary of an untrusted object: its type and a bounded preview. Never
    recurses into containers and never calls their repr (which can take exponential time)."""
    t = type(obj)
    if obj is None or t is bool:
        return repr(obj)
    if t is int:
        return repr(obj) if obj.bit_length() <= 64 else f"an int of {obj.bit_length()} bits"
    if t is float:
        return repr(obj)
    if t is str:
        return clip(obj, limit)
    if t in (bytes, bytearray):
        return f"{t.__name__} of length {len(obj)}"
    if t in (tuple, list, dict, set, frozenset) or isinstance(obj, dict):
        return f"a {t.__name__} of {len(obj)} items"
    if isinstance(obj, torch.Tensor):
        return f"a {obj.dtype} tensor of shape {list(obj.shape)[:8]}"
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return f"numpy {t.__name__} {obj.item()!r}"
    return f"a {t.__name__} object"


def as_int(value: Any, name: str, lo: int, hi: int, error: type = ModelFileError) -> int:
    """`value` as an int in [lo, hi] (a Python or numpy integer; not bool, not float)."""
    if type(value) is int or isinstance(value, np.integer):
        value = int(value)
        if lo <= value <= hi:
            return value
    raise error(f"{name} must be an integer in {lo}..{hi}, got {describe(value)}")


def as_float(value: Any, name: str, lo: float, hi: float, error: type = ModelFileError) -> float:
    """`value` as a finite float in [lo, hi] (a Python or numpy int/float; not bool)."""
    if type(value) in (int, float) or isinstance(value, (np.integer, np.floating)):
        f = float(value)
        if math.isfinite(f) and lo <= f <= hi:
            return f
    raise error(f"{name} must be a number in {lo:g}..{hi:g}, got {describe(value)}")


def _power_of_two(value: Any, name: str, error: type) -> int:
    value = as_int(value, name, 4, MAX_RESOLUTION, error)
    if value & (value - 1):
        raise error(f"{name} must be a power of two in 4..{MAX_RESOLUTION}, got {value}")
    return value


_MAPPING_KEYS = {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier",
                 "w_avg_beta"}
_SYNTHESIS_KEYS = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture"}
_GENERATOR_KEYS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")


def _keys(d: Any, name: str, allowed: set, error: type) -> dict:
    if not isinstance(d, dict):
        raise error(f"{name} must be a mapping, got {describe(d)}")
    for key in d:
        if type(key) is not str or key not in allowed:
            raise error(f"{name} has the key {describe(key)}, which is not a StyleGAN2 Generator "
                        f"argument (expected some of {sorted(allowed)})")
    return d


def check_config(config: Any, error: type = ModelFileError) -> dict:
    """Validate Generator constructor kwargs from a file; return them (unchanged) if sane.

    Every value must have the right type and lie within bounds, and the whole network must stay
    within MAX_PARAMETERS, so that building it can neither crash nor allocate without bound."""
    cfg = _keys(config, "config", set(_GENERATOR_KEYS) | {"mapping_kwargs", "synthesis_kwargs"}, error)
    missing = [k for k in _GENERATOR_KEYS if k not in cfg]
    if missing:
        raise error(f"config lacks {missing}")
    as_int(cfg["z_dim"], "z_dim", 1, MAX_DIM, error)
    as_int(cfg["c_dim"], "c_dim", 0, MAX_DIM, error)
    as_int(cfg["w_dim"], "w_dim", 1, MAX_DIM, error)
    res = _power_of_two(cfg["img_resolution"], "img_resolution", error)
    as_int(cfg["img_channels"], "img_channels", 1, MAX_IMG_CHANNELS, error)

    m = cfg.get("mapping_kwargs")
    m = _keys({} if m is None else m, "mapping_kwargs", _MAPPING_KEYS, error)
    if "num_layers" in m:
        as_int(m["num_layers"], "mapping num_layers", 1, MAX_MAPPING_LAYERS, error)
    for key in ("embed_features", "layer_features"):
        if m.get(key) is not None:
            as_int(m[key], f"mapping {key}", 1, MAX_DIM, error)
    if "activation" in m and m["activation"] not in ("lrelu", "linear"):
        raise error(f"mapping activation must be 'lrelu' or 'linear', got {describe(m['activation'])}")
    if "lr_multiplier" in m:
        as_float(m["lr_multiplier"], "mapping lr_multiplier", 1e-6, 1e3, error)
    if m.get("w_avg_beta") is not None:
        as_float(m["w_avg_beta"], "mapping w_avg_beta", 0.0, 1.0, error)

    s = cfg.get("synthesis_kwargs")
    s = _keys({} if s is None else s, "synthesis_kwargs", _SYNTHESIS_KEYS, error)
    base = as_int(s["channel_base"], "channel_base", 1, MAX_CHANNEL_BASE, error) if "channel_base" in s else 32768
    if "channel_max" in s:
        as_int(s["channel_max"], "channel_max", 1, MAX_DIM, error)
    if base < res:
        raise error(f"channel_base {base} < img_resolution {res} would leave blocks without channels")
    if "num_fp16_res" in s:
        as_int(s["num_fp16_res"], "num_fp16_res", 0, MAX_FP16_RES, error)
    if s.get("conv_clamp") is not None:
        as_float(s["conv_clamp"], "conv_clamp", 1e-6, 1e9, error)
    if s.get("architecture", "skip") != "skip":
        raise error(f"synthesis architecture {describe(s['architecture'])} is not supported (only 'skip')")
    return cfg


def parameter_count(config: dict) -> int:
    """Number of elements in the state dict of the Generator a *checked* config describes,
    computed without building it (tests check it against real generators)."""
    m, s = config.get("mapping_kwargs") or {}, config.get("synthesis_kwargs") or {}
    z, c, w, res, k = (config[key] for key in _GENERATOR_KEYS)
    embed = (w if m.get("embed_features") is None else m["embed_features"]) if c else 0
    hidden = w if m.get("layer_features") is None else m["layer_features"]
    layers = m.get("num_layers", 8)
    features = [z + embed] + [hidden] * (layers - 1) + [w]
    n = sum(a * b + b for a, b in zip(features[:-1], features[1:]))
    n += (c * embed + embed) if c else 0
    n += w if m.get("w_avg_beta", 0.995) is not None else 0
    base, cmax = s.get("channel_base", 32768), s.get("channel_max", 512)
    channels = {r: min(base // r, cmax) for r in (2 ** i for i in range(2, res.bit_length()))}
    for r, cout in channels.items():
        cin = channels.get(r // 2, 0)
        n += 16 + (cout * 16 if r == 4 else 0)                        # resample_filter, const
        for i in ([cin, cout] if r > 4 else [cout]):                  # conv0, conv1
            n += w * i + i + cout * i * 9 + 1 + cout + 16 + r * r
        n += w * cout + cout + k * cout + k                           # torgb
    return n


def check_budget(config: dict, error: type = ModelFileError) -> int:
    """Refuse a (checked) config whose generator exceeds MAX_PARAMETERS; return its size."""
    total = parameter_count(config)
    if total > MAX_PARAMETERS:
        raise error(f"config describes a generator of {total:,} weights, more than the "
                    f"{MAX_PARAMETERS:,} this loader accepts")
    return total


def check_held(config: dict, shapes: Iterable[Sequence[int]], error: type, where: str) -> None:
    """Refuse a file whose tensors (their declared `shapes`) hold far fewer weights than the
    generator its (checked) config describes, before anything is built: a file of a few hundred
    bytes made the loader build a 1 GiB generator only to find it had no weights. Up to
    BUILD_SLACK more is built anyway, so that the error can then name the tensors that differ."""
    needed = check_budget(config, error)
    held = sum(math.prod(shape) for shape in shapes)
    if needed > held + BUILD_SLACK:
        raise error(f"{where}: tensors do not match the generator of its config: they hold "
                    f"{held:,} weights, the config describes {needed:,}")


def view_problem(t: torch.Tensor) -> Optional[str]:
    """Why tensor `t` is not a plain view of its own storage, or None. A plain view addresses
    each storage element at most once and stays inside the storage, so a tensor can never be
    larger than the bytes that the file really holds for it."""
    if t.numel() == 0:
        return None
    elements = t.untyped_storage().nbytes() // t.element_size()
    reach = 0  # largest offset the dims seen so far can address
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride <= reach:
            return (f"is a stride-{stride} (overlapping) view of a storage of {elements} elements; "
                    "generator weights are plain arrays")
        reach += (size - 1) * stride
    if t.storage_offset() + reach >= elements:
        return f"extends past the end of its storage of {elements} elements"
    return None


def check_names(shapes: dict, expected: dict, error: type, where: str, ordered: bool = False) -> None:
    """The tensor names and shapes of a file ({name: shape}) against the expected generator."""
    names = list(shapes)
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in names if k not in expected]
    wrong = [k for k in names if k in expected and tuple(shapes[k]) != tuple(expected[k])]
    if missing or unexpected or wrong or (ordered and names != list(expected)):
        what = ", ".join(clip(k, 80) for k in wrong[:5])
        raise error(f"{where}: tensors do not match the generator of its config: missing "
                    f"{[clip(k, 80) for k in missing[:5]]}, unexpected "
                    f"{[clip(k, 80) for k in unexpected[:5]]}, wrong shape [{what}]"
                    + (" (or out of order)" if ordered else ""))


def check_tensors(state: dict, expected: dict, error: type, where: str, ordered: bool = False) -> None:
    """Names, shapes, dtypes and storages of `state` against the expected generator."""
    for name, t in state.items():
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.is_meta:
            raise error(f"{where}: {clip(name, 80)} is {describe(t)}, not a dense tensor")
    check_names({k: t.shape for k, t in state.items()}, expected, error, where, ordered)
    for name, t in state.items():
        if not t.is_floating_point():
            raise error(f"{where}: tensor {clip(name, 80)} has dtype {t.dtype}; generator "
                        "weights must be floating point")
        problem = view_problem(t)
        if problem:
            raise error(f"{where}: tensor {clip(name, 80)} {problem}")


def new_generator(config: dict, error: type, where: str) -> Generator:
    """The (randomly initialised) Generator of a checked config, built only within the budget."""
    check_budget(config, error)
    try:
        return Generator(**config)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as exc:
        raise error(f"{where}: config does not describe a Generator ({clip(str(exc), 200)})") from None


def load_checked(G: Generator, state: dict, error: type, where: str, ordered: bool = False) -> Generator:
    """Load `state` into G after checking its tensors (names, shapes, dtypes, storages) with
    strict=True; every loaded value must be finite. Eval mode, frozen."""
    check_tensors(state, OrderedDict((k, v.shape) for k, v in G.state_dict().items()), error, where,
                  ordered=ordered)
    G.load_state_dict(state, strict=True)
    loaded = G.state_dict()
    for name in nonfinite(loaded)[:1]:
        bad = int((~torch.isfinite(loaded[name])).sum())
        raise error(f"{where}: tensor {clip(name, 80)} has {bad} non-finite values (NaN or Inf); "
                    "it would render blank images")
    return G.eval().requires_grad_(False)


def nonfinite(tensors: dict) -> list:
    """Names of the tensors holding NaN or Inf. One fused norm per tensor screens them (a
    norm is finite iff every value is, unless huge values overflow it), then an exact check."""
    names, values = list(tensors), list(tensors.values())
    try:  # private, but what clip_grad_norm_ has used since torch 1.x; 10x faster than isfinite
        norms = torch.stack(torch._foreach_norm(values)) if values else torch.zeros(0)
        suspects = torch.nonzero(~torch.isfinite(norms)).flatten().tolist()
    except (AttributeError, RuntimeError, TypeError):
        suspects = range(len(values))
    return [names[i] for i in suspects if not bool(torch.isfinite(values[i]).all())]


def build_generator(config: dict, state: dict, error: type, where: str,
                    ordered: bool = False) -> Generator:
    """`check_held`, `new_generator`, then `load_checked`."""
    check_held(config, (t.shape for t in state.values()), error, where)
    return load_checked(new_generator(config, error, where), state, error, where, ordered)
