"""`rusir report`: the tables and plots of a benchmark folder written by `rusir bench`.

    rusir report runs/b                      # prints the Markdown; writes runs/b/report/
    rusir report runs/b --crops 1000 --reference ffhq_x/   # paper's pFID protocol at 1024 px

Files in the output folder (default `<dir>/report/`): `table1.md/.csv/.tex` (single tasks x
levels), `table2.*` (compositions), `table3.*` (the DDRM-comparison settings), each written when
it has a row; `cells.csv` (one row per (method, task, level): n and each metric's mean, se,
repeats, repeat_sd); `metric_vs_level_<metric>.png`; `set_metrics.json` (the set metrics per
cell, recomputed when a cell's images or the settings change). Inception features are kept in
`<dir>/.cache/features/` (rusir.report.features).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

from ..data.outputs import write_text
from ..engine.records import load_records, read_config, warn_damaged
from .layout import PaperTable, layout_tables
from .plots import plot_metrics_vs_level
from .set_metrics import set_metrics_for
from .summary import summarise
from .writers import to_csv, to_latex, to_markdown, write_csv

__all__ = ["build_tables", "write_report", "write_cells"]

PathLike = Union[str, Path]


def build_tables(records: Sequence[dict], set_metrics: Union[bool, dict] = True,
                 directory: Union[PathLike, None] = None, **set_metric_kwargs) -> dict[str, PaperTable]:
    """{"table1", "table2", "table3": PaperTable} of the records, with the set metrics computed
    from the PNGs (`set_metrics` True; keyword arguments go to `set_metrics_for`), given as
    {cell: (values, reasons)}, or left out (False: their cells read `not computed`)."""
    if set_metrics is True:
        set_metrics = set_metrics_for(directory, records, **set_metric_kwargs)
    return layout_tables(records, set_metrics or {},
                         "not computed" if set_metrics is not False else "not computed (--no-set-metrics)")


def write_cells(records: Sequence[dict], path: PathLike) -> Path:
    """`cells.csv`: one row per (method, task, level) of `summarise` (tidy, for other tools)."""
    summary = summarise(records)
    names = list(dict.fromkeys(m for s in summary.values() for m in s["metrics"]))
    parts = ("mean", "se", "n", "repeats", "repeat_sd")
    rows = []
    for (method, task, level), s in summary.items():
        row = {"method": method, "task": task, "level": level, "n": s["n"], "records": s["records"]}
        for name in names:
            st = s["metrics"].get(name) or {}
            row.update({f"{name}:{p}": st.get(p) for p in parts})
        rows.append(row)
    columns = ["method", "task", "level", "n", "records"] + [f"{n}:{p}" for n in names for p in parts]
    return write_csv(path, columns, rows)


def write_report(directory: PathLike, out: Union[PathLike, None] = None,
                 set_metrics: bool = True, plots: bool = True, **set_metric_kwargs) -> dict:
    """Build the tables of `directory`, write Markdown, CSV, LaTeX and plots into `out` (default
    `<directory>/report`). Returns {"markdown": str, "tables": {name: PaperTable}, "files": [...],
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
    parts = [f"# rusir benchmark: {directory}", ""] + _header(directory, damaged)
    files = [write_cells(records, out / "cells.csv")]
    for name, table in tables.items():
        if not table.rows:
            continue
        md = to_markdown(table)
        files += [write_text(out / f"{name}.md", md + "\n"), to_csv(table, out / f"{name}.csv"),
                  write_text(out / f"{name}.tex", to_latex(table))]
        parts.append(md)
    if plots and tables["table1"].rows:
        files += plot_metrics_vs_level(tables["table1"], out)
    return {"markdown": "\n".join(parts), "tables": tables, "files": files, "damaged": damaged}


def _header(directory: PathLike, damaged: list[str]) -> list[str]:
    """The run's settings (from bench.json) and the damaged records, as Markdown lines."""
    lines = []
    try:
        c = read_config(directory)
    except ValueError as exc:
        warn_damaged(f"{exc}; left out of the report")
        c = None
    if c is not None:
        lines += [_settings(c), ""]
    if damaged:
        lines += [f"skipped {len(damaged)} damaged record(s) (`rusir bench` redoes them): "
                  + "; ".join(damaged), ""]
    return lines


def _settings(c: dict) -> str:
    """One line of what the run was: what was not set explicitly is the generator's own default
    (bench.json's `generator_defaults`), named as such rather than printed as None."""
    own = c.get("generator_defaults") or {}
    sha = c.get("generator_sha256")
    loss = c.get("loss") if c.get("loss") is not None else f"{own.get('loss')} (the generator's)"
    tau = c.get("discrepancy")
    tau = tau if tau is not None else f"{own.get('discrepancy')} (the generator's)"
    text = (f"generator `{c.get('generator')}`" + (f" (sha256 {sha[:12]}…)" if sha else "")
            + f", images `{c.get('images')}`, RUSIR steps {c.get('steps')}, seed {c.get('seed')}, "
            f"loss `{loss}`, discrepancy stop τ {tau}, dtype {c.get('dtype', 'float32')}")
    if c.get("repeats", 1) and c.get("repeats", 1) > 1:
        text += f", {c['repeats']} repeats per item"
    if c.get("mixed"):
        text += f" -- **mixed folder**: {len(c['mixed'])} configurations (`--force-mixed`)"
    return text
