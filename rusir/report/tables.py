"""The former `rusir.evaluation.report` import path, kept for code that still imports from it
(rusir.studies.iqa: `set_metrics_for`). New code imports from `rusir.report`."""
from __future__ import annotations

from ..engine.records import load_records
from .document import build_tables, write_report
from .layout import METRIC_ORDER, PaperTable
from .set_metrics import default_crops, set_metrics_for
from .summary import cell_stats, summarise

__all__ = ["load_records", "build_tables", "write_report", "set_metrics_for", "default_crops",
           "summarise", "cell_stats", "METRIC_ORDER", "PaperTable"]
