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

from ..degradations.base import LEVELS

__all__ = ["Table", "load_records", "cell_metrics", "set_metrics_for", "build_tables",
           "write_report", "default_crops", "SET_METRIC_NAMES", "METRIC_ORDER"]

SET_METRIC_NAMES = ("patch_fid", "fid", "kid", "is")
METRIC_ORDER = ("accuracy_lpips", "accuracy_lpips_alex", "accuracy_psnr", "accuracy_ssim",
                "accuracy_ms_ssim", "fidelity_lpips", "fidelity_lpips_alex", "fidelity_psnr",
                "fidelity_ssim", "fidelity_ms_ssim", "patch_fid", "fid", "kid", "is")
LOWER_IS_BETTER = ("lpips", "fid", "kid")
KEYS = ("method", "task", "level")


def default_crops(side: int) -> int:
    """Patch-FID crops per image: the paper's 1000 at >= 256 px, else 100."""
    return 1000 if side >= 256 else 100


# --- records ------------------------------------------------------------------------------------

def load_records(directory: Union[str, Path]) -> list[dict]:
    """Every finished item's record.json under `directory` (temporary folders ignored), sorted by
    key; each record gains `_dir`, the item folder."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark folder {root} does not exist")
    records = []
    for path in sorted(root.rglob("record.json")):
        rel = path.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or rel[0] == "report":
            continue
        rec = json.loads(path.read_text())
        rec["_dir"] = str(path.parent)
        records.append(rec)
    return sorted(records, key=_order)


def _order(rec: dict) -> tuple:
    level = rec.get("level")
    return (rec.get("method", ""), rec.get("category", "") != "single",
            _task_rank(rec.get("task", "")), LEVELS.index(level) if level in LEVELS else 99,
            rec.get("image_index", 0))


def _task_rank(task: str) -> tuple:
    from ..degradations import COMPOSITIONS, TASKS
    if task in TASKS:
        return (0, TASKS.index(task), task)
    if task in COMPOSITIONS:
        return (1, COMPOSITIONS.index(task), task)
    return (2, 0, task)


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


# --- set metrics ----------------------------------------------------------------------------------

def _read_pngs(paths: Sequence[Union[str, Path]], size: Optional[int] = None) -> torch.Tensor:
    from ..data import load_image
    imgs = [load_image(p, size) if size else _read_png(p) for p in paths]
    return torch.cat(imgs)


def _read_png(path) -> torch.Tensor:
    import numpy as np
    from PIL import Image
    with Image.open(path) as f:
        a = np.asarray(f.convert("RGB"), dtype=np.uint8).copy()
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).float() / 255


class _SetMetricEngine:
    """Computes a cell's set metrics, caching reference features across cells."""

    def __init__(self, names: Sequence[str], crop_size: Optional[int], crops: Optional[int],
                 reference: Optional[Union[str, Path]], device=None, seed: int = 0):
        unknown = [n for n in names if n not in SET_METRIC_NAMES]
        if unknown:
            raise ValueError(f"unknown set metric(s) {unknown}; valid: {list(SET_METRIC_NAMES)}")
        self.names, self.crop_size, self.crops = list(names), crop_size, crops
        self.reference, self.seed = reference, seed
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.cache: dict = {}
        self.reasons: dict[str, str] = {}   # a metric unavailable once is not retried

    def config(self) -> dict:
        return {"names": self.names, "crop_size": self.crop_size, "crops": self.crops,
                "reference": str(self.reference) if self.reference else None, "seed": self.seed}

    def _reference(self, records: Sequence[dict], size: int) -> tuple[tuple, torch.Tensor]:
        if self.reference:
            from .runner import resolve_images
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
        from ..metrics import inception_features, random_crops
        cache = self.cache if cache is None else cache
        fkey = ("features", key, crop)
        if fkey not in cache:
            x = images if crop is None else random_crops(images, *crop)
            cache[fkey] = inception_features(x, device=self.device)
        return cache[fkey]

    def __call__(self, records: Sequence[dict]) -> tuple[dict, dict]:
        from ..metrics import MetricUnavailable, fid, inception_score, kid
        from ..model.weights import MissingWeightsError
        preds = _read_pngs([Path(r["_dir"]) / "prediction.png" for r in records])
        side = preds.shape[-1]
        ref_key, ref = self._reference(records, side)
        values: dict = {}
        reasons: dict = {}
        mine: dict = {}  # this cell's prediction features
        for name in self.names:
            if name in self.reasons:
                values[name], reasons[name] = None, self.reasons[name]
                continue
            try:
                if name == "patch_fid":
                    from ..metrics import default_crop_size
                    crop = self.crop_size or default_crop_size(side)
                    n = self.crops or default_crops(side)
                    fa = self._features("pred", preds, (crop, n, self.seed), mine)
                    fb = self._features(ref_key, ref, (crop, n, self.seed + 1))
                    values[name] = fid(fa, fb)
                    values["patch_fid_crops"] = [crop, n]
                elif name in ("fid", "kid"):
                    if min(len(preds), len(ref)) < 2:
                        raise ValueError("needs at least 2 images per set")
                    fa = self._features("pred", preds, cache=mine)
                    fb = self._features(ref_key, ref)
                    if name == "fid":
                        values[name] = fid(fa, fb)
                    else:
                        values["kid"], values["kid_std"] = kid(fa, fb, subsets=100, seed=self.seed)
                elif name == "is":
                    values["is"], values["is_std"] = inception_score(
                        preds.to(self.device), splits=min(10, len(preds)))
            except (MetricUnavailable, MissingWeightsError) as exc:
                self.reasons[name] = f"{type(exc).__name__}: {exc}"
                values[name], reasons[name] = None, self.reasons[name]
            except ValueError as exc:
                values[name], reasons[name] = None, f"ValueError: {exc}"
        return values, reasons


def set_metrics_for(directory: Union[str, Path, None], records: Sequence[dict],
                    names: Sequence[str] = SET_METRIC_NAMES, crop_size: Optional[int] = None,
                    crops: Optional[int] = None, reference=None, device=None,
                    progress: bool = False) -> dict[tuple, tuple[dict, dict]]:
    """{(method, task, level): (values, reasons)} of the set metrics of every cell, cached in
    `<directory>/report/set_metrics.json` (a cell is recomputed when its items or the settings
    change)."""
    engine = _SetMetricEngine(names, crop_size, crops, reference, device)
    cache_path = Path(directory) / "report" / "set_metrics.json" if directory else None
    cache = json.loads(cache_path.read_text()) if cache_path and cache_path.is_file() else {}
    out = {}
    cells = _cells(records)
    iterator = cells.items()
    if progress:
        try:
            from tqdm.auto import tqdm
            iterator = tqdm(list(iterator), desc="set metrics", unit="cell")
        except ImportError:
            pass
    for cell, recs in iterator:
        sig = hashlib.sha1(json.dumps([sorted(r["key"] for r in recs), engine.config()],
                                      sort_keys=True).encode()).hexdigest()
        name = "/".join(cell)
        if name in cache and cache[name].get("signature") == sig:
            out[cell] = (cache[name]["values"], cache[name]["unavailable"])
            continue
        values, reasons = engine(recs)
        cache[name] = {"signature": sig, "values": values, "unavailable": reasons}
        out[cell] = (values, reasons)
    if cache_path is not None:
        from .runner import _write_json
        _write_json(cache_path, cache)
    return out


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
        path = Path(path)
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            w.writeheader()
            for row in self.rows:
                w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in self.columns})
        return path

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
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


# --- the whole report -------------------------------------------------------------------------------

def write_report(directory: Union[str, Path], out: Union[str, Path, None] = None,
                 set_metrics: bool = True, plots: bool = True, **set_metric_kwargs) -> dict:
    """Build the tables of `directory`, write Markdown, CSV and plots into `out`
    (default `<directory>/report`). Returns {"markdown": str, "tables": ..., "files": [...]}."""
    records = load_records(directory)
    if not records:
        raise ValueError(f"no finished items (record.json) under {directory}")
    out = Path(out) if out is not None else Path(directory) / "report"
    out.mkdir(parents=True, exist_ok=True)
    tables = build_tables(records, set_metrics=set_metrics, directory=directory, **set_metric_kwargs)
    files, parts = [], [f"# rusir benchmark: {directory}", ""]
    config = Path(directory) / "bench.json"
    if config.is_file():
        c = json.loads(config.read_text())
        parts += [f"generator `{c.get('generator')}`, images `{c.get('images')}`, steps "
                  f"{c.get('steps')}, seed {c.get('seed')}, loss `{c.get('loss')}`", ""]
    for name, table in tables.items():
        if not table.rows:
            continue
        md = table.to_markdown()
        (out / f"{name}.md").write_text(md + "\n")
        files += [out / f"{name}.md", table.to_csv(out / f"{name}.csv")]
        parts.append(md)
    if plots and tables["single_tasks"].rows:
        files += plot_metrics_vs_level(tables["single_tasks"], out)
    return {"markdown": "\n".join(parts), "tables": tables, "files": files}
