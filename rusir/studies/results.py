"""Showing the one aggregation: `rusir.report.summarise` (means over the runner's records)
as flat rows, a fixed-width text table (for a notebook) or a CSV file.

    records = load_records("runs/b")                          # rusir.engine.records
    summary = summarise(records, by=("task", "level"))        # rusir.report
    print(summary_table(summary, by=("task", "level")))       # n, naive PSNR -> PSNR, gain, SSIM
    write_summary(summary, ("task", "level"), "figures/task_upsampling_M.csv")

Nothing here averages: every number is a `summarise` mean (`psnr_gain` is the difference of two).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from ..data.outputs import write_file

__all__ = ["SUMMARY_COLUMNS", "summary_rows", "summary_table", "write_summary"]

# column -> the `summarise` field it shows (psnr_gain: mean_psnr - mean_naive_psnr)
SUMMARY_COLUMNS = {"n": "n", "naive_psnr": "mean_naive_psnr", "psnr": "mean_psnr",
                   "psnr_gain": None, "ssim": "mean_ssim", "naive_ssim": "mean_naive_ssim",
                   "psnr_wins": "psnr_wins", "seconds": "mean_seconds"}


def summary_rows(summary: Mapping[tuple, dict], by: Sequence[str]) -> list[dict]:
    """One flat row per group of a `summarise` result: the `by` keys, then SUMMARY_COLUMNS."""
    rows = []
    for key, s in summary.items():
        if len(key) != len(by):
            raise ValueError(f"summary groups have {len(key)} keys, `by` names {len(by)}: {list(by)}")
        row = dict(zip(by, key))
        for column, field in SUMMARY_COLUMNS.items():
            row[column] = s.get(field) if field else _gain(s)
        rows.append(row)
    return rows


def _gain(s: Mapping) -> Optional[float]:
    psnr, naive = s.get("mean_psnr"), s.get("mean_naive_psnr")
    return None if psnr is None or naive is None else psnr - naive


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def summary_table(summary: Mapping[tuple, dict], by: Sequence[str],
                  columns: Sequence[str] = ("n", "naive_psnr", "psnr", "psnr_gain", "ssim")) -> str:
    """`summary_rows` as a fixed-width text table of `columns` (for printing in a notebook)."""
    unknown = [c for c in columns if c not in SUMMARY_COLUMNS]
    if unknown:
        raise ValueError(f"unknown summary column(s) {unknown}; valid: {list(SUMMARY_COLUMNS)}")
    rows = summary_rows(summary, by)
    cols = list(by) + list(columns)
    width = {c: max([len(c)] + [len(_fmt(r[c])) for r in rows]) for c in cols}
    lines = ["  ".join(c.rjust(width[c]) for c in cols)]
    lines += ["  ".join(_fmt(r[c]).rjust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def write_summary(summary: Mapping[tuple, dict], by: Sequence[str], path: Union[str, Path]) -> Path:
    """`summary_rows` as a CSV file at `path` (atomic; rusir.data.outputs); returns the path."""
    rows = summary_rows(summary, by)

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(by) + list(SUMMARY_COLUMNS))
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return write_file(path, write_csv)
