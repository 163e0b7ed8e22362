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
beside it) and `sweep.json` (parameters and their hash, status, seconds, the results files found;
for a failed set the error `Type: message`, the failing cell and the traceback). A set's status is
a function of its parameters (`set_status`): "done" only when `sweep.json` says done with the same
parameters (their hash; `out_dir` left out, so a moved folder stays done), "changed" when done with
others, else "failed" or "todo". A done set is skipped on re-run (`--force` re-runs it); failed,
changed and todo sets run -- and `--dry-run` says which. A malformed sweep file (YAML syntax, a
`!!python` tag, a value of the wrong kind) is one ValueError line naming the file.

    rusir sweep params/task_upsampling.yaml --out runs/sweeps/upsampling
    rusir sweep params/ablation.yaml --dry-run              # list the sets and their status
    rusir sweep params/compositions.yaml --param steps=[5,5,5] --param n_images=1   # overrides
    rusir sweep params/ablation.yaml --engine ray --address auto   # each set a Ray task
"""
from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import re
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from .validation import ENGINES, MAX_NAME_LENGTH, grid_size, name_template, read_yaml

from .data.outputs import check_output, write_text

__all__ = ["ParamSet", "Sweep", "load_sweep", "check_parameters", "notebook_parameters", "run_sweep",
           "run_set", "set_status", "parameters_hash", "failure_reason", "papermill_execute"]

STATUS_FILE = "sweep.json"
BENCH_CONFIG = "bench.json"     # rusir.engine.records.CONFIG (not imported: `rusir sweep` stays light)
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


def _safe_name(name: str, path: Path) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"{path}: set name {name[:40]!r}... is {len(name)} characters, more than "
                         f"a file name takes (limit rusir.validation.MAX_NAME_LENGTH = {MAX_NAME_LENGTH})")
    cleaned = "".join(c if c.isalnum() or c in "-_.+=" else "_" for c in name).strip("._")
    if not cleaned:
        raise ValueError(f"{path}: set name {name!r} has no usable characters")
    return cleaned


_KINDS = {"notebook": (str, "a path"), "name": (str, "a string"), "description": (str, "a string"),
          "parameters": (dict, "a mapping"), "grid": (dict, "a mapping"), "sets": (list, "a list of sets")}


def _check_kinds(path: Path, data: dict) -> None:
    """The top-level values are of the kinds load_sweep reads (else a ValueError naming the file)."""
    for key, (kind, what) in _KINDS.items():
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise ValueError(f"{path}: {key} must be {what} (got {type(data[key]).__name__})")


def load_sweep(path: Union[str, Path]) -> Sweep:
    """Parse a sweep YAML into its parameter sets (grid expanded, names unique)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such sweep file: {path}")
    data = read_yaml(path, f"{path}: not a valid sweep file") or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a sweep file is a mapping with notebook, parameters, grid / sets")
    unknown = set(data) - _KEYS
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(map(str, unknown))}; valid: {sorted(_KEYS)}")
    _check_kinds(path, data)
    shared = dict(data.get("parameters") or {})
    default_nb = data.get("notebook")
    sets: list[ParamSet] = []

    grid = data.get("grid") or {}
    if grid:
        if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
            raise ValueError(f"{path}: grid must map parameter names to non-empty lists")
        template = name_template(data.get("name") or "_".join(f"{{{k}}}" for k in grid),
                                 f"{path}: name template")
        grid_size([len(v) for v in grid.values()], f"{path}: the grid")
        for values in itertools.product(*grid.values()):
            params = {**shared, **dict(zip(grid, values))}
            try:
                name = template.format(**params)
            except KeyError as exc:
                raise ValueError(f"{path}: name template {template!r} uses unknown parameter {exc}") from None
            except (IndexError, ValueError, TypeError) as exc:
                raise ValueError(f"{path}: bad name template {template!r} ({exc})") from None
            if default_nb is None:
                raise ValueError(f"{path}: a grid needs a top-level notebook")
            sets.append(ParamSet(_safe_name(name, path), _resolve_notebook(default_nb, path), params))

    for i, entry in enumerate(data.get("sets") or []):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{path}: sets[{i}] must be a mapping with a name")
        if not isinstance(entry["name"], (str, int)) or isinstance(entry["name"], bool):
            raise ValueError(f"{path}: sets[{i}]: name must be a string (got {type(entry['name']).__name__})")
        if not isinstance(entry.get("parameters") or {}, dict):
            raise ValueError(f"{path}: sets[{i}]: parameters must be a mapping "
                             f"(got {type(entry['parameters']).__name__})")
        nb = entry.get("notebook", default_nb)
        if nb is None:
            raise ValueError(f"{path}: sets[{i}] has no notebook (and there is no top-level one)")
        if not isinstance(nb, str):
            raise ValueError(f"{path}: sets[{i}]: notebook must be a path (got {type(nb).__name__})")
        params = {**shared, **(entry.get("parameters") or {})}
        sets.append(ParamSet(_safe_name(str(entry["name"]), path), _resolve_notebook(nb, path), params))

    if not sets:
        raise ValueError(f"{path}: no parameter sets (give a grid and/or sets)")
    grid_size([len(sets)], f"{path}: the sweep")
    dupes = sorted(n for n, uses in Counter(s.name for s in sets).items() if uses > 1)
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


def parameters_hash(parameters: dict) -> str:
    """A hash of a set's parameters as JSON, `out_dir` left out (it is where the set is, not what)."""
    data = {k: v for k, v in parameters.items() if k != "out_dir"}
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_status(folder: Path) -> Optional[dict]:
    """The set's sweep.json, or None (absent or unreadable: the set is not done)."""
    try:
        record = json.loads((folder / STATUS_FILE).read_text())
    except (ValueError, OSError):
        return None
    return record if isinstance(record, dict) else None


def set_status(folder: Path, parameters: Optional[dict] = None) -> str:
    """'todo', 'failed', 'done' or -- given the set's `parameters` -- 'changed': done with other
    parameters (compared by parameters_hash; a sweep.json from before the hash, by its parameters)."""
    record = _read_status(Path(folder))
    status = record.get("status") if record is not None else None
    if status not in ("done", "failed"):
        return "todo"
    if parameters is None or status != "done":
        return status
    stored = record.get("parameters_hash")
    if stored is None and isinstance(record.get("parameters"), dict):
        stored = parameters_hash(record["parameters"])
    return "done" if stored == parameters_hash(parameters) else "changed"


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def failure_reason(exc: BaseException) -> dict:
    """What a failed set records: `error` (`Type: message`), `traceback` and, from papermill's
    PapermillExecutionError, the notebook's failing `cell` (index, execution count, source) and
    `line` (the cell's failing line) -- papermill's own message starts with a line of dashes."""
    if getattr(exc, "ename", None) is not None and hasattr(exc, "traceback"):
        tb = _ANSI.sub("", "\n".join(exc.traceback or []))
        error = f"{exc.ename}: {exc.evalue}" if str(exc.evalue or "").strip() else str(exc.ename)
        source = str(getattr(exc, "source", "") or "")
        marked = [m.group(1).strip() for m in re.finditer(r"^-*>\s*\d+\s(.*)$", tb, re.M)]
        lines = [ln.strip() for ln in source.splitlines() if ln.strip()]
        return {"error": error[:2000], "traceback": tb[-8000:], "line": (marked or lines[-1:] or [""])[0],
                "cell": {"index": exc.cell_index, "execution_count": exc.exec_count, "source": source}}
    text = str(exc).strip()
    error = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"error": error[:2000], "traceback": tb[-8000:]}


def _failure_line(reason: dict) -> str:
    """One line: the error's first line, and for a notebook cell its number and failing line."""
    text = next((ln for ln in reason["error"].splitlines() if ln.strip()), reason["error"])
    cell = reason.get("cell")
    if cell:
        number = cell.get("execution_count") or cell.get("index")
        text += f" (in cell {number}: {reason.get('line', '')})" if reason.get("line") else f" (in cell {number})"
    return text


def _write_status(folder: Path, record: dict) -> None:
    """sweep.json, atomically and never through a link (rusir.data.outputs)."""
    write_text(folder / STATUS_FILE, json.dumps(record, indent=1, default=str))


def papermill_execute(notebook: Path, output: Path, parameters: dict, cwd: Path,
                      kernel_name: Optional[str] = None) -> None:
    """Execute `notebook` with papermill into `output` (raises if a cell fails)."""
    import papermill as pm  # optional (the `notebooks` extra): loaded on use
    pm.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(cwd),
                        kernel_name=kernel_name, progress_bar=False)


def _results_files(folder: Path, executed: Path) -> list[str]:
    """The .json / .csv files a set wrote; a folder of the runner's records (a notebook run
    through `rusir.run_bench`) is listed by its `bench.json`, not its every item's record."""
    benches = [p.parent for p in folder.rglob(BENCH_CONFIG)]
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.suffix in (".json", ".csv") and p.name != STATUS_FILE and p != executed
                  and not any(b in p.parents and p != b / BENCH_CONFIG for b in benches))


def run_sweep(path: Union[str, Path], out: Union[str, Path, None] = None, dry_run: bool = False,
              force: bool = False, only: Sequence[str] = (), overrides: Optional[dict] = None,
              kernel_name: Optional[str] = None, execute: Callable = papermill_execute,
              log: Callable[[str], None] = print, engine: str = "local",
              address: Optional[str] = None, gpus_per_unit: Optional[float] = None, cpus_per_unit: float = 1,
              max_retries: int = 3) -> dict[str, str]:
    """Run (or list) every set of a sweep; returns {set name: status after this call}.
    engine `ray`: each set to run is a Ray task (rusir.engine.cluster; `address`,
    `gpus_per_unit` / `cpus_per_unit` per set, `max_retries` for dead workers) writing its own
    sweep.json into `out`, which must be on storage every node sees."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {list(ENGINES)}")
    if engine == "ray" and not dry_run:
        from .engine.cluster import require_ray  # torch and Ray load only for a real Ray run
        require_ray()
    sweep = load_sweep(path)
    check_parameters(sweep)
    out = (Path(out) if out is not None else Path("runs") / "sweeps" / sweep.path.stem).resolve()
    chosen = [s for s in sweep.sets if not only or any(fnmatch.fnmatch(s.name, p) for p in only)]
    if overrides:
        check_parameters(Sweep(sweep.path, [ParamSet(s.name, s.notebook, dict(overrides))
                                            for s in chosen]))
    statuses: dict[str, str] = {}
    runs: list[tuple] = []      # (head, set name, run_set's arguments)
    for i, pset in enumerate(chosen, 1):
        folder = (out / pset.name).resolve()
        params = {**pset.parameters, **(overrides or {}), "out_dir": str(folder)}
        status = set_status(folder, params)
        head = f"[{i}/{len(chosen)}] {pset.name}"
        if dry_run:
            log(f"{head}: {status:7s} {pset.notebook.name} {json.dumps(params, default=str)}")
            statuses[pset.name] = status
            continue
        if status == "done" and not force:
            log(f"{head}: done, skipped ({folder})")
            statuses[pset.name] = "skipped"
            continue
        if status == "changed":
            log(f"{head}: done with other parameters, running again")
        runs.append((head, pset.name, (pset, folder, params, sweep.path, execute, kernel_name, Path.cwd())))

    def start(index: int) -> None:
        head, _, (pset, folder, *_rest) = runs[index]
        log(f"{head}: running {pset.notebook.name} -> {folder / (pset.notebook.stem + '.ipynb')}")

    def done(index: int, result) -> None:
        head, name, _ = runs[index]
        if isinstance(result, BaseException):       # the set's worker died on every attempt
            folder = runs[index][2][1]
            record = {"set": name, "status": "failed", **failure_reason(result)}
            folder.mkdir(parents=True, exist_ok=True)
            _write_status(folder, record)
            result = record
        if result["status"] == "failed":
            log(f"{head}: FAILED: {_failure_line(result)}")
        statuses[name] = result["status"]

    if engine == "ray" and runs:
        from .engine.cluster import run_tasks
        out.mkdir(parents=True, exist_ok=True)
        for index in range(len(runs)):            # all submitted at once
            start(index)
        run_tasks(run_set, [args for _, _, args in runs], on_done=done, folder=out, address=address,
                  gpus_per_task=gpus_per_unit, cpus_per_task=cpus_per_unit, max_retries=max_retries)
    else:
        for index, (_, _, args) in enumerate(runs):   # each line just before its set runs
            start(index)
            done(index, run_set(*args))
    return statuses


def run_set(pset: ParamSet, folder: Path, params: dict, sweep_path: Path, execute: Callable,
            kernel_name: Optional[str], cwd: Path) -> dict:
    """Execute one parameter set into `folder` and write its sweep.json (the set's status, the one
    source of it); returns that record. Runs in the sweep's process or in a Ray worker."""
    folder.mkdir(parents=True, exist_ok=True)
    executed = folder / f"{pset.notebook.stem}.ipynb"
    record = {"set": pset.name, "notebook": str(pset.notebook), "parameters": params,
              "parameters_hash": parameters_hash(params), "sweep": str(sweep_path),
              "executed": executed.name}
    start = time.perf_counter()
    try:
        check_output(executed, overwrite=True)     # a link: refused, never written through
        execute(pset.notebook, executed, params, cwd, kernel_name)
        record["status"] = "done"
    except Exception as exc:  # a failed set is recorded and retried on the next run
        record.update(status="failed", **failure_reason(exc))
    record["seconds"] = round(time.perf_counter() - start, 2)
    record["results"] = _results_files(folder, executed)
    if record["status"] == "done" and not record["results"]:
        record.update(status="failed", error="the notebook wrote no results file (.json/.csv) into out_dir")
    _write_status(folder, record)
    return record
