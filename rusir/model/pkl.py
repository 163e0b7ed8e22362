"""Load official StyleGAN2-ADA network pickles without executing anything stored in them.

Official pickles rebuild every network by *executing Python source embedded in the file*
(`torch_utils.persistence`). A plain `pickle.load` is therefore arbitrary code execution. Here a
restricted unpickler resolves only the globals such files legitimately reference
(../shared/spec/stylegan2-ada-format.md, 1.5), turns each persistent module into a plain record
(class name + saved state; rusir.model.unpickler), and we rebuild *our* Generator from those states and load the
weights with `strict=True`.

The file is untrusted, so reading it must also stay bounded in time and memory: the unpickler
counts opcodes and nesting, only ever hashes plain atoms (a dict key or set element that is a
memo-shared nested tuple takes exponential time to hash), never builds objects other than the
allow-listed ones, reads each storage from the exact bytes the file holds (the legacy format of
official files; never a compressed archive that could expand), and the configuration is
validated before anything is built (rusir.model.safety).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from .safety import (MAX_CHANNEL_BASE, MAX_DIM, MAX_IMG_CHANNELS, MAX_MAPPING_LAYERS, MAX_RESOLUTION,
                     as_float, as_int, build_generator, check_budget, check_config, clip, describe)
from .stylegan2 import Generator
from .unpickler import (EasyDict, NetworkPickleError, PersistentRecord, UnsafePickleError,
                        read_network_pickle)

__all__ = ["load_network_pickle", "read_network_pickle", "generator_config", "record_state_dict",
           "NetworkPickleError", "UnsafePickleError", "PersistentRecord", "EasyDict"]

MAX_MODULE_DEPTH = 8       # record tree below G_ema (official: 4)
MAX_MODULE_TENSORS = 10_000  # tensors below G_ema (official FFHQ-1024: 182)


# ---------------------------------------------------------------------------------------------
# From records to a Generator

def _mapping_of(record: PersistentRecord, key: str) -> dict:
    value = record.state.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NetworkPickleError(f"{record.class_name}.{key} is {describe(value)}, not a dict")
    return value


def record_state_dict(record: PersistentRecord, prefix: str = "",
                      max_entries: Optional[int] = None) -> "OrderedDict[str, torch.Tensor]":
    """Walk a record tree like nn.Module.state_dict(): own params, own buffers, then children.
    Iterative, at most MAX_MODULE_DEPTH deep, each record once (no shared or cyclic modules)."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    seen: set[int] = set()
    todo = [(record, prefix, 0)]
    while todo:
        rec, pre, depth = todo.pop()
        if depth > MAX_MODULE_DEPTH:
            raise NetworkPickleError(f"module tree deeper than {MAX_MODULE_DEPTH} levels at "
                                     f"{clip(pre, 80)}: not a StyleGAN2 generator")
        if id(rec) in seen:
            raise NetworkPickleError(f"module {clip(pre, 80)} appears twice in the module tree")
        seen.add(id(rec))
        skip = rec.state.get("_non_persistent_buffers_set")
        if type(skip) not in (set, frozenset, list, tuple, type(None)):
            raise NetworkPickleError(f"{rec.class_name}._non_persistent_buffers_set is {describe(skip)}")
        skip = {x for x in skip or () if type(x) is str}
        entries = list(_mapping_of(rec, "_parameters").items())
        entries += [(k, v) for k, v in _mapping_of(rec, "_buffers").items() if k not in skip]
        for name, t in entries:
            if type(name) is not str:
                raise NetworkPickleError(f"tensor name {describe(name)} in {rec.class_name}")
            if t is None:
                continue
            if not isinstance(t, torch.Tensor):
                raise NetworkPickleError(f"{clip(pre + name, 80)} is {describe(t)}, not a tensor")
            out[pre + name] = t.detach()
        if max_entries is not None and len(out) > max_entries:
            raise NetworkPickleError(f"more than the {max_entries} tensors of the configured generator")
        children = [(name, child) for name, child in _mapping_of(rec, "_modules").items()
                    if isinstance(child, PersistentRecord)]
        for name, child in reversed(children):
            if type(name) is not str:
                raise NetworkPickleError(f"module name {describe(name)} in {rec.class_name}")
            todo.append((child, pre + name + ".", depth + 1))
    return out


def _weight(record: PersistentRecord, what: str, dims: int) -> torch.Tensor:
    w = _mapping_of(record, "_parameters").get("weight")
    if not isinstance(w, torch.Tensor) or w.dim() != dims:
        raise NetworkPickleError(f"{what}.weight is {describe(w)}, not a {dims}-d tensor")
    return w


def _flag(value: Any, name: str) -> bool:
    if type(value) is bool or isinstance(value, np.bool_) or (type(value) is int and value in (0, 1)):
        return bool(value)
    raise NetworkPickleError(f"{name} is {describe(value)}, not a bool")


def _optional_number(value: Any, name: str, lo: float, hi: float) -> Optional[float]:
    return None if value is None else as_float(value, name, lo, hi, NetworkPickleError)


def generator_config(record: PersistentRecord) -> dict:
    """Constructor kwargs for our Generator, read from the *resolved* per-module attributes;
    every value is type- and range-checked as it is read."""
    if not isinstance(record, PersistentRecord) or record.class_name != "Generator":
        what = describe(record.class_name if isinstance(record, PersistentRecord) else record)
        raise NetworkPickleError(f"G_ema is a {what}, not a StyleGAN2 'Generator'")
    E = NetworkPickleError
    res = as_int(record.attr("img_resolution"), "img_resolution", 4, MAX_RESOLUTION, E)
    z_dim = as_int(record.attr("z_dim"), "z_dim", 1, MAX_DIM, E)
    c_dim = as_int(record.attr("c_dim"), "c_dim", 0, MAX_DIM, E)
    w_dim = as_int(record.attr("w_dim"), "w_dim", 1, MAX_DIM, E)
    img_channels = as_int(record.attr("img_channels"), "img_channels", 1, MAX_IMG_CHANNELS, E)
    mapping, synthesis = record.child("mapping"), record.child("synthesis")
    if res & (res - 1):
        raise E(f"img_resolution must be a power of two, got {res}")
    resolutions = [2 ** i for i in range(2, res.bit_length())]
    listed = synthesis.attr("block_resolutions")
    if type(listed) not in (list, tuple) or len(listed) > 16 \
            or [as_int(r, "block resolution", 4, MAX_RESOLUTION, E) for r in listed] != resolutions:
        raise E(f"synthesis block_resolutions {describe(listed)} is not 4..{res} by powers of two")
    blocks = [synthesis.child(f"b{r}") for r in resolutions]
    for b in blocks:
        arch = b.state.get("architecture", "skip")
        if arch != "skip":
            raise E(f"synthesis architecture {describe(arch)} is not supported (only 'skip')")
    channels = {r: as_int(_weight(b.child("conv1"), f"b{r}.conv1", 4).shape[0], f"b{r} channels", 1, MAX_DIM, E)
                for r, b in zip(resolutions, blocks)}
    channel_max = max(channels.values())

    def kwarg(source: Any, key: str) -> Any:
        return source.get(key) if isinstance(source, dict) else None
    gen_kwargs = _mapping_of(record, "_init_kwargs")
    channel_base = next((v for v in (kwarg(_mapping_of(synthesis, "_init_kwargs"), "channel_base"),
                                     kwarg(gen_kwargs.get("synthesis_kwargs"), "channel_base"),
                                     gen_kwargs.get("channel_base")) if v is not None),
                        channels[res] * res)
    conv1 = blocks[0].child("conv1").state
    ms = mapping.state
    fc0 = _weight(mapping.child("fc0"), "mapping.fc0", 2)
    return dict(
        z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=res, img_channels=img_channels,
        mapping_kwargs=dict(
            num_layers=as_int(mapping.attr("num_layers"), "mapping num_layers", 1, MAX_MAPPING_LAYERS, E),
            w_avg_beta=_optional_number(ms.get("w_avg_beta"), "mapping w_avg_beta", 0.0, 1.0),
            layer_features=as_int(fc0.shape[0], "mapping layer features", 1, MAX_DIM, E),
            embed_features=as_int(_weight(mapping.child("embed"), "mapping.embed", 2).shape[0],
                                  "mapping embed features", 1, MAX_DIM, E) if c_dim > 0 else None),
        synthesis_kwargs=dict(
            channel_base=as_int(channel_base, "channel_base", 1, MAX_CHANNEL_BASE, E), channel_max=channel_max,
            num_fp16_res=sum(_flag(b.state.get("use_fp16", False), f"b{r}.use_fp16")
                             for r, b in zip(resolutions, blocks)),
            conv_clamp=_optional_number(conv1.get("conv_clamp"), "conv_clamp", 1e-6, 1e9),
            architecture="skip"),
    )


def load_network_pickle(path: Union[str, Path], records: Optional[dict] = None) -> Generator:
    """Official StyleGAN2-ADA pickle -> our `Generator` holding its `G_ema` weights (eval, frozen).
    records: the file's `read_network_pickle(path)` when already read (not read again)."""
    data = read_network_pickle(path) if records is None else records
    record = data["G_ema"]
    if not isinstance(record, PersistentRecord):
        raise NetworkPickleError(f"{path}: G_ema is {describe(record)}, not a persistent network object")
    try:
        config = check_config(generator_config(record), NetworkPickleError)
        check_budget(config, NetworkPickleError)
        state = record_state_dict(record, max_entries=MAX_MODULE_TENSORS)
    except NetworkPickleError as e:
        raise NetworkPickleError(f"{path}: {e}") from None
    return build_generator(config, state, NetworkPickleError, str(path), ordered=True)
