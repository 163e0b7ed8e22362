"""Load official StyleGAN2-ADA network pickles without executing anything stored in them.

Official pickles rebuild every network by *executing Python source embedded in the file*
(`torch_utils.persistence`). A plain `pickle.load` is therefore arbitrary code execution. Here a
restricted unpickler resolves only the globals such files legitimately reference
(../shared/spec/stylegan2-ada-format.md, 1.5), turns each persistent module into a plain record
(class name + saved state), and we rebuild *our* Generator from those states and load the
weights with `strict=True`.
"""
from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import torch

from .stylegan2 import Generator


class UnsafePickleError(pickle.UnpicklingError):
    """The file references a global that official StyleGAN2-ADA pickles never use."""


class NetworkPickleError(ValueError):
    """The file is not a (complete, supported) StyleGAN2-ADA network pickle."""


@dataclass
class PersistentRecord:
    """Stand-in for an official persistent module: its class name and saved `__dict__`."""
    class_name: str
    state: dict


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def _reconstruct_persistent_obj(meta: dict) -> PersistentRecord:
    """Replaces torch_utils.persistence._reconstruct_persistent_obj: never runs module_src."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise NetworkPickleError("unexpected persistent object (type is not 'class')")
    if meta.get("version") != 6:
        raise NetworkPickleError(f"unsupported persistence format version {meta.get('version')!r} (expected 6)")
    return PersistentRecord(str(meta["class_name"]), dict(meta["state"]))


def _load_storage(blob: bytes):
    """Replaces torch.storage._load_from_bytes with torch's weights-only loader."""
    return torch.load(io.BytesIO(blob), weights_only=True)


def _numpy_scalar(dtype: np.dtype, data: bytes = b"") -> np.generic:
    """Replaces numpy's scalar reconstructor: decode the raw bytes with the dtype."""
    return np.frombuffer(data, dtype=dtype)[0]


# module, name -> the object it resolves to. Nothing else may be referenced.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ALLOWED_GLOBALS and refuses everything else by name."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global '{module}.{name}': official StyleGAN2-ADA pickles never "
                "reference it, so the file is not one (or has been tampered with)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids are not used by StyleGAN2-ADA network pickles")


def read_network_pickle(path: Union[str, Path]) -> dict:
    """Unpickle a network file safely; return its top-level dict of records."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"network pickle not found: {path}")
    with open(path, "rb") as f:
        head = f.read(2)
        if len(head) < 2 or head[0] != 0x80:
            raise NetworkPickleError(f"{path} is not a pickle file (no pickle protocol header)")
        f.seek(0)
        try:
            data = RestrictedUnpickler(f).load()
        except UnsafePickleError:
            raise
        except EOFError as e:
            raise NetworkPickleError(f"{path} is truncated (unexpected end of file)") from e
        except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                RuntimeError, OverflowError, UnicodeDecodeError) as e:
            raise NetworkPickleError(f"{path} is corrupt or not a network pickle: {e}") from e
    if not isinstance(data, dict) or "G_ema" not in data:
        raise NetworkPickleError(f"{path} holds no 'G_ema': not a StyleGAN2-ADA network pickle")
    return data


def record_state_dict(record: PersistentRecord, prefix: str = "") -> "OrderedDict[str, torch.Tensor]":
    """Walk a record tree like nn.Module.state_dict(): own params, own buffers, then children."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    state = record.state
    for name, p in (state.get("_parameters") or {}).items():
        if p is not None:
            out[prefix + name] = p.detach()
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for name, b in (state.get("_buffers") or {}).items():
        if b is not None and name not in skip:
            out[prefix + name] = b.detach()
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, PersistentRecord):
            out.update(record_state_dict(child, prefix + name + "."))
    return out


def _child(record: PersistentRecord, name: str) -> PersistentRecord:
    child = (record.state.get("_modules") or {}).get(name)
    if not isinstance(child, PersistentRecord):
        raise NetworkPickleError(f"{record.class_name} has no sub-module {name!r}")
    return child


def generator_config(record: PersistentRecord) -> dict:
    """Constructor kwargs for our Generator, read from the *resolved* per-module attributes."""
    if record.class_name != "Generator":
        raise NetworkPickleError(f"G_ema is a {record.class_name!r}, not a StyleGAN2 'Generator'")
    st = record.state
    mapping, synthesis = _child(record, "mapping"), _child(record, "synthesis")
    ms, ss = mapping.state, synthesis.state
    blocks = [_child(synthesis, f"b{r}") for r in ss["block_resolutions"]]
    archs = {b.state.get("architecture", "skip") for b in blocks}
    if archs != {"skip"}:
        raise NetworkPickleError(f"synthesis architecture {sorted(archs)} is not supported (only 'skip')")
    conv1 = _child(blocks[0], "conv1").state
    res = int(st["img_resolution"])
    channels = {b.state["resolution"]: _child(b, "conv1").state["_parameters"]["weight"].shape[0]
                for b in blocks}
    channel_max = max(channels.values())
    kwargs = dict(ss.get("_init_kwargs") or {})
    gen_kwargs = record.state.get("_init_kwargs") or {}
    channel_base = kwargs.get("channel_base") or (gen_kwargs.get("synthesis_kwargs") or {}).get("channel_base") \
        or gen_kwargs.get("channel_base") or channels[res] * res
    fc0 = _child(mapping, "fc0").state["_parameters"]["weight"]
    return dict(
        z_dim=int(st["z_dim"]), c_dim=int(st["c_dim"]), w_dim=int(st["w_dim"]),
        img_resolution=res, img_channels=int(st["img_channels"]),
        mapping_kwargs=dict(
            num_layers=int(ms["num_layers"]),
            w_avg_beta=None if ms.get("w_avg_beta") is None else float(ms["w_avg_beta"]),
            layer_features=int(fc0.shape[0]),
            embed_features=int(_child(mapping, "embed").state["_parameters"]["weight"].shape[0])
            if int(st["c_dim"]) > 0 else None),
        synthesis_kwargs=dict(
            channel_base=int(channel_base), channel_max=int(channel_max),
            num_fp16_res=sum(bool(b.state.get("use_fp16")) for b in blocks),
            conv_clamp=None if conv1.get("conv_clamp") is None else float(conv1["conv_clamp"]),
            architecture="skip"),
    )


def load_network_pickle(path: Union[str, Path]) -> Generator:
    """Official StyleGAN2-ADA pickle -> our `Generator` holding its `G_ema` weights (eval, frozen)."""
    data = read_network_pickle(path)
    record = data["G_ema"]
    if not isinstance(record, PersistentRecord):
        raise NetworkPickleError(f"{path}: G_ema is not a persistent network object")
    config = generator_config(record)
    G = Generator(**config)
    state = record_state_dict(record)
    expected = G.state_dict()
    if list(state) != list(expected) or any(state[k].shape != expected[k].shape for k in state):
        missing = sorted(set(expected) - set(state))[:5]
        extra = sorted(set(state) - set(expected))[:5]
        raise NetworkPickleError(
            f"{path}: G_ema's tensors do not match a StyleGAN2-ADA generator of config {config} "
            f"(missing {missing}, unexpected {extra})")
    G.load_state_dict(state, strict=True)
    return G.eval().requires_grad_(False)
