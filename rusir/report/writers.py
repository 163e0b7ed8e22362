"""A `PaperTable` as Markdown, CSV and LaTeX (booktabs).

Markdown and LaTeX print one panel per metric family (the paper's three metrics, the weight-free
ones, any further ones), each column group one metric with the methods side by side; a cell reads
`mean ± se` (set metrics: the value alone), `[s]` after it with repeats (the spread over
repeats), the best of its row and group in bold, `n/a` where it cannot be computed (the reason in
the cell when n is too small, else in a note) and nothing where the method did not run the
setting. n goes into a note when every cell of a metric shares it, else into each cell. The CSV
holds every number unrounded: per metric and method its mean, se, n, best flag and note.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence, Union

from ..data.outputs import write_file
from .layout import Cell, PaperTable, fmt_value, method_label, metric_label

__all__ = ["to_markdown", "to_latex", "to_csv", "write_csv", "cell_text"]

PathLike = Union[str, Path]


# --- what a cell says -------------------------------------------------------------------------------

def _shared_n(table: PaperTable, metric: str) -> Optional[tuple[int, str]]:
    """(n, unit) when every valued cell of `metric` has the same n, else None."""
    got = {(c.n, c.unit) for (_, _, m), c in table.cells.items() if m == metric and c.mean is not None}
    return got.pop() if len(got) == 1 else None


def _has_repeats(table: PaperTable) -> bool:
    return any(c.repeats > 1 for c in table.cells.values())


def cell_text(cell: Optional[Cell], metric: str, show_n: bool = False, pm: str = " ± ") -> str:
    """The printed cell (without bold): '' (not run), `n/a ...`, `mean ± se [repeat sd] (n=k)`."""
    if cell is None:
        return ""
    if cell.mean is None:
        return f"n/a ({cell.note})" if cell.note and cell.note.startswith("n too small") else "n/a"
    text = fmt_value(metric, cell.mean)
    if cell.se is not None:
        text += pm + fmt_value(metric, cell.se)
    if cell.repeats > 1 and cell.repeat_sd is not None:
        text += f" [{fmt_value(metric, cell.repeat_sd)}]"
    if show_n and cell.n is not None:
        text += f" (n={cell.n})"
    return text


def notes(table: PaperTable) -> list[str]:
    """The lines under a table: what a cell means, shared n, repeats, reasons for n/a."""
    lines = ["cells: mean ± standard error over images (set metrics: one value per set); "
             "bold: best of its row and metric; empty: the method did not run the setting"]
    shared: dict[str, list[str]] = {}
    for metric in table.groups:
        got = _shared_n(table, metric)
        if got is not None and got[0] is not None:
            unit = got[1][:-1] if got[0] == 1 else got[1]      # 1 image, 2 images
            shared.setdefault(f"n = {got[0]} {unit} per cell", []).append(metric_label(metric))
    lines += [f"{text}: {', '.join(labels)}" for text, labels in shared.items()]
    if _has_repeats(table):
        k = max(c.repeats for c in table.cells.values())
        lines.append(f"[s]: standard deviation over the repeats (up to {k}) of the cell mean "
                     "computed per repeat; a difference smaller than it is rounding luck")
    for metric, reasons in table.notes().items():
        lines.append(f"n/a {metric_label(metric)}: " + "; ".join(r.splitlines()[0][:200] for r in reasons))
    return lines


def _key_columns(table: PaperTable) -> list[str]:
    return ["task", "level"] if table.name == "table1" else ["setting"]


def _key_values(table: PaperTable, row, previous) -> list[str]:
    if table.name != "table1":
        return [table.labels[row]]
    return ["" if previous is not None and previous[0] == row[0] else row[0], row[1]]


# --- Markdown ----------------------------------------------------------------------------------------

def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: PaperTable) -> str:
    lines = [f"## {table.title}", ""]
    if not table.rows:
        return "\n".join(lines + ["(no finished items)", ""])
    for title, groups in table.panels():
        keys = _key_columns(table)
        header = keys + [f"{metric_label(g)} {method_label(m)}" for g in groups for m in table.methods]
        lines += [f"### {title}", "", "| " + " | ".join(_md(h) for h in header) + " |",
                  "|" + "|".join([":--"] * len(keys) + ["--:"] * (len(header) - len(keys))) + "|"]
        previous = None
        for row in table.rows:
            out = _key_values(table, row, previous)
            for g in groups:
                show_n = _shared_n(table, g) is None
                for m in table.methods:
                    c = table.cell(row, m, g)
                    text = cell_text(c, g, show_n)
                    out.append(f"**{text}**" if c is not None and c.best else text)
            lines.append("| " + " | ".join(_md(v) for v in out) + " |")
            previous = row
        lines.append("")
    lines += [f"- {_md(n)}" for n in notes(table)] + [""]
    return "\n".join(lines)


# --- LaTeX -------------------------------------------------------------------------------------------

_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
          "<": "$<$", ">": "$>$", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def _latex_cell(cell: Optional[Cell], metric: str, show_n: bool) -> str:
    if cell is None:
        return ""
    text = cell_text(cell, metric, show_n)
    if not cell.best:
        return latex_escape(text)
    value, _, rest = text.partition(" ")
    return r"\textbf{" + latex_escape(value) + "}" + (" " + latex_escape(rest) if rest else "")


def to_latex(table: PaperTable) -> str:
    """One booktabs `table` per panel: multicolumn group headers, a rule between task blocks."""
    out = [f"% {table.title} -- written by `rusir report`; needs \\usepackage{{booktabs}}"]
    for title, groups in table.panels():
        keys = _key_columns(table)
        k, n_m = len(keys), len(table.methods)
        spec = "l" * k + " ".join(["r" * n_m] * len(groups))
        top = ["" for _ in keys] + [rf"\multicolumn{{{n_m}}}{{c}}{{{latex_escape(metric_label(g))}}}"
                                    for g in groups]
        rules = "".join(rf"\cmidrule(lr){{{k + 1 + i * n_m}-{k + (i + 1) * n_m}}}"
                        for i in range(len(groups)))
        second = keys + [method_label(m) for _ in groups for m in table.methods]
        out += [r"\begin{table}[t]", r"\centering", r"\small",
                rf"\caption{{{latex_escape(table.title)} ({latex_escape(title)})}}",
                rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(top) + r" \\", rules,
                " & ".join(latex_escape(s) for s in second) + r" \\", r"\midrule"]
        previous = None
        for row in table.rows:
            if table.name == "table1" and previous is not None and previous[0] != row[0]:
                out.append(r"\midrule")
            cells = [latex_escape(v) for v in _key_values(table, row, previous)]
            for g in groups:
                show_n = _shared_n(table, g) is None
                cells += [_latex_cell(table.cell(row, m, g), g, show_n) for m in table.methods]
            out.append(" & ".join(cells) + r" \\")
            previous = row
        out += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip\footnotesize"]
        out += [latex_escape(n) + r"\par" for n in notes(table)]
        out += [r"\end{table}", ""]
    return "\n".join(out)


# --- CSV ---------------------------------------------------------------------------------------------

def write_csv(path: PathLike, columns: Sequence[str], rows: Sequence[dict]) -> Path:
    """Rows (dicts) under `columns`, None as empty, written atomically."""
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
            w.writeheader()
            for row in rows:
                w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return write_file(path, write)


def to_csv(table: PaperTable, path: PathLike) -> Path:
    """One row per setting; per metric and method `<metric>:<method>` (mean) and `:se`, `:n`,
    `:best` (1/0), `:note` (why n/a), and `:repeat_sd` when the table has repeats."""
    parts = ["", ":se", ":n", ":best", ":note"] + ([":repeat_sd"] if _has_repeats(table) else [])
    columns = ["setting", "task", "level"] + [f"{g}:{m}{p}" for g in table.groups
                                              for m in table.methods for p in parts]
    rows = []
    for row in table.rows:
        out = {"setting": table.labels[row], "task": row[0], "level": row[1]}
        for g in table.groups:
            for m in table.methods:
                c = table.cell(row, m, g)
                if c is None:
                    continue
                out.update({f"{g}:{m}": c.mean, f"{g}:{m}:se": c.se, f"{g}:{m}:n": c.n,
                            f"{g}:{m}:best": int(c.best), f"{g}:{m}:note": c.note,
                            f"{g}:{m}:repeat_sd": c.repeat_sd})
        rows.append(out)
    return write_csv(path, columns, rows)
