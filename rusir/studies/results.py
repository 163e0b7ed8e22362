"""Per-image result rows of restoration runs: build them, write them (JSON + CSV), plot them.

One row per restored image, flat and self-describing, so that notebooks, sweeps and plots share
one format:

    rows = task_rows(run, generator="toyfaces64")          # run: rusir.studies.experiment.TaskRun
    write_results(rows, "figures/task_upsampling_M")      # -> .json and .csv beside each other
    print(summary_table(rows))                            # mean PSNR naive -> RUSIR per task/level
    plot_metric(rows, x="level", series="config", path="figures/ablation_phases.png")

Row keys: task, level, image (index in the batch / held-out set), psnr, ssim (RUSIR vs ground
truth), naive_psnr, naive_ssim, psnr_gain (= psnr - naive_psnr), fidelity_psnr, psnr_<phase>
per phase, seconds (whole batch), plus any extra keys given (generator, config, seed, ...).
"""
from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from ..data.outputs import write_file, write_text

__all__ = ["task_rows", "write_results", "read_results", "select", "summarize", "summary_table",
           "plot_metric"]


def task_rows(run, first_image: int = 0, **extra) -> list[dict]:
    """One row per image of a `rusir.studies.experiment.TaskRun` (its `scores`), with `extra` keys first."""
    s = run.scores
    rows = []
    for i, (p, q) in enumerate(zip(s["restored"]["psnr"], s["restored"]["ssim"])):
        row = dict(extra)
        row.update(task=run.task, level=run.level, image=first_image + i, psnr=p, ssim=q,
                   naive_psnr=s["naive"]["psnr"][i], naive_ssim=s["naive"]["ssim"][i],
                   psnr_gain=p - s["naive"]["psnr"][i], fidelity_psnr=s["fidelity_psnr"][i])
        for phase, sc in s["phases"].items():
            row[f"psnr_{phase}"] = sc["psnr"][i]
        row["seconds"] = s["seconds"]
        rows.append(row)
    return rows


def _columns(rows: Sequence[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def write_results(rows: Sequence[dict], stem: Union[str, Path]) -> dict[str, Path]:
    """Write `rows` to `<stem>.json` (a list of objects) and `<stem>.csv`; return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".csv")
    write_text(json_path, json.dumps(list(rows), indent=1))

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=_columns(rows))
            writer.writeheader()
            writer.writerows(rows)
    write_file(csv_path, write_csv)
    return {"json": json_path, "csv": csv_path}


def read_results(path: Union[str, Path]) -> list[dict]:
    """Rows from a `.json` file written by `write_results`."""
    return json.loads(Path(path).read_text())


def _mean(values: Iterable[float]) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else math.nan


def select(rows: Sequence[dict], where: Optional[dict] = None) -> list[dict]:
    """The rows whose keys equal every value in `where` (all rows when None)."""
    return [r for r in rows if all(r.get(k) == v for k, v in (where or {}).items())]


def summarize(rows: Sequence[dict], by: Sequence[str] = ("task", "level"),
              metrics: Sequence[str] = ("naive_psnr", "psnr", "psnr_gain", "ssim"),
              where: Optional[dict] = None) -> list[dict]:
    """Mean of `metrics` over rows grouped by the `by` keys, in first-seen order (+ count n)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in select(rows, where):
        groups[tuple(r.get(k) for k in by)].append(r)
    out = []
    for key, members in groups.items():
        row = dict(zip(by, key))
        row["n"] = len(members)
        for m in metrics:
            row[m] = _mean(r[m] for r in members if m in r)
        out.append(row)
    return out


def summary_table(rows: Sequence[dict], by: Sequence[str] = ("task", "level"),
                  metrics: Sequence[str] = ("naive_psnr", "psnr", "psnr_gain", "ssim"),
                  where: Optional[dict] = None) -> str:
    """`summarize` as a fixed-width text table (for printing in a notebook)."""
    summary = summarize(rows, by, metrics, where)
    cols = list(by) + ["n"] + list(metrics)
    width = {c: max(len(c), *(len(_fmt(r[c])) for r in summary)) if summary else len(c) for c in cols}
    lines = ["  ".join(c.rjust(width[c]) for c in cols)]
    lines += ["  ".join(_fmt(r[c]).rjust(width[c]) for c in cols) for r in summary]
    return "\n".join(lines)


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def plot_metric(rows: Sequence[dict], x: str = "level", series: Optional[str] = None,
                metrics: Sequence[str] = ("psnr",), path: Union[str, Path, None] = None,
                title: str = "", ylabel: Optional[str] = None, where: Optional[dict] = None):
    """Mean `metrics` vs `x` (e.g. quality vs degradation level), one line per series value x metric.

    x values keep their first-seen order (levels XS..XL stay in order when the rows are).
    `where` keeps only matching rows (see `select`). Saves to `path` when given; returns the figure.
    """
    import matplotlib.pyplot as plt  # heavy (~0.3 s, picks a backend): loaded when plotting

    rows = select(rows, where)
    xs = list(dict.fromkeys(r[x] for r in rows))
    names = list(dict.fromkeys(r[series] for r in rows)) if series else [None]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in names:
        members = [r for r in rows if series is None or r[series] == name]
        for m in metrics:
            ys = [_mean(r[m] for r in members if r[x] == v and m in r) for v in xs]
            label = " ".join(str(t) for t in (name, m if len(metrics) > 1 or not series else None) if t)
            ax.plot(range(len(xs)), ys, marker="o", label=label or m)
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or (metrics[0] if len(metrics) == 1 else "value"))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        write_file(path, lambda tmp: fig.savefig(tmp, dpi=120))
    return fig
