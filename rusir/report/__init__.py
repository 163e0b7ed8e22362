"""`rusir report`: the paper's tables (Markdown, CSV, LaTeX) and plots from a benchmark folder
written by `rusir bench` (docs/report.md).

    summary      summarise: per cell and metric the mean, its standard error, n, repeat spread
    features     Inception features computed once per image, cached by content
    set_metrics  patch-FID / FID / KID / IS per cell, n/a below a meaningful sample size
    layout       the paper's Tables 1-3: settings as rows, methods side by side per metric
    writers      Markdown, CSV, LaTeX (booktabs)
    plots        each metric against the level
    document     write_report: all of it into <dir>/report/
"""
from __future__ import annotations

from ..engine.records import load_records
from .document import build_tables, write_cells, write_report
from .features import FeatureSpec, FeatureStore
from .layout import Cell, PaperTable, layout_tables
from .plots import plot_metrics_vs_level
from .set_metrics import MIN_SAMPLES, SetMetricConfig, default_crops, set_metrics_for
from .summary import summarise
from .writers import to_csv, to_latex, to_markdown

__all__ = ["load_records", "summarise", "build_tables", "write_report", "write_cells",
           "set_metrics_for", "SetMetricConfig", "MIN_SAMPLES", "default_crops", "FeatureStore",
           "FeatureSpec", "PaperTable", "Cell", "layout_tables", "to_markdown", "to_csv",
           "to_latex", "plot_metrics_vs_level"]
