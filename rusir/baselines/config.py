"""Per-(task, level) hyperparameters of the baselines, read from `params/baselines/<method>.yaml`.

The paper compares one fixed RUSIR configuration with baselines tuned per task and level, so
those tuned values are data. A table looks like

    defaults: {steps: 100, lr: 0.4}          # every task and level
    tasks:
      denoising:
        all: {steps: 300}                    # every level of this task
        XL: {lr: 0.2}                        # this task at this level

and `baseline_config(method, task, level)` merges defaults < task `all` < task level. Keys are
keyword arguments of the method, so `get_method(m)(G, y, deg, **baseline_config(m, t, l))` runs
it; a papermill sweep edits the YAML (or passes its own `path`). Task names are the registry's
(`upsampling`, ...) or their initials (`U`, `NP`, `UNAP` for compositions). RUSIR itself has no
table: one configuration for every task, so `baseline_config("rusir", ...)` is `{}`. Without the
tables (an install without the repository's params/), the methods' code defaults are used.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Optional, Union

from ..degradations import LEVELS, canonical_task
from ..validation import choice, read_yaml

__all__ = ["PARAMS_DIR", "TABLES", "table_path", "load_table", "baseline_config"]

PARAMS_DIR = Path(os.environ.get("RUSIR_BASELINE_PARAMS",
                                 Path(__file__).resolve().parents[2] / "params" / "baselines"))
TABLES = ("pulse", "lbrgm", "adam_wplus")
UNTABLED = ("rusir",)


def table_path(method: str) -> Path:
    if method not in TABLES:
        raise ValueError(f"no hyperparameter table for method {method!r}; tables exist for {list(TABLES)}")
    return PARAMS_DIR / f"{method}.yaml"


def load_table(method: str, path: Union[str, Path, None] = None) -> dict[str, Any]:
    """The raw table {defaults: {...}, tasks: {...}} of a method (or of the YAML at `path`)."""
    path = Path(path) if path is not None else table_path(method)
    if not path.is_file():
        raise FileNotFoundError(f"baseline table {path} does not exist")
    data = read_yaml(path) or {}
    if not isinstance(data, dict) or set(data) - {"defaults", "tasks"}:
        raise ValueError(f"{path}: expected a mapping with keys 'defaults' and 'tasks', got "
                         f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    for key in ("defaults", "tasks"):
        if not isinstance(data.get(key) or {}, dict):
            raise ValueError(f"{path}: '{key}' must be a mapping")
    return {"defaults": dict(data.get("defaults") or {}), "tasks": dict(data.get("tasks") or {})}


def baseline_config(method: str, task: Optional[str] = None, level: Optional[str] = None,
                    path: Union[str, Path, None] = None) -> dict[str, Any]:
    """Keyword arguments of `method` for (task, level): defaults < task `all` < task level."""
    if level is not None:
        choice(level, "level", LEVELS)
    if method in UNTABLED and path is None:
        return {}
    if path is None and not table_path(method).is_file():
        # e.g. a non-editable install without the repository's params/: the method's own
        # defaults, which equal the shipped tables' defaults (tested)
        warnings.warn(f"baseline table {table_path(method)} not found; using {method}()'s defaults "
                      "(set RUSIR_BASELINE_PARAMS to the params/baselines folder)", stacklevel=2)
        return {}
    table = load_table(method, path)
    config = dict(table["defaults"])
    if task is not None:
        wanted = canonical_task(task)
        entries = {canonical_task(str(k)): v for k, v in table["tasks"].items()}
        entry = entries.get(wanted) or {}
        if not isinstance(entry, dict):
            raise ValueError(f"{method} table: entry for task {task!r} must be a mapping")
        unknown = set(entry) - {"all", *LEVELS}
        if unknown:
            raise ValueError(f"{method} table, task {task!r}: keys must be 'all' or levels "
                             f"{list(LEVELS)}, got {sorted(unknown)}")
        config.update(entry.get("all") or {})
        if level is not None:
            config.update(entry.get(level) or {})
    return config
