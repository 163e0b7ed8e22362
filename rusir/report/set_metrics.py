"""Set (realism) metrics of every cell from the saved PNGs: patch-FID, FID, KID, IS.

A set metric is one number per set of images, not a mean over images, and below some sample
size it carries no meaning (docs/report.md, "Sample sizes"): FID's 2048-d covariance is rank
deficient below 2049 samples, KID's estimate is mostly noise below 100. Such a metric is not
computed -- no Inception call is made for it -- and reads `n too small: N < M`.

The realism metric of the paper is patch-FID: FID between random crops of the predictions and
of the reference (default: the cell's ground truths; `reference=` a folder), crop side
`metrics.default_crop_size` (128 px at >= 256 px as the paper; half the side below) and
`default_crops` per image (the paper's 1000 at >= 256 px; 100 below). With repeats, each repeat's
predictions are one set: the value is the mean over repeats, `<name>_repeat_sd` their spread.

Features come from a `FeatureStore` (computed once per image, all cells in one pass); the
metric values are cached per cell in `<bench>/report/set_metrics.json` under a signature of the
feature keys and settings, so an unchanged folder is read back without touching the network.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch
from PIL import Image

from .. import metrics
from ..engine.availability import UNAVAILABLE, MetricCache
from ..engine.plan import resolve_images
from ..engine.records import read_json, read_png, warn_damaged, write_json
from ..validation import MAX_COUNT, MAX_CROPS, side, whole
from .features import FeatureSpec, FeatureStore
from .summary import cells, repeat_of

__all__ = ["MIN_SAMPLES", "SetMetricConfig", "default_crops", "set_metrics_for", "cache_folder"]

# The smallest sample (crops for patch-FID, images otherwise, per set and repeat) a metric is
# computed for: docs/report.md, "Sample sizes", says why.
MIN_SAMPLES = {"patch_fid": 2049, "fid": 2049, "kid": 100, "is": 1000}
PathLike = Union[str, Path]


def default_crops(side: int) -> int:
    """Patch-FID crops per image: the paper's 1000 at >= 256 px, else 100."""
    return 1000 if side >= 256 else 100


def cache_folder(directory: PathLike) -> Path:
    """Where a bench folder keeps its Inception features (ignored by the record reader)."""
    return Path(directory) / ".cache" / "features"


@dataclass(frozen=True)
class SetMetricConfig:
    """What the set metrics are computed with, checked once: `crop_size`/`crops` None = the
    default for the image side (0 is refused); `min_samples` overrides MIN_SAMPLES per metric."""
    names: tuple = tuple(metrics.SET_METRICS)
    crop_size: Optional[int] = None
    crops: Optional[int] = None
    reference: Optional[str] = None
    seed: int = 0
    min_samples: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self):
        names = tuple(self.names)
        unknown = [n for n in names if n not in metrics.SET_METRICS]
        if unknown:
            raise ValueError(f"unknown set metric(s) {unknown}; valid: {list(metrics.SET_METRICS)}")
        object.__setattr__(self, "names", names)
        if self.crop_size is not None:
            object.__setattr__(self, "crop_size", side(self.crop_size, "patch-FID crop size"))
        if self.crops is not None:
            object.__setattr__(self, "crops", whole(self.crops, "patch-FID crops per image", 1,
                                                    MAX_CROPS, "MAX_CROPS"))
        bad = [k for k in self.min_samples if k not in MIN_SAMPLES]
        if bad:
            raise ValueError(f"min_samples for unknown set metric(s) {bad}; valid: {list(MIN_SAMPLES)}")
        checked = {k: whole(v, f"min_samples[{k}]", 2, MAX_COUNT) for k, v in self.min_samples.items()}
        object.__setattr__(self, "min_samples", checked)
        if self.reference is not None:
            object.__setattr__(self, "reference", str(self.reference))

    def minimum(self, name: str) -> int:
        return self.min_samples.get(name, MIN_SAMPLES[name])

    def to_dict(self) -> dict:
        return {"names": list(self.names), "crop_size": self.crop_size, "crops": self.crops,
                "reference": self.reference, "seed": self.seed,
                "min_samples": {n: self.minimum(n) for n in self.names}}


class _Cell:
    """One cell's sets: per repeat the prediction files; the reference files; the specs."""

    def __init__(self, records: Sequence[dict], config: SetMetricConfig, reference: list[Path]):
        self.repeats: dict[int, list[Path]] = {}
        for r in records:
            self.repeats.setdefault(repeat_of(r), []).append(Path(r["_dir"]) / "prediction.png")
        with Image.open(next(iter(self.repeats.values()))[0]) as im:   # the header only
            self.side = int(im.size[0])
        if reference:
            self.reference = reference
            self.ref_resize: Optional[int] = self.side
        else:   # the ground truths, each image once (repeats and methods share them)
            self.reference = list({str(r.get("image_index")): Path(r["_dir"]) / "ground_truth.png"
                                   for r in records}.values())
            self.ref_resize = None
        crop = config.crop_size or metrics.default_crop_size(self.side)
        self.patch = FeatureSpec(crop, config.crops or default_crops(self.side), config.seed)
        self.whole = FeatureSpec()

    def spec(self, name: str) -> FeatureSpec:
        return self.patch if name == "patch_fid" else self.whole

    def samples(self, name: str) -> int:
        """The smaller side's sample count (per repeat) of metric `name`."""
        n_pred = min(len(p) for p in self.repeats.values())
        n_ref = n_pred if name == "is" else len(self.reference)
        return min(n_pred, n_ref) * self.spec(name).samples

    def requests(self, name: str) -> list[tuple[Path, FeatureSpec]]:
        spec = self.spec(name)
        ref = FeatureSpec(spec.crop, spec.crops, spec.seed, self.ref_resize)
        return ([(p, spec) for paths in self.repeats.values() for p in paths]
                + [(p, ref) for p in self.reference])


def set_metrics_for(directory: Optional[PathLike], records: Sequence[dict],
                    names: Sequence[str] = metrics.SET_METRICS, crop_size: Optional[int] = None,
                    crops: Optional[int] = None, reference=None, device=None,
                    progress: bool = False, min_samples: Optional[Mapping[str, int]] = None,
                    cache: bool = True) -> dict[tuple, tuple[dict, dict]]:
    """{(method, task, level): (values, reasons)} of the set metrics of every cell. values:
    `<name>` (mean over repeats), `<name>_n` (samples per set), `<name>_repeats`,
    `<name>_repeat_sd`, `patch_fid_crops` [side, per image], `kid_std`, `is_std`; reasons:
    {name: why it is None}. Features are cached under `cache_folder(directory)` and values in
    `<directory>/report/set_metrics.json` (`cache=False` or no directory: in memory only)."""
    config = SetMetricConfig(tuple(names), crop_size, crops, reference, 0, dict(min_samples or {}))
    use_disk = cache and directory is not None
    store = FeatureStore(cache_folder(directory) if use_disk else None, device, progress)
    ref_files = [Path(p) for _, p in resolve_images(config.reference)] if config.reference else []
    cells_ = {c: _Cell(recs, config, ref_files) for c, recs in cells(records).items()}
    values_path = Path(directory) / "report" / "set_metrics.json" if use_disk else None
    saved = _read_cache(values_path)
    signatures = {c: _signature(cell, config, store) for c, cell in cells_.items()}
    todo = {c: cell for c, cell in cells_.items() if not _fresh(saved.get("/".join(c)), signatures[c])}
    # one feature pass over every set that is computed (the thresholds decide before any call)
    wanted = [req for cell in todo.values() for name in config.names
              if name in ("patch_fid", "fid", "kid") and cell.samples(name) >= config.minimum(name)
              for req in cell.requests(name)]
    if wanted:
        try:
            store.features(wanted)
        except UNAVAILABLE:    # no FID network here: each metric says so below
            pass
    availability = MetricCache()
    out = {}
    for c, cell in cells_.items():
        name = "/".join(c)
        if c not in todo:
            out[c] = (saved[name]["values"], saved[name]["unavailable"])
            continue
        values, reasons = _cell_metrics(cell, config, store, availability)
        saved[name] = {"signature": signatures[c], "values": values, "unavailable": reasons}
        out[c] = (values, reasons)
    if values_path is not None and todo:
        write_json(values_path, saved)
    return out


def _signature(cell: _Cell, config: SetMetricConfig, store: FeatureStore) -> str:
    """What a cell's values depend on: its images' contents (feature keys) and the settings."""
    keys = sorted({store.key(p, s) for n in config.names for p, s in cell.requests(n)})
    repeats = sorted((r, len(p)) for r, p in cell.repeats.items())
    text = json.dumps([keys, repeats, config.to_dict()], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


def _fresh(entry, signature: str) -> bool:
    return (isinstance(entry, dict) and entry.get("signature") == signature
            and isinstance(entry.get("values"), dict) and isinstance(entry.get("unavailable"), dict))


def _cell_metrics(cell: _Cell, config: SetMetricConfig, store: FeatureStore,
                  availability: MetricCache) -> tuple[dict, dict]:
    values: dict = {}
    reasons: dict = {}
    for name in config.names:
        n, minimum = cell.samples(name), config.minimum(name)
        if n < minimum:
            values[name], reasons[name] = None, f"n too small: {n} < {minimum}"
            continue
        got, reason = availability.compute(name, lambda: _per_repeat(name, cell, store))
        if reason is not None:
            values[name], reasons[name] = None, reason
            continue
        values.update(got)
        values[f"{name}_n"] = n
    if "patch_fid" in config.names:
        values["patch_fid_crops"] = [cell.patch.crop, cell.patch.crops]
    return values, reasons


def _per_repeat(name: str, cell: _Cell, store: FeatureStore) -> dict:
    """The metric of each repeat's predictions against the reference -> mean, spread, extras."""
    got, extra = [], []
    if name == "is":
        for paths in cell.repeats.values():
            images = torch.cat([read_png(p) for p in paths])
            value, std = metrics.inception_score(images.to(store.device), splits=min(10, len(paths)))
            got.append(value)
            extra.append(std)
    else:
        spec = cell.spec(name)
        ref_spec = FeatureSpec(spec.crop, spec.crops, spec.seed, cell.ref_resize)
        ref = torch.cat(store.features([(p, ref_spec) for p in cell.reference]))
        for paths in cell.repeats.values():
            pred = torch.cat(store.features([(p, spec) for p in paths]))
            if name == "kid":
                value, std = metrics.kid(pred, ref, subsets=100, seed=0)
                extra.append(std)
            else:
                value = metrics.fid(pred, ref)
            got.append(value)
    mean = sum(got) / len(got)
    sd = (math.sqrt(sum((v - mean) ** 2 for v in got) / (len(got) - 1)) if len(got) > 1 else None)
    out = {name: mean, f"{name}_repeats": len(got), f"{name}_repeat_sd": sd}
    if extra:
        out[f"{name}_std"] = sum(extra) / len(extra)
    return out


def _read_cache(path: Optional[Path]) -> dict:
    """The cached values; a damaged file is recomputed (with a warning naming it)."""
    if path is None or not path.is_file():
        return {}
    try:
        saved = read_json(path)
        if not isinstance(saved, dict):
            raise ValueError(f"{path}: damaged (not a JSON object)")
    except (ValueError, OSError) as exc:
        warn_damaged(f"{exc}: recomputing the set metrics")
        return {}
    return saved
