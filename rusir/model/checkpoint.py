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

from .stylegan2 import Generator

FORMAT = "rusir-generator/1"


class CheckpointError(ValueError):
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


def read_metadata(path: str | Path) -> dict[str, Any]:
    """{"config": dict, "meta": dict} of a generator file, without loading tensors."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a safetensors file ({exc})") from exc
    if "config" not in raw:
        raise CheckpointError(f"{path} has no generator 'config' in its safetensors metadata; "
                              "it was not written by rusir.model.checkpoint.save_generator")
    try:
        return {"config": json.loads(raw["config"]), "meta": json.loads(raw.get("meta", "{}"))}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})") from exc


def load_generator_file(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Rebuild the Generator of a file written by `save_generator`: eval mode, no grads."""
    info = read_metadata(path)
    try:
        G = Generator(**info["config"])
    except TypeError as exc:
        raise CheckpointError(f"{path}: config does not describe a Generator ({exc})") from exc
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: tensors could not be read ({exc})") from exc
    expected = G.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: tensors do not match the config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}")
    G.load_state_dict(state, strict=True)
    return G.to(device).eval().requires_grad_(False)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"generator file not found: {path}")
    return path
