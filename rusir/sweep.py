"""`rusir sweep params/<file>.yaml`: execute a notebook once per parameter set with papermill.

A sweep file names a notebook and its parameter sets, listed and/or as a grid:

    notebook: notebooks/10_task.ipynb        # relative to the working directory or the repo
    parameters: {generator: toyfaces64, n_images: 8}   # shared by every set
    name: "{task}_{level}"                   # set-name template for grid sets
    grid: {task: [upsampling, denoising], level: [XS, M, XL]}   # cartesian product -> 6 sets
    sets:                                    # and/or explicit sets
      - {name: UNAP_M, parameters: {task: UNAP, level: M}}

Each set runs into `<out>/<set-name>/`: the executed notebook `<notebook>.ipynb` (papermill,
with the set's parameters and `out_dir` = that folder, so its figures and results file land
beside it) and `sweep.json` (parameters, status, seconds, the results files found). A set whose
`sweep.json` says "done" with the same parameters is skipped on re-run (`--force` re-runs it);
failed sets, and sets whose parameters changed, run again.

    rusir sweep params/task_upsampling.yaml --out runs/sweeps/upsampling
    rusir sweep params/ablation.yaml --dry-run              # list the sets and their status
    rusir sweep params/compositions.yaml --param steps=[5,5,5] --param n_images=1   # overrides
"""
from __future__ import annotations

import fnmatch
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import yaml


__all__ = ["ParamSet", "Sweep", "load_sweep", "check_parameters", "notebook_parameters", "run_sweep",
           "set_status", "papermill_execute"]

STATUS_FILE = "sweep.json"
_KEYS = {"notebook", "parameters", "grid", "sets", "name", "description"}


@dataclass
class ParamSet:
    """One notebook execution: a name (its output folder), the notebook and its parameters."""
    name: str
    notebook: Path
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sweep:
    path: Path
    sets: list[ParamSet]
    description: str = ""


def _resolve_notebook(value: str, sweep_file: Path) -> Path:
    """A notebook path as given, else relative to the sweep file's folder or its parent (repo)."""
    p = Path(value)
    for base in (Path.cwd(), sweep_file.parent, sweep_file.parent.parent):
        candidate = p if p.is_absolute() else base / p
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"{sweep_file}: notebook {value!r} not found (relative to the working "
                            f"directory, {sweep_file.parent} or {sweep_file.parent.parent})")


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_.+=" else "_" for c in name).strip("._")
    if not cleaned:
        raise ValueError(f"set name {name!r} has no usable characters")
    return cleaned


def load_sweep(path: Union[str, Path]) -> Sweep:
    """Parse a sweep YAML into its parameter sets (grid expanded, names unique)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such sweep file: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a sweep file is a mapping with notebook, parameters, grid / sets")
    unknown = set(data) - _KEYS
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; valid: {sorted(_KEYS)}")
    shared = dict(data.get("parameters") or {})
    default_nb = data.get("notebook")
    sets: list[ParamSet] = []

    grid = data.get("grid") or {}
    if grid:
        if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
            raise ValueError(f"{path}: grid must map parameter names to non-empty lists")
        template = data.get("name") or "_".join(f"{{{k}}}" for k in grid)
        for values in itertools.product(*grid.values()):
            params = {**shared, **dict(zip(grid, values))}
            try:
                name = template.format(**params)
            except KeyError as exc:
                raise ValueError(f"{path}: name template {template!r} uses unknown parameter {exc}") from None
            if default_nb is None:
                raise ValueError(f"{path}: a grid needs a top-level notebook")
            sets.append(ParamSet(_safe_name(name), _resolve_notebook(default_nb, path), params))

    for i, entry in enumerate(data.get("sets") or []):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{path}: sets[{i}] must be a mapping with a name")
        nb = entry.get("notebook", default_nb)
        if nb is None:
            raise ValueError(f"{path}: sets[{i}] has no notebook (and there is no top-level one)")
        params = {**shared, **(entry.get("parameters") or {})}
        sets.append(ParamSet(_safe_name(str(entry["name"])), _resolve_notebook(nb, path), params))

    if not sets:
        raise ValueError(f"{path}: no parameter sets (give a grid and/or sets)")
    names = [s.name for s in sets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{path}: duplicate set names {dupes}; make the name template unique")
    return Sweep(path, sets, str(data.get("description", "")))


def notebook_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged `parameters` (papermill's reading of it)."""
    import papermill as pm  # optional (the `notebooks` extra): loaded on use
    return set(pm.inspect_notebook(str(notebook)))


def check_parameters(sweep: Sweep) -> None:
    """Every set's parameters (and out_dir) must be parameters of its notebook: catch typos early."""
    known: dict[Path, set[str]] = {}
    for pset in sweep.sets:
        if pset.notebook not in known:
            known[pset.notebook] = notebook_parameters(pset.notebook)
        unknown = (set(pset.parameters) | {"out_dir"}) - known[pset.notebook]
        if unknown:
            raise ValueError(f"{sweep.path}: set {pset.name!r} passes {sorted(unknown)}, which "
                             f"{pset.notebook.name} does not take; its parameters are "
                             f"{sorted(known[pset.notebook])}")


def set_status(folder: Path) -> str:
    """'done', 'failed' or 'todo' for a set's output folder."""
    status_file = folder / STATUS_FILE
    if not status_file.is_file():
        return "todo"
    try:
        return json.loads(status_file.read_text()).get("status", "todo")
    except (ValueError, OSError):
        return "todo"


def papermill_execute(notebook: Path, output: Path, parameters: dict, cwd: Path,
                      kernel_name: Optional[str] = None) -> None:
    """Execute `notebook` with papermill into `output` (raises if a cell fails)."""
    import papermill as pm  # optional (the `notebooks` extra): loaded on use
    pm.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(cwd),
                        kernel_name=kernel_name, progress_bar=False)


def _results_files(folder: Path, executed: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.suffix in (".json", ".csv") and p.name != STATUS_FILE and p != executed)


def run_sweep(path: Union[str, Path], out: Union[str, Path, None] = None, dry_run: bool = False,
              force: bool = False, only: Sequence[str] = (), overrides: Optional[dict] = None,
              kernel_name: Optional[str] = None, execute: Callable = papermill_execute,
              log: Callable[[str], None] = print) -> dict[str, str]:
    """Run (or list) every set of a sweep; returns {set name: status after this call}."""
    sweep = load_sweep(path)
    check_parameters(sweep)
    out = Path(out) if out is not None else Path("runs") / "sweeps" / sweep.path.stem
    chosen = [s for s in sweep.sets if not only or any(fnmatch.fnmatch(s.name, p) for p in only)]
    if overrides:
        check_parameters(Sweep(sweep.path, [ParamSet(s.name, s.notebook, dict(overrides))
                                            for s in chosen]))
    statuses: dict[str, str] = {}
    for i, pset in enumerate(chosen, 1):
        folder = (out / pset.name).resolve()
        executed = folder / f"{pset.notebook.stem}.ipynb"
        params = {**pset.parameters, **(overrides or {}), "out_dir": str(folder)}
        status = set_status(folder)
        head = f"[{i}/{len(chosen)}] {pset.name}"
        if dry_run:
            log(f"{head}: {status:6s} {pset.notebook.name} {json.dumps(params)}")
            statuses[pset.name] = status
            continue
        if status == "done" and not force:
            previous = json.loads((folder / STATUS_FILE).read_text()).get("parameters")
            if previous == json.loads(json.dumps(params)):
                log(f"{head}: done, skipped ({folder})")
                statuses[pset.name] = "skipped"
                continue
            log(f"{head}: done with other parameters, running again")
        folder.mkdir(parents=True, exist_ok=True)
        log(f"{head}: running {pset.notebook.name} -> {executed}")
        record = {"set": pset.name, "notebook": str(pset.notebook), "parameters": params,
                  "sweep": str(sweep.path), "executed": executed.name}
        start = time.perf_counter()
        try:
            execute(pset.notebook, executed, params, Path.cwd(), kernel_name)
            record["status"] = "done"
        except Exception as exc:  # a failed set is recorded and retried on the next run
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            log(f"{head}: FAILED: {record['error'].splitlines()[0] if record['error'] else ''}")
        record["seconds"] = round(time.perf_counter() - start, 2)
        record["results"] = _results_files(folder, executed)
        if record["status"] == "done" and not record["results"]:
            record.update(status="failed", error="the notebook wrote no results file (.json/.csv) into out_dir")
            log(f"{head}: FAILED: {record['error']}")
        (folder / STATUS_FILE).write_text(json.dumps(record, indent=1))
        statuses[pset.name] = record["status"]
    return statuses
