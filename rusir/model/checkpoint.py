"""Generator checkpoints as single safetensors files (no pickle, so loading runs no code).

The file holds the generator's `state_dict()` (parameters and buffers, incl. `w_avg` and the
constant noise maps) and, in the safetensors string metadata, the constructor config under
"config" (JSON of `G.init_kwargs`) plus free-form provenance under "meta" (JSON: images seen,
wall time, hardware, training command...). Rebuilding from the config means one file is enough.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .safety import (ModelFileError, check_budget, check_config, check_names, clip, describe,
                     check_held, load_checked, new_generator)
from .stylegan2 import Generator

FORMAT = "rusir-generator/1"
MAX_CONFIG_CHARS = 64 * 1024   # our configs are ~300 characters
MAX_META_CHARS = 1024 * 1024   # provenance: command line, hardware, numbers
MAX_HEADER_BYTES = 8 * 1024 * 1024  # tensor entries (~250 for FFHQ-1024), config and meta, escaped
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


class CheckpointError(ModelFileError):
    """A generator file that exists but cannot be turned into a Generator."""


def save_generator(G: Generator, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write G (fp32, contiguous, CPU) and its config + `meta` to a safetensors file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in G.state_dict().items()}
    metadata = {"format": FORMAT, "config": json.dumps(G.init_kwargs, sort_keys=True),
                "meta": json.dumps(meta or {}, sort_keys=True, default=str)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.chmod(0o644)  # safetensors may create the file owner-only; a shipped asset must be readable
    tmp.replace(path)  # atomic: a reader never sees a half-written file
    return path


class _Duplicate(ValueError):
    """A JSON object with a repeated key (raised by `_unique_keys`)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """json's object_pairs_hook: a dict, refusing a repeated key (json keeps the last)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, read here with its size bounded: the format forbids
    a repeated name, but the safetensors library keeps the last entry of one, so a file could
    hold two tensors under one name (or two configs) and show each reader a different one."""
    path = _existing(path)
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if size > MAX_HEADER_BYTES:
            raise CheckpointError(f"{path} is not a safetensors file of a generator: its header "
                                  f"would be {size:,} bytes (at most {MAX_HEADER_BYTES:,})")
        text = f.read(size)
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys)
    except _Duplicate as exc:
        raise CheckpointError(f"{path}: the safetensors header names {clip(str(exc), 80)} twice "
                              "(the format forbids it)") from None
    except (ValueError, RecursionError) as exc:   # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{path} is not a safetensors file (its header is not JSON: "
                              f"{clip(str(exc), 120)})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors file (its header is {describe(header)})")
    return header


def read_metadata(path: str | Path) -> dict[str, Any]:
    """{"config": dict, "meta": dict} of a generator file, without loading tensors."""
    path = _existing(path)
    read_header(path)   # a repeated name or an oversized header is refused here
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a safetensors file ({exc})") from exc
    if "config" not in raw:
        raise CheckpointError(f"{path} has no generator 'config' in its safetensors metadata; "
                              "it was not written by rusir.model.checkpoint.save_generator")
    out = {}
    for key, default, limit in (("config", None, MAX_CONFIG_CHARS), ("meta", "{}", MAX_META_CHARS)):
        text = raw.get(key, default)
        if len(text) > limit:
            raise CheckpointError(f"{path}: metadata {key!r} is {len(text):,} characters long "
                                  f"(at most {limit:,})")
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise CheckpointError(f"{path}: metadata {key!r} is not valid JSON "
                                  f"({type(exc).__name__}: {clip(str(exc), 120)})") from None
        if not isinstance(value, dict):
            raise CheckpointError(f"{path}: metadata {key!r} is {describe(value)}, not a JSON object")
        out[key] = value
    return out


def load_generator_file(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Rebuild the Generator of a file written by `save_generator`: eval mode, no grads."""
    info = read_metadata(path)
    try:
        config = check_config(info["config"], CheckpointError)
        check_budget(config, CheckpointError)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: config does not describe a sane Generator: {exc}") from None
    try:
        # the header first (names, shapes, dtypes), so nothing is built or read that the config
        # does not ask for
        with safe_open(str(path), framework="pt") as f:
            header = {name: f.get_slice(name) for name in f.keys()}
            check_held(config, [v.get_shape() for v in header.values()], CheckpointError, str(path))
            G = new_generator(config, CheckpointError, str(path))
            check_names({k: v.get_shape() for k, v in header.items()},
                        {k: v.shape for k, v in G.state_dict().items()}, CheckpointError, str(path))
            for name, view in header.items():
                if view.get_dtype() not in _FLOAT_DTYPES:
                    raise CheckpointError(f"{path}: tensor {clip(name, 80)} has dtype "
                                          f"{view.get_dtype()}; generator weights must be floating point")
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: tensors could not be read ({clip(str(exc), 200)})") from None
    return load_checked(G, state, CheckpointError, str(path)).to(device)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"generator file not found: {path}")
    return path
