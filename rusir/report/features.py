"""Inception features of saved images, computed once per image and kept on disk.

FID, KID and patch-FID compare sets of FID-Inception features (2048-d). A feature vector depends
only on the image's pixels and on how it was cut (whole, or which random crops), so the store
keys it by content: sha256 of the file's bytes plus the crop settings (`FeatureSpec`). A second
report of an unchanged folder reads every vector back; a changed PNG gets a new key and is the
only one recomputed. The crop positions of an image are drawn from a seed derived from its hash,
so they too depend on nothing but the image and the settings.

    store = FeatureStore(bench / ".cache" / "features", device="cuda", progress=True)
    feats = store.features([(png, FeatureSpec(crop=32, crops=100, seed=0)), ...])  # [crops, 2048]

All missing vectors of a report are computed in one pass (`features` takes every request of every
cell at once): batches of crops cut as they are needed, one progress bar ("features").
Stored as float32 .npy (the network's own precision), returned as float64 as
`rusir.metrics.inception_features` returns them.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ..progress import progress_bar
from .. import metrics  # by module: tests swap metrics.inception_features
from ..data import load_image
from ..data.outputs import write_file
from ..degradations.base import derive_seed
from ..engine.records import read_png

__all__ = ["FeatureSpec", "FeatureStore", "file_digest", "default_device"]

PathLike = Union[str, Path]


@dataclass(frozen=True)
class FeatureSpec:
    """How an image is cut before the network: `crop` None = the whole image (one vector),
    else `crops` random crops of side `crop`; `resize` the side an image is first resized to
    (a --reference folder's images, to the predictions' side; None: as saved)."""
    crop: Optional[int] = None
    crops: int = 1
    seed: int = 0
    resize: Optional[int] = None

    def tag(self) -> str:
        cut = "whole" if self.crop is None else f"crop{self.crop}x{self.crops}s{self.seed}"
        return cut + ("" if self.resize is None else f"-r{self.resize}")

    @property
    def samples(self) -> int:
        return 1 if self.crop is None else self.crops


def default_device() -> torch.device:
    """CUDA when available (the feature pass is the report's whole cost), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def file_digest(path: PathLike) -> str:
    """sha256 of a file's bytes (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class FeatureStore:
    """Content-keyed Inception features; `folder` None keeps them in memory only."""

    def __init__(self, folder: Optional[PathLike] = None, device=None, progress: bool = False,
                 batch_size: int = 32):
        self.folder = Path(folder) if folder is not None else None
        self.device = torch.device(device) if device is not None else default_device()
        self.progress, self.batch_size = progress, batch_size
        self._memory: dict[str, Tensor] = {}
        self._digests: dict[str, str] = {}
        self.computed = 0   # images whose features this store computed (the rest were read back)

    def digest(self, path: PathLike) -> str:
        """The file's sha256, hashed once per store."""
        key = str(path)
        if key not in self._digests:
            self._digests[key] = file_digest(path)
        return self._digests[key]

    def key(self, path: PathLike, spec: FeatureSpec) -> str:
        """The cache key of one image cut one way: `<sha256>-<spec tag>`."""
        return f"{self.digest(path)}-{spec.tag()}"

    def _file(self, key: str) -> Optional[Path]:
        return None if self.folder is None else self.folder / key[:2] / f"{key}.npy"

    def _load(self, key: str) -> Optional[Tensor]:
        if key in self._memory:
            return self._memory[key]
        path = self._file(key)
        if path is None or not path.is_file():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError):   # a damaged cache file is recomputed
            return None
        self._memory[key] = torch.from_numpy(arr).double()
        return self._memory[key]

    def _save(self, key: str, feats: Tensor) -> None:
        feats = feats.float().double()      # as stored: a report and its re-run agree exactly
        self._memory[key] = feats
        path = self._file(key)
        if path is None:
            return
        buf = io.BytesIO()
        np.save(buf, feats.float().numpy(), allow_pickle=False)
        write_file(path, lambda tmp: tmp.write_bytes(buf.getvalue()))

    def features(self, requests: Sequence[tuple[PathLike, FeatureSpec]]) -> list[Tensor]:
        """[samples, 2048] float64 per request, in order: read back, or computed in one pass."""
        keys = [self.key(p, s) for p, s in requests]
        todo: dict[str, tuple[PathLike, FeatureSpec]] = {}   # grouped by cut below: fewer flushes
        for key, req in zip(keys, requests):
            if key not in todo and self._load(key) is None:
                todo[key] = req
        if todo:
            self._compute(dict(sorted(todo.items(), key=lambda kv: kv[1][1].tag())))
        return [self._memory[k] for k in keys]

    def _compute(self, todo: dict[str, tuple[PathLike, FeatureSpec]]) -> None:
        total = sum(spec.samples for _, spec in todo.values())
        bar = progress_bar(total=total, desc="features", unit="crop", disable=not self.progress)
        pending: dict[str, list[Tensor]] = {k: [] for k in todo}
        try:
            for batch, owners in self._batches(todo):           # batch: [b, 3, h, w]
                feats = metrics.inception_features(batch, batch_size=self.batch_size,
                                                   device=self.device).double().cpu()
                start = 0
                for key, count in owners:
                    pending[key].append(feats[start:start + count])
                    start += count
                    if sum(t.shape[0] for t in pending[key]) == todo[key][1].samples:
                        self._save(key, torch.cat(pending.pop(key)))
                        self.computed += 1
                bar.update(batch.shape[0])
        finally:
            bar.close()

    def _batches(self, todo: dict) -> Iterator[tuple[Tensor, list[tuple[str, int]]]]:
        """Batches of up to batch_size samples over all images, each image cut when its turn comes
        (one image's crops in memory at a time, not a whole cell's), with which image owns how many
        rows of the batch; a batch never mixes sample sizes (crops and whole images)."""
        parts: list[Tensor] = []
        owners: list[tuple[str, int]] = []
        filled = 0
        for key, (path, spec) in todo.items():
            samples = self._cut(path, spec, key)                  # [s, 3, h, w]
            if parts and parts[0].shape[1:] != samples.shape[1:]:   # crops and whole images apart
                yield torch.cat(parts), owners
                parts, owners, filled = [], [], 0
            while samples.shape[0]:
                take, samples = samples[:self.batch_size - filled], samples[self.batch_size - filled:]
                parts.append(take)
                owners.append((key, take.shape[0]))
                filled += take.shape[0]
                if filled == self.batch_size:
                    yield torch.cat(parts), owners
                    parts, owners, filled = [], [], 0
        if parts:
            yield torch.cat(parts), owners

    def _cut(self, path: PathLike, spec: FeatureSpec, key: str) -> Tensor:
        image = load_image(path, spec.resize) if spec.resize else read_png(path)  # [1, 3, H, W]
        if spec.crop is None:
            return image
        seed = derive_seed(spec.seed, key.split("-")[0]) % (2 ** 31)
        return metrics.random_crops(image, spec.crop, spec.crops, seed)
