"""The paper's table layout: settings as rows, per metric group the methods side by side.

    Table 1  single tasks x levels XS..XL, one block per task
    Table 2  compositions (at M)
    Table 3  the DDRM-comparison settings (rusir.degradations.variants), whichever methods ran them

A column group is one metric (accuracy LPIPS, fidelity LPIPS, patch-FID: the paper's three; then
accuracy PSNR, accuracy SSIM, fidelity PSNR, which need no downloaded weights; then any further
metric the records carry); inside it one column per method (PULSE | L-BRGM | OURS first). A cell
holds the mean over images, its standard error and n (`rusir.report.summary`), or a set metric's
value (`rusir.report.set_metrics`). The best cell of each row and group is marked: lowest for
LPIPS/FID/KID, highest otherwise, compared as printed (two cells that print alike are both best),
and only where at least two methods have a value.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

from .. import metrics
from ..degradations import LEVELS, TASKS
from .set_metrics import MIN_SAMPLES
from .summary import cell_stats, cells

__all__ = ["Cell", "PaperTable", "PAPER_GROUPS", "FREE_GROUPS", "METRIC_ORDER", "METHOD_NAMES",
           "TABLE3_SETTINGS", "lower_is_better", "fmt_value", "method_label", "metric_label",
           "layout_tables"]

PAPER_GROUPS = ("accuracy_lpips", "fidelity_lpips", "patch_fid")
FREE_GROUPS = ("accuracy_psnr", "accuracy_ssim", "fidelity_psnr")
METRIC_ORDER = PAPER_GROUPS + FREE_GROUPS + (
    "accuracy_lpips_alex", "accuracy_ms_ssim", "fidelity_lpips_alex", "fidelity_ssim",
    "fidelity_ms_ssim", "fid", "kid", "is")
METHOD_ORDER = ("pulse", "lbrgm", "adam_wplus", "ddrm", "rusir")
METHOD_NAMES = {"pulse": "PULSE", "lbrgm": "L-BRGM", "adam_wplus": "Adam W+", "ddrm": "DDRM",
                "rusir": "OURS"}
COMPOSITION_ORDER = ("NA", "AP", "UA", "NP", "UN", "UP", "UNP", "UAP", "UNA", "NAP", "UNAP")
# Table 3: (task, label) in the paper's order; the paper ran them at XL (uncropping has no level).
TABLE3_SETTINGS = (
    ("avgpool_upsampling", "exact upsampling (known average pooling)"),
    ("nearest_upsampling", "inexact upsampling (unknown nearest-neighbour)"),
    ("gaussian_noise", "linear denoising (additive Gaussian)"),
    ("clamped_gaussian_noise", "nonlinear denoising (clamped additive Gaussian)"),
    ("inpainting", "inpainting (random strokes)"),
    ("uncropping", "uncropping (top-left corner kept)"))
_TABLE3_ONLY = {t for t, _ in TABLE3_SETTINGS} - {"inpainting"}
_DECIMALS = {"psnr": 2, "ssim": 3, "lpips": 3, "patch_fid": 2, "fid": 2, "kid": 4, "is": 2}


def lower_is_better(metric: str) -> bool:
    """LPIPS, FID, KID (distances); PSNR, SSIM, IS are higher-is-better."""
    name = metric.split("_", 1)[1] if metric.startswith(("accuracy_", "fidelity_")) else metric
    return any(word in name for word in ("lpips", "fid", "kid"))


def _decimals(metric: str) -> int:
    if metric in ("patch_fid", "fid", "kid", "is"):
        return _DECIMALS[metric]
    return next((d for word, d in _DECIMALS.items() if word in metric), 3)


def fmt_value(metric: str, value: float) -> str:
    """A metric value as printed (its decimals: LPIPS/SSIM 3, PSNR/FID 2, KID 4)."""
    text = f"{value:.{_decimals(metric)}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text   # no "-0.000"


def method_label(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def metric_label(metric: str) -> str:
    """`accuracy LPIPS ↓`, `realism pFID ↓`, `accuracy PSNR ↑`, ..."""
    arrow = "↓" if lower_is_better(metric) else "↑"
    if metric.startswith(("accuracy_", "fidelity_")):
        kind, _, name = metric.partition("_")
        return f"{kind} {name.replace('_', '-').upper()} {arrow}"
    name = {"patch_fid": "pFID", "is": "IS"}.get(metric, metric.upper())
    return f"realism {name} {arrow}"


@dataclass(frozen=True)
class Cell:
    """One (setting, method, metric): `mean` (None: n/a, `note` says why), its standard error
    over images `se`, `n` samples (`unit`), `repeats` and their spread `repeat_sd`, `best`."""
    mean: Optional[float]
    se: Optional[float] = None
    n: Optional[int] = None
    unit: str = "images"
    repeats: int = 1
    repeat_sd: Optional[float] = None
    note: Optional[str] = None
    best: bool = False


Row = tuple   # (task, level)


@dataclass
class PaperTable:
    """One of the paper's tables: rows (task, level) with a printed label, methods, metric groups
    and their cells ({(row, method, metric): Cell}; a method that did not run a row has none)."""
    name: str
    title: str
    rows: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)
    methods: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    cells: dict = field(default_factory=dict)

    def cell(self, row: Row, method: str, metric: str) -> Optional[Cell]:
        return self.cells.get((row, method, metric))

    def panels(self) -> list[tuple[str, list[str]]]:
        """(title, groups) of the printed panels: the paper's metrics, the weight-free ones, the rest."""
        rest = [g for g in self.groups if g not in PAPER_GROUPS + FREE_GROUPS]
        out = [("paper metrics", [g for g in PAPER_GROUPS if g in self.groups]),
               ("weight-free metrics", [g for g in FREE_GROUPS if g in self.groups])]
        return [(t, g) for t, g in out + [("further metrics", rest)] if g]

    def notes(self) -> dict[str, list[str]]:
        """{metric: distinct reasons} of its n/a cells (a too-small n is printed in the cell)."""
        out: dict[str, list[str]] = {}
        for (_, _, metric), c in self.cells.items():
            if c.note and not c.note.startswith("n too small"):
                reasons = out.setdefault(metric, [])
                if c.note not in reasons:
                    reasons.append(c.note)
        return {m: out[m] for m in self.groups if m in out}

    @property
    def flat(self) -> list[dict]:
        """One dict per (row, method) that ran: method, task, level, n and each metric's mean."""
        out = []
        for row in self.rows:
            for method in self.methods:
                got = {m: self.cell(row, method, m) for m in self.groups}
                if all(c is None for c in got.values()):
                    continue
                n = max((c.n or 0 for m, c in got.items() if c and c.unit == "images"), default=0)
                out.append({"method": method, "task": row[0], "level": row[1], "n": n,
                            **{m: (c.mean if c else None) for m, c in got.items()}})
        return out


def _row_order(table: str, row: Row) -> tuple:
    task, level = row
    lv = LEVELS.index(level) if level in LEVELS else len(LEVELS)
    if table == "table1":
        return (TASKS.index(task) if task in TASKS else len(TASKS), task, lv)
    if table == "table2":
        known = COMPOSITION_ORDER
        return (known.index(task) if task in known else len(known), task, lv)
    order = [t for t, _ in TABLE3_SETTINGS]
    return (order.index(task), lv)


def _table_of(record: dict) -> str:
    if record.get("category") == "composed":
        return "table2"
    return "table3" if record["task"] in _TABLE3_ONLY else "table1"


def _label(table: str, row: Row) -> str:
    task, level = row
    if table == "table3":
        name = dict(TABLE3_SETTINGS)[task]
        return name if task == "uncropping" else f"{name}, {level}"
    if table == "table2":
        return task if level == "M" else f"{task}@{level}"
    return f"{task} {level}"


def _method_order(methods: Sequence[str]) -> list[str]:
    """The paper's baselines first (PULSE, L-BRGM, ...), then any other method, OURS last."""
    known = [m for m in METHOD_ORDER if m in methods and m != "rusir"]
    return known + [m for m in methods if m not in METHOD_ORDER] + (["rusir"] if "rusir" in methods else [])


def _set_cell(values: dict, reasons: dict, metric: str) -> Cell:
    if values.get(metric) is None:
        return Cell(None, note=reasons.get(metric, "not computed"))
    n = values.get(f"{metric}_n")
    low = n is not None and n < MIN_SAMPLES.get(metric, 0)
    note = (f"computed on fewer samples than its default minimum {MIN_SAMPLES[metric]} "
            "(--min-samples): not comparable with the paper") if low else None
    return Cell(values[metric], n=n, unit="crops" if metric == "patch_fid" else "images",
                repeats=values.get(f"{metric}_repeats", 1),
                repeat_sd=values.get(f"{metric}_repeat_sd"), note=note)


def _mark_best(table: PaperTable) -> None:
    for row in table.rows:
        for metric in table.groups:
            got = {m: table.cell(row, m, metric) for m in table.methods}
            printed = {m: fmt_value(metric, c.mean) for m, c in got.items() if c and c.mean is not None}
            if len(printed) < 2:
                continue
            pick = min if lower_is_better(metric) else max
            best = pick(float(v) for v in printed.values())
            for m, text in printed.items():
                if float(text) == best:
                    table.cells[(row, m, metric)] = replace(got[m], best=True)


def layout_tables(records: Sequence[dict], set_values: dict,
                  not_computed: str = "not computed") -> dict[str, PaperTable]:
    """{"table1", "table2", "table3": PaperTable} of the records; `set_values`:
    {(method, task, level): (values, reasons)} of the set metrics ({} when not computed: those
    cells read `not_computed`)."""
    titles = {"table1": "Table 1: single tasks", "table2": "Table 2: compositions",
              "table3": "Table 3: the DDRM-comparison settings"}
    tables = {name: PaperTable(name, title) for name, title in titles.items()}
    by_cell = cells(records)
    for (method, task, level), recs in by_cell.items():
        placed = [_table_of(recs[0])]
        if placed[0] == "table1" and task == "inpainting" and level == "XL":
            placed.append("table3")
        stats, reasons = cell_stats(recs)
        values, set_reasons = set_values.get((method, task, level), ({}, {}))
        for metric in set(stats) | set(PAPER_GROUPS + FREE_GROUPS):
            if metric in metrics.SET_METRICS:
                continue
            s = stats.get(metric)
            cell = Cell(None, note=reasons.get(metric, "not recorded")) if s is None else Cell(
                s["mean"], s["se"], s["n"], "images", s["repeats"], s["repeat_sd"])
            for name in placed:
                tables[name].cells[((task, level), method, metric)] = cell
        for metric in metrics.SET_METRICS:
            if metric != "patch_fid" and metric not in values and metric not in set_reasons:
                continue
            cell = _set_cell(values, set_reasons or {metric: not_computed}, metric)
            for name in placed:
                tables[name].cells[((task, level), method, metric)] = cell
    for name, table in tables.items():
        keys = list(table.cells)          # in record order (method, task, level)
        table.rows = sorted({k[0] for k in keys}, key=lambda r: _row_order(name, r))
        table.labels = {r: _label(name, r) for r in table.rows}
        table.methods = _method_order(list(dict.fromkeys(k[1] for k in keys)))
        present = set(PAPER_GROUPS + FREE_GROUPS) | {k[2] for k in keys}
        table.groups = [m for m in METRIC_ORDER if m in present] + sorted(present - set(METRIC_ORDER))
        if name == "table3" and all(r == ("inpainting", "XL") for r in table.rows) and \
                "ddrm" not in table.methods:
            table.rows, table.cells = [], {}    # inpainting XL alone is Table 1's, not a comparison
        _mark_best(table)
    return tables
