"""Tables and plots of a benchmark folder written by `rusir bench`, in the paper's layout.

    rusir report runs/b                      # prints the Markdown; writes runs/b/report/
    rusir report runs/b --crops 1000 --reference ffhq_x/   # paper's pFID protocol at 1024 px

Files in `<dir>/report/`: `single_tasks.md/.csv` (rows task x level, one block per method),
`composed_tasks.md/.csv` (rows composition), `metric_vs_level_<metric>.png` (each metric
against the degradation level, one panel per task, one line per method), `set_metrics.json`
(cache of the set metrics, recomputed only when a cell's items change).

Per-image metrics are means over a cell's images (from the records). Set metrics are computed
per (method, task, level) cell from the saved PNGs, as the paper's evaluation reads PNGs back:
realism `patch_fid` = FID between random crops of the predictions and of the reference images
(default: the cell's ground truths; `reference=` a folder), crop side `metrics.default_crop_size`
(128 px at >= 256 px as the paper, half the side below: 32 px for 64-px images) and
`default_crops` crops per image (the paper's 1000 at >= 256 px; 100 below, to stay affordable
on a CPU); `fid`, `kid` on whole images against the same reference (need >= 2 images); `is`.
A metric that cannot be computed is `n/a` with its reason in a footnote.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from ..data import load_image
from ..data.outputs import write_file, write_text
from ..degradations.base import LEVELS
from .. import metrics  # by module: tests (and users) may swap its feature extractor
from ..validation import MAX_CROPS, side, whole
from ..engine.plan import resolve_images
from ..engine.records import (MetricCache, load_records, read_config, read_json, read_png, warn_damaged,
                      write_json)

__all__ = ["Table", "load_records", "cell_metrics", "summarise", "set_metrics_for", "build_tables",
           "write_report", "default_crops", "METRIC_ORDER"]

METRIC_ORDER = ("accuracy_lpips", "accuracy_lpips_alex", "accuracy_psnr", "accuracy_ssim",
                "accuracy_ms_ssim", "fidelity_lpips", "fidelity_lpips_alex", "fidelity_psnr",
                "fidelity_ssim", "fidelity_ms_ssim", "patch_fid", "fid", "kid", "is")
LOWER_IS_BETTER = ("lpips", "fid", "kid")
KEYS = ("method", "task", "level")


def default_crops(side: int) -> int:
    """Patch-FID crops per image: the paper's 1000 at >= 256 px, else 100."""
    return 1000 if side >= 256 else 100


# --- records (read by rusir.engine.records.load_records) ------------------------------------------

def _cells(records: Sequence[dict]) -> dict[tuple, list[dict]]:
    cells: dict[tuple, list[dict]] = {}
    for rec in records:
        cells.setdefault(tuple(rec[k] for k in KEYS), []).append(rec)
    return cells


def cell_metrics(records: Sequence[dict]) -> tuple[dict, dict]:
    """Means of the per-image metrics over one cell's records -> (values, unavailable reasons)."""
    values: dict[str, Optional[float]] = {}
    reasons: dict[str, str] = {}
    names = list(dict.fromkeys(k for r in records for k in r.get("metrics", {})))
    for name in names:
        vals = [r["metrics"].get(name) for r in records]
        vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
        values[name] = sum(vals) / len(vals) if vals else None
        if not vals:
            reasons[name] = next((r.get("unavailable", {}).get(name) for r in records
                                  if r.get("unavailable", {}).get(name)), "no values")
    return values, reasons


def summarise(records: Sequence[dict], by: Sequence[str] = KEYS) -> dict[tuple, dict]:
    """{group: summary} per group of records (default: per (method, task, level) cell), images in
    index order: `n`, `images` (indices), per-image lists `psnr`, `ssim` (accuracy, on the saved
    8-bit images), `naive_psnr`, `naive_ssim` (the record's naive baseline, None when absent) and
    `seconds` (the method's own restore seconds); means `mean_psnr`, `mean_ssim`,
    `mean_naive_psnr`, `mean_naive_ssim`, `mean_seconds`; `psnr_wins`: images whose PSNR beats
    the naive baseline's."""
    groups: dict[tuple, list[dict]] = {}
    for rec in records:
        groups.setdefault(tuple(rec[k] for k in by), []).append(rec)
    out = {}
    for group, recs in groups.items():
        recs = sorted(recs, key=lambda r: r.get("image_index", 0))
        s: dict = {"n": len(recs), "images": [r.get("image_index") for r in recs]}
        for key, get in (("psnr", lambda r: r["metrics"].get("accuracy_psnr")),
                         ("ssim", lambda r: r["metrics"].get("accuracy_ssim")),
                         ("naive_psnr", lambda r: (r.get("naive") or {}).get("psnr")),
                         ("naive_ssim", lambda r: (r.get("naive") or {}).get("ssim")),
                         ("seconds", lambda r: r.get("restore_seconds"))):
            s[key] = [get(r) for r in recs]
            s[f"mean_{key}"] = _mean(s[key])
        s["psnr_wins"] = sum(p is not None and q is not None and p > q
                             for p, q in zip(s["psnr"], s["naive_psnr"]))
        out[group] = s
    return out


def _mean(values: Sequence) -> Optional[float]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


# --- set metrics ----------------------------------------------------------------------------------

def _read_pngs(paths: Sequence[Union[str, Path]], size: Optional[int] = None) -> torch.Tensor:
    return torch.cat([load_image(p, size) if size else read_png(p) for p in paths])


class _SetMetricEngine:
    """Computes a cell's set metrics, caching reference features across cells."""

    def __init__(self, names: Sequence[str], crop_size: Optional[int], crops: Optional[int],
                 reference: Optional[Union[str, Path]], device=None, seed: int = 0):
        unknown = [n for n in names if n not in metrics.SET_METRICS]
        if unknown:
            raise ValueError(f"unknown set metric(s) {unknown}; valid: {list(metrics.SET_METRICS)}")
        self.names = list(names)     # crop side and count: None is the default, 0 is refused
        self.crop_size = None if crop_size is None else side(crop_size, "patch-FID crop size")
        self.crops = None if crops is None else whole(crops, "patch-FID crops per image", 1,
                                                       MAX_CROPS, "MAX_CROPS")
        self.reference, self.seed = reference, seed
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.cache: dict = {}
        self.availability = MetricCache()   # a metric unavailable once is not retried

    def config(self) -> dict:
        return {"names": self.names, "crop_size": self.crop_size, "crops": self.crops,
                "reference": str(self.reference) if self.reference else None, "seed": self.seed}

    def _reference(self, records: Sequence[dict], size: int) -> tuple[tuple, torch.Tensor]:
        if self.reference:
            key = ("ref", str(self.reference), size)
            if key not in self.cache:
                self.cache[key] = _read_pngs([p for _, p in resolve_images(str(self.reference))], size)
            return key, self.cache[key]
        key = ("gt", tuple(sorted(r["image"] for r in records)), size)
        if key not in self.cache:
            self.cache[key] = _read_pngs([Path(r["_dir"]) / "ground_truth.png" for r in records])
        return key, self.cache[key]

    def _features(self, key, images: torch.Tensor, crop: Optional[tuple] = None,
                  cache: Optional[dict] = None) -> torch.Tensor:
        cache = self.cache if cache is None else cache
        fkey = ("features", key, crop)
        if fkey not in cache:
            x = images if crop is None else metrics.random_crops(images, *crop)
            cache[fkey] = metrics.inception_features(x, device=self.device)
        return cache[fkey]

    def __call__(self, records: Sequence[dict]) -> tuple[dict, dict]:
        preds = _read_pngs([Path(r["_dir"]) / "prediction.png" for r in records])
        ref_key, ref = self._reference(records, preds.shape[-1])
        values: dict = {}
        reasons: dict = {}
        mine: dict = {}  # this cell's prediction features
        for name in self.names:
            got, reason = self.availability.compute(
                name, lambda: self._metric(name, preds, ref_key, ref, mine))
            if reason is None:
                values.update(got)
            else:
                values[name], reasons[name] = None, reason
        return values, reasons

    def _metric(self, name: str, preds, ref_key, ref, mine: dict) -> dict:
        side = preds.shape[-1]
        if name == "patch_fid":
            crop = self.crop_size or metrics.default_crop_size(side)
            n = self.crops or default_crops(side)
            fa = self._features("pred", preds, (crop, n, self.seed), mine)
            fb = self._features(ref_key, ref, (crop, n, self.seed + 1))
            return {"patch_fid": metrics.fid(fa, fb), "patch_fid_crops": [crop, n]}
        if name in ("fid", "kid"):
            if min(len(preds), len(ref)) < 2:
                raise ValueError("needs at least 2 images per set")
            fa, fb = self._features("pred", preds, cache=mine), self._features(ref_key, ref)
            if name == "fid":
                return {"fid": metrics.fid(fa, fb)}
            value, std = metrics.kid(fa, fb, subsets=100, seed=self.seed)
            return {"kid": value, "kid_std": std}
        value, std = metrics.inception_score(preds.to(self.device), splits=min(10, len(preds)))
        return {"is": value, "is_std": std}


def set_metrics_for(directory: Union[str, Path, None], records: Sequence[dict],
                    names: Sequence[str] = metrics.SET_METRICS, crop_size: Optional[int] = None,
                    crops: Optional[int] = None, reference=None, device=None,
                    progress: bool = False) -> dict[tuple, tuple[dict, dict]]:
    """{(method, task, level): (values, reasons)} of the set metrics of every cell, cached in
    `<directory>/report/set_metrics.json` (a cell is recomputed when its items or the settings
    change)."""
    engine = _SetMetricEngine(names, crop_size, crops, reference, device)
    cache_path = Path(directory) / "report" / "set_metrics.json" if directory else None
    cache = _read_cache(cache_path)
    out = {}
    cells = _cells(records)
    iterator = cells.items()
    if progress:
        iterator = tqdm(list(iterator), desc="set metrics", unit="cell")
    for cell, recs in iterator:
        sig = hashlib.sha1(json.dumps([sorted(r["key"] for r in recs), engine.config()],
                                      sort_keys=True).encode()).hexdigest()
        name = "/".join(cell)
        entry = cache.get(name)
        if isinstance(entry, dict) and entry.get("signature") == sig and isinstance(
                entry.get("values"), dict) and isinstance(entry.get("unavailable"), dict):
            out[cell] = (entry["values"], entry["unavailable"])
            continue
        values, reasons = engine(recs)
        cache[name] = {"signature": sig, "values": values, "unavailable": reasons}
        out[cell] = (values, reasons)
    if cache_path is not None:
        write_json(cache_path, cache)
    return out


def _read_cache(path: Optional[Path]) -> dict:
    """The set-metric cache; a damaged one is recomputed (with a warning naming it)."""
    if path is None or not path.is_file():
        return {}
    try:
        cache = read_json(path)
        if not isinstance(cache, dict):
            raise ValueError(f"{path}: damaged (not a JSON object)")
    except (ValueError, OSError) as exc:
        warn_damaged(f"{exc}: recomputing the set metrics")
        return {}
    return cache


# --- tables ---------------------------------------------------------------------------------------

@dataclass
class Table:
    """Rows (dicts) under named columns; `to_csv`, `to_markdown`."""
    name: str
    columns: list[str]
    rows: list[dict] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)   # metric -> why it is n/a

    def column(self, name: str) -> list:
        return [r.get(name) for r in self.rows]

    def to_csv(self, path: Union[str, Path]) -> Path:
        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
                w.writeheader()
                for row in self.rows:
                    w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in self.columns})
        return write_file(path, write)

    def to_markdown(self) -> str:
        title = "Single tasks" if self.name == "single_tasks" else "Composed tasks"
        metric_cols = [c for c in self.columns if c not in KEYS + ("n",)]
        key_cols = ["task", "level"] if self.name == "single_tasks" else ["task"]
        lines = [f"## {title}", ""]
        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        if not methods:
            lines.append("(no finished items)")
        for method in methods:
            cols = key_cols + ["n"] + metric_cols
            lines += [f"### {method}", "", "| " + " | ".join(_header(c) for c in cols) + " |",
                      "|" + "|".join(":--" if c in key_cols else "--:" for c in cols) + "|"]
            for row in (r for r in self.rows if r["method"] == method):
                lines.append("| " + " | ".join(_fmt(c, row.get(c)) for c in cols) + " |")
            lines.append("")
        if self.notes:
            lines.append("n/a: " + "; ".join(f"`{k}`: {v.splitlines()[0][:200]}"
                                             for k, v in self.notes.items()))
            lines.append("")
        return "\n".join(lines)


def _header(col: str) -> str:
    if col in ("task", "level", "n"):
        return col
    kind, _, metric = col.partition("_") if col.startswith(("accuracy_", "fidelity_")) else ("realism", "", col)
    arrow = "↓" if any(m in metric for m in LOWER_IS_BETTER) else "↑"
    return f"{kind} {metric.replace('_', '-').upper()} {arrow}"


def _fmt(col: str, value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str) or col == "n":
        return str(value)
    if "psnr" in col or col in ("patch_fid", "fid", "is"):
        return f"{value:.2f}"
    if col.startswith("kid"):
        return f"{value:.4f}"
    return f"{value:.3f}"


def build_tables(records: Sequence[dict], set_metrics: Union[bool, dict] = True,
                 directory: Union[str, Path, None] = None, **set_metric_kwargs) -> dict[str, Table]:
    """{"single_tasks": Table, "composed_tasks": Table}: one row per (method, task, level) cell
    with the image count `n` and the metric means (plus set metrics when `set_metrics` is True --
    computed from the PNGs -- or a precomputed {cell: (values, reasons)} mapping)."""
    cells = _cells(records)
    if set_metrics is True:
        set_metrics = set_metrics_for(directory, records, **set_metric_kwargs)
    set_metrics = set_metrics or {}
    tables = {}
    for name, category in (("single_tasks", "single"), ("composed_tasks", "composed")):
        rows, notes, seen = [], {}, []
        for cell, recs in cells.items():
            if recs[0].get("category", "single") != category:
                continue
            values, reasons = cell_metrics(recs)
            extra, extra_reasons = set_metrics.get(cell, ({}, {}))
            values.update({k: v for k, v in extra.items() if k in METRIC_ORDER})
            reasons.update(extra_reasons)
            rows.append({"method": cell[0], "task": cell[1], "level": cell[2], "n": len(recs), **values})
            seen += list(values)
            for k, v in reasons.items():
                notes.setdefault(k, v)
        metric_cols = [m for m in METRIC_ORDER if m in seen] + sorted(
            set(seen) - set(METRIC_ORDER))
        notes = {k: v for k, v in notes.items() if all(r.get(k) is None for r in rows)}
        tables[name] = Table(name, list(KEYS) + ["n"] + metric_cols, rows, notes)
    return tables


# --- plots ----------------------------------------------------------------------------------------

def plot_metrics_vs_level(table: Table, out: Union[str, Path]) -> list[Path]:
    """One figure per metric: a panel per task, metric against level, a line per method."""
    # imported on use: choosing the Agg backend at import time would change a notebook's backend
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    tasks = list(dict.fromkeys(r["task"] for r in table.rows))
    methods = list(dict.fromkeys(r["method"] for r in table.rows))
    paths = []
    for metric in [c for c in table.columns if c not in KEYS + ("n",)]:
        if all(r.get(metric) is None for r in table.rows):
            continue
        fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            for method in methods:
                pts = sorted(((LEVELS.index(r["level"]), r[metric]) for r in table.rows
                              if r["task"] == task and r["method"] == method
                              and r.get(metric) is not None and r["level"] in LEVELS))
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
            ax.set_xticks(range(len(LEVELS)), LEVELS)
            ax.set_title(task)
            ax.set_xlabel("level")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(_header(metric))
        axes[0][-1].legend(fontsize="small")
        fig.tight_layout()
        path = out / f"metric_vs_level_{metric}.png"
        write_file(path, lambda tmp: fig.savefig(tmp, dpi=100))
        plt.close(fig)
        paths.append(path)
    return paths


# --- the whole report -------------------------------------------------------------------------------

def write_report(directory: Union[str, Path], out: Union[str, Path, None] = None,
                 set_metrics: bool = True, plots: bool = True, **set_metric_kwargs) -> dict:
    """Build the tables of `directory`, write Markdown, CSV and plots into `out`
    (default `<directory>/report`). Returns {"markdown": str, "tables": ..., "files": [...],
    "damaged": [skipped records]}. A damaged record.json is skipped and a damaged bench.json left
    out, each with a DamagedFileWarning naming the file; the Markdown lists the skipped records."""
    damaged: list[str] = []
    records = load_records(directory, damaged)
    if not records:
        raise ValueError(f"no finished items (record.json) under {directory}"
                         + (f" ({len(damaged)} damaged)" if damaged else ""))
    out = Path(out) if out is not None else Path(directory) / "report"
    out.mkdir(parents=True, exist_ok=True)
    tables = build_tables(records, set_metrics=set_metrics, directory=directory, **set_metric_kwargs)
    files, parts = [], [f"# rusir benchmark: {directory}", ""]
    try:
        c = read_config(directory)
    except ValueError as exc:
        warn_damaged(f"{exc}; left out of the report")
        c = None
    if c is not None:
        parts += [f"generator `{c.get('generator')}`, images `{c.get('images')}`, steps "
                  f"{c.get('steps')}, seed {c.get('seed')}, loss `{c.get('loss')}`", ""]
    if damaged:
        parts += [f"skipped {len(damaged)} damaged record(s) (`rusir bench` redoes them): "
                  + "; ".join(damaged), ""]
    for name, table in tables.items():
        if not table.rows:
            continue
        md = table.to_markdown()
        write_text(out / f"{name}.md", md + "\n")
        files += [out / f"{name}.md", table.to_csv(out / f"{name}.csv")]
        parts.append(md)
    if plots and tables["single_tasks"].rows:
        files += plot_metrics_vs_level(tables["single_tasks"], out)
    return {"markdown": "\n".join(parts), "tables": tables, "files": files, "damaged": damaged}
