"""Per-(task, level) hyperparameters of the baselines: YAML tables shipped inside the package.

The paper compares one fixed RUSIR configuration with baselines tuned per task and level, so
those tuned values are data. Two kinds of table, both package data (found the same from a wheel):

    rusir/baselines/tables/<method>.yaml               untuned defaults (the baselines' papers)
    rusir/baselines/tables/<generator>/<method>.yaml   tuned for one generator by `rusir tune`

A table looks like

    defaults: {steps: 100, lr: 0.4}          # every task and level
    tasks:
      denoising:
        all: {steps: 300}                    # every level of this task
        XL: {lr: 0.2}                        # this task at this level
    provenance: {...}                        # tuned tables: how they were chosen (rusir.studies.tuning)

and `baseline_config(method, task, level, generator=...)` merges defaults < task `all` < task
level, from the generator's tuned table when there is one, else from the untuned one. Keys are
keyword arguments of the method, so `get_method(m)(G, y, deg, **baseline_config(m, t, l))` runs
it. Task names are the registry's (`upsampling`, ...) or their initials (`U`, `NP`, `UNAP`).
RUSIR itself has no table: one configuration for every task, so `baseline_config("rusir", ...)`
is `{}`. `RUSIR_BASELINE_TABLES` points the reader at another tables folder.
"""
from __future__ import annotations

import inspect
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from ..degradations import LEVELS, canonical_task
from ..validation import (MAX_COUNT, MAX_RATE, MAX_STEPS, choice, number, read_yaml, side,
                          whole)

__all__ = ["TABLES_DIR", "TABLES", "table_path", "table_for", "table_source", "load_table",
           "baseline_config", "TABLE_KEYS"]

TABLES_DIR = Path(os.environ.get("RUSIR_BASELINE_TABLES", Path(__file__).resolve().parent / "tables"))
TABLES = ("pulse", "lbrgm", "adam_wplus")
UNTABLED = ("rusir",)
TABLE_KEYS = ("defaults", "tasks", "provenance")
_GENERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")   # a registry name, never a path


def table_path(method: str, generator: Optional[str] = None) -> Path:
    """Where the untuned table of `method` is, or (generator given) its tuned one for `generator`."""
    if method not in TABLES:
        raise ValueError(f"no hyperparameter table for method {method!r}; tables exist for {list(TABLES)}")
    if generator is None:
        return TABLES_DIR / f"{method}.yaml"
    if not _GENERATOR_NAME.fullmatch(str(generator)) or str(generator).startswith("."):
        raise ValueError(f"tuned tables are kept per generator registry name; {generator!r} is not one")
    return TABLES_DIR / str(generator) / f"{method}.yaml"


def table_for(method: str, generator: Optional[str] = None) -> Optional[Path]:
    """The table a run uses: the generator's tuned one when present, else the untuned one, else
    None. A generator known only by a file path has no tuned table."""
    if generator is not None and _GENERATOR_NAME.fullmatch(str(generator)):
        tuned = table_path(method, generator)
        if tuned.is_file():
            return tuned
    untuned = table_path(method)
    return untuned if untuned.is_file() else None


def table_source(method: str, generator: Optional[str] = None) -> Optional[dict]:
    """What a record says about the table behind its hyperparameters: {path (relative to the
    tables folder), tuned, split (tuned tables: `tuning` or `test`)}; None without a table."""
    path = table_for(method, generator)
    if path is None:
        return None
    tuned = path.parent != TABLES_DIR
    source = {"path": path.relative_to(TABLES_DIR).as_posix(), "tuned": tuned}
    if tuned:
        source["split"] = (load_table(method, path).get("provenance") or {}).get("split")
    return source


def load_table(method: str, path: Union[str, Path, None] = None) -> dict[str, Any]:
    """The raw table {defaults, tasks, provenance} of a method (or of the YAML at `path`)."""
    path = Path(path) if path is not None else table_path(method)
    if not path.is_file():
        raise FileNotFoundError(f"baseline table {path} does not exist")
    data = read_yaml(path) or {}
    if not isinstance(data, dict) or set(data) - set(TABLE_KEYS):
        raise ValueError(f"{path}: expected a mapping with keys {list(TABLE_KEYS)}, got "
                         f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    for key in TABLE_KEYS:
        if not isinstance(data.get(key) or {}, dict):
            raise ValueError(f"{path}: '{key}' must be a mapping")
    return {key: dict(data.get(key) or {}) for key in TABLE_KEYS}


def baseline_config(method: str, task: Optional[str] = None, level: Optional[str] = None,
                    path: Union[str, Path, None] = None,
                    generator: Optional[str] = None) -> dict[str, Any]:
    """Keyword arguments of `method` for (task, level): defaults < task `all` < task level, from
    `path`, or the generator's tuned table when present, else the untuned one (`table_for`)."""
    if level is not None:
        choice(level, "level", LEVELS)
    if method in UNTABLED and path is None:
        return {}
    if path is None:
        path = table_for(method, generator)
        if path is None:
            # a tables folder without this method's table (RUSIR_BASELINE_TABLES elsewhere):
            # the method's own defaults, which equal the shipped tables' defaults (tested)
            warnings.warn(f"baseline table {table_path(method)} not found; using {method}()'s "
                          "defaults", stacklevel=2)
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


def check_options(fn: Callable, options: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A baseline's options as a table or a search space gives them, checked before any run: a
    name `fn` takes (a keyword-only parameter, less the call protocol's), and a value of its
    default's kind, within the validation limits (steps in [0, MAX_STEPS], `lr` > 0, other
    numbers finite in [0, MAX_RATE], `resolution` a side). A one-line ValueError naming `what`."""
    from ..inversion.method import PROTOCOL
    signature = inspect.signature(fn).parameters.values()
    params = {p.name: p.default for p in signature
              if p.kind is p.KEYWORD_ONLY and p.name not in PROTOCOL}
    unknown = sorted(set(options) - set(params))
    # a method that names no option and takes **options (a test's stand-in) cannot be asked
    open_ended = not params and any(p.kind is p.VAR_KEYWORD for p in signature)
    if unknown and not open_ended:
        raise ValueError(f"{what}: unknown option(s) {unknown}; it takes {sorted(params)}")
    checked = {}
    for name, value in options.items():        # a method taking **options: steps, lr by name
        default = params[name] if name in params else {"steps": 0, "lr": 0.0}.get(name, ...)
        label = f"{what}: {name}"
        if default is ...:
            checked[name] = value
        elif value is None and default is None:
            checked[name] = None
        elif name == "resolution":
            checked[name] = side(value, label)
        elif isinstance(default, bool) or isinstance(value, bool):
            if not isinstance(value, bool) or not isinstance(default, bool):
                raise ValueError(f"{label} must be {type(default).__name__}, got {value!r}")
            checked[name] = value
        elif isinstance(default, int):
            checked[name] = whole(value, label, 0, MAX_STEPS if name == "steps" else MAX_COUNT,
                                  "MAX_STEPS" if name == "steps" else "MAX_COUNT")
        elif isinstance(default, float) or (default is None and isinstance(value, (int, float))):
            checked[name] = number(value, label, 0.0, MAX_RATE, "MAX_RATE", strict=name == "lr")
        elif isinstance(default, str) or default is None:
            if not isinstance(value, str):
                raise ValueError(f"{label} must be a name (a string), got {value!r}")
            checked[name] = value
        else:
            checked[name] = value
    return checked

