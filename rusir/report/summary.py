"""The one aggregation of benchmark records: per cell, per metric, the mean, its standard error
over images, n, and (with repeats) the spread over repeats.

A cell is a group of records (default: one (method, task, level)). A record may carry an int
`repeat` (absent = 0): `rusir bench --repeats K` restores every image K times with other seeds.
For a metric m of a cell:

    x_i        = mean over the repeats of image i's values        (image i's own mean)
    mean       = mean over images of x_i
    se         = sample std (ddof 1) of the x_i / sqrt(n)         (None for n < 2)
    n          = images with a value
    repeats    = repeats with a value
    repeat_sd  = sample std (ddof 1) over repeats of the cell mean of that repeat
                 (None for fewer than 2 repeats)

`se` says how much the mean would move with other images; `repeat_sd` how much it moves when the
same images are restored again with other seeds -- a difference between two methods smaller than
both is rounding luck, not a result.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

__all__ = ["KEYS", "stat", "cells", "cell_stats", "summarise", "repeat_of"]

KEYS = ("method", "task", "level")


def _number(v) -> Optional[float]:
    """A finite float, or None for a missing, non-numeric or NaN value."""
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return None if math.isnan(v) else float(v)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _sd(values: Sequence[float]) -> Optional[float]:
    """Sample standard deviation (ddof 1); None below 2 values."""
    if len(values) < 2:
        return None
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def repeat_of(record: dict) -> int:
    """The record's repeat index (0 when the record has none: a run without repeats)."""
    r = record.get("repeat", 0)
    return r if isinstance(r, int) and not isinstance(r, bool) else 0


def stat(values: dict[tuple[int, int], float]) -> Optional[dict]:
    """{(image, repeat): value} -> {mean, se, n, repeats, repeat_sd} (see the module doc); None
    when there is no value."""
    if not values:
        return None
    by_image: dict[int, list[float]] = {}
    by_repeat: dict[int, list[float]] = {}
    for (image, repeat), v in values.items():
        by_image.setdefault(image, []).append(v)
        by_repeat.setdefault(repeat, []).append(v)
    image_means = [_mean(v) for v in by_image.values()]
    n = len(image_means)
    sd = _sd(image_means)
    return {"mean": _mean(image_means), "se": None if sd is None else sd / math.sqrt(n), "n": n,
            "repeats": len(by_repeat),
            "repeat_sd": _sd([_mean(v) for v in by_repeat.values()])}


def cells(records: Sequence[dict], by: Sequence[str] = KEYS) -> dict[tuple, list[dict]]:
    """Records grouped by the values of `by`, groups in first-seen order."""
    out: dict[tuple, list[dict]] = {}
    for rec in records:
        out.setdefault(tuple(rec.get(k) for k in by), []).append(rec)
    return out


def cell_stats(records: Sequence[dict]) -> tuple[dict[str, Optional[dict]], dict[str, str]]:
    """({metric: stat or None}, {metric: why it is None}) of one cell's per-image metrics."""
    names = list(dict.fromkeys(k for r in records for k in r.get("metrics", {})))
    stats, reasons = {}, {}
    for name in names:
        values = {}
        for r in records:
            v = _number(r["metrics"].get(name))
            if v is not None:
                values[(r.get("image_index", 0), repeat_of(r))] = v
        stats[name] = stat(values)
        if stats[name] is None:
            reasons[name] = next((r.get("unavailable", {}).get(name) for r in records
                                  if r.get("unavailable", {}).get(name)), "no values")
    return stats, reasons


def summarise(records: Sequence[dict], by: Sequence[str] = KEYS) -> dict[tuple, dict]:
    """{group: summary} per group of records (default: per (method, task, level) cell).

    `metrics`: {metric: {mean, se, n, repeats, repeat_sd} or None} of every per-image metric the
    records carry (see the module doc), `unavailable`: {metric: reason} for the None ones;
    `n`: images, `records`: records (n x repeats). Kept for the studies that read them (records
    in image order, each its own entry): per-record lists `images`, `psnr`, `ssim` (accuracy on
    the saved 8-bit images), `naive_psnr`, `naive_ssim` (the naive baseline, None when absent),
    `seconds` (the method's own restore seconds); their plain means `mean_psnr`, `mean_ssim`,
    `mean_naive_psnr`, `mean_naive_ssim`, `mean_seconds`; `psnr_wins`: records whose PSNR beats
    the naive baseline's (a tie is no win)."""
    out = {}
    for group, recs in cells(records, by).items():
        recs = sorted(recs, key=lambda r: (r.get("image_index", 0), repeat_of(r)))
        stats, reasons = cell_stats(recs)
        s: dict = {"n": len({r.get("image_index") for r in recs}), "records": len(recs),
                   "images": [r.get("image_index") for r in recs],
                   "metrics": stats, "unavailable": reasons}
        for key, get in (("psnr", lambda r: r["metrics"].get("accuracy_psnr")),
                         ("ssim", lambda r: r["metrics"].get("accuracy_ssim")),
                         ("naive_psnr", lambda r: (r.get("naive") or {}).get("psnr")),
                         ("naive_ssim", lambda r: (r.get("naive") or {}).get("ssim")),
                         ("seconds", lambda r: r.get("restore_seconds"))):
            s[key] = [get(r) for r in recs]
            present = [v for v in map(_number, s[key]) if v is not None]
            s[f"mean_{key}"] = _mean(present) if present else None
        s["psnr_wins"] = sum(p is not None and q is not None and p > q
                             for p, q in zip(s["psnr"], s["naive_psnr"]))
        out[group] = s
    return out
