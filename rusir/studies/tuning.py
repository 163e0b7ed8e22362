"""Tuning the baselines per (task, level): `rusir tune`, a configuration of the benchmark runner.

The paper: "We optimize the accuracy metric for the baselines hyperparameters for each (task,
level) pair individually". Here every candidate of a method's search space (a grid,
`rusir/baselines/search_spaces.yaml`, or a YAML of the same shape) becomes a method of the
runner, `<method>[tune=<k>]` (`bind_method`: its options win over the table's; the rest of its
options come from the untuned table's (task, level) entry), so a tuning run is resumable,
shardable and runs on Ray like every run (`run_bench`). Then, per (method, task, level), the
candidate with the best mean accuracy over the tuning images (PSNR by default, the metric the
embedded default can compute offline; the paper's is LPIPS, `metric="lpips"`) is chosen, and the
table `rusir/baselines/tables/<generator>/<method>.yaml` is written with its provenance: the
split, the tuning and test images, the metric, every candidate's options and score, and the record
folder. The benchmark then uses it for that generator (rusir.baselines.config).

Splits: `tuning` (the default, honest): tune on images disjoint from the test images;
`test`: tune on the test images themselves, as the paper did (for reproduction only).

    run_tuning("toyfaces64", methods=("pulse", "lbrgm"), tasks="single", out="runs/tune",
               test_images="heldout:60-63", tuning_images="heldout:0-3")
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import yaml
from torch import Tensor

from ..baselines import get_method
from ..baselines.config import TABLES, TABLES_DIR, check_options, load_table, table_path
from ..data.outputs import write_text
from ..engine.plan import BoundMethod, resolve_images
from ..engine.records import load_records, read_config
from ..engine.runner import BenchSummary, run_bench
from ..validation import grid_size, read_yaml

__all__ = ["SEARCH_SPACES", "SPLITS", "METRICS", "Candidate", "search_space", "candidates",
           "candidate_methods", "tuning_images", "select", "tuned_table", "run_tuning",
           "write_tables", "scores_markdown"]

SEARCH_SPACES = Path(__file__).resolve().parents[1] / "baselines" / "search_spaces.yaml"
SPLITS = ("tuning", "test")
METRICS = {"psnr": max, "ssim": max, "ms_ssim": max, "lpips": min}   # accuracy: which way is better
DEFAULT_TUNING_IMAGES = "heldout:0-3"


@dataclass(frozen=True)
class Candidate:
    """One point of a method's search space: `options` bound over its untuned table."""
    method: str
    index: int
    options: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The runner's method name: `<method>[tune=<index>]` (bench.json lists its options)."""
        return f"{self.method}[tune={self.index}]"


class _Candidate(BoundMethod):
    """A bound baseline that takes the rest of its options from the untuned table."""
    untuned_table = True


def search_space(method: str, path: Union[str, Path, None] = None) -> dict:
    """{fixed: {...}, grid: {option: [values]}} of `method` from the YAML at `path` (default the
    shipped search spaces); ValueError naming the problem."""
    path = Path(path) if path is not None else SEARCH_SPACES
    data = read_yaml(path) or {}
    if not isinstance(data, dict) or method not in data:
        raise ValueError(f"{path}: no search space for method {method!r} (has {sorted(data) if isinstance(data, dict) else []})")
    space = data[method] or {}
    if not isinstance(space, dict) or set(space) - {"fixed", "grid"}:
        raise ValueError(f"{path}: {method}: expected keys 'fixed' and 'grid', got {space!r}")
    fixed, grid = space.get("fixed") or {}, space.get("grid") or {}
    if not isinstance(fixed, dict) or not isinstance(grid, dict):
        raise ValueError(f"{path}: {method}: 'fixed' and 'grid' must be mappings of options")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: {method}: grid option {key!r} needs a non-empty list, got {values!r}")
    both = set(fixed) & set(grid)
    if both:
        raise ValueError(f"{path}: {method}: options both fixed and searched: {sorted(both)}")
    # every value checked as the method takes it, and the grid's size, before any run
    grid_size([len(values) for values in grid.values()], f"{path}: {method}: grid")
    fn, what = get_method(method), f"{path}: {method}"
    fixed = check_options(fn, fixed, what)
    grid = {key: [check_options(fn, {key: v}, what)[key] for v in values]
            for key, values in grid.items()}
    return {"fixed": fixed, "grid": grid}


def candidates(method: str, space: Mapping) -> list[Candidate]:
    """Every combination of the grid (in the order written), each with the fixed options."""
    grid = dict(space.get("grid") or {})
    keys = list(grid)
    return [Candidate(method, k, {**dict(space.get("fixed") or {}), **dict(zip(keys, values))})
            for k, values in enumerate(itertools.product(*(grid[key] for key in keys)))]


def candidate_methods(cands: Sequence[Candidate]) -> dict:
    """{candidate name: the bound method} for the runner."""
    return {c.name: _Candidate(get_method(c.method), **c.options) for c in cands}


def tuning_images(split: str, test_images, tuning: Optional[Any] = None):
    """The images to tune on: the test images themselves (`test`, the paper's way) or `tuning`
    images, checked disjoint from the test images (`tuning`, the default)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "test":
        return test_images
    tuning = DEFAULT_TUNING_IMAGES if tuning is None else tuning
    shared = _paths(tuning) & _paths(test_images)
    if shared:
        raise ValueError(f"the tuning images share {len(shared)} image(s) with the test images "
                         f"({sorted(Path(s).name for s in shared)[:4]}): a tuning split must be "
                         "disjoint (or use --split test, the paper's way)")
    return tuning


def _paths(images) -> set[str]:
    """The image files of an image spec (given tensors have none to compare)."""
    return {str(Path(p).resolve()) for _, p in resolve_images(images) if not isinstance(p, Tensor)}


def select(records: Sequence[Mapping], cands: Sequence[Candidate], metric: str = "psnr",
           n_images: Optional[int] = None) -> dict:
    """{(method, task, level): {chosen, options, score, scores {index: mean}, n}} over the
    candidates whose every tuning image is finished (n_images of them, default the most any
    candidate has); the best mean `accuracy_<metric>` wins, ties to the first in grid order."""
    if metric not in METRICS:
        raise ValueError(f"tuning metric must be one of {sorted(METRICS)}, got {metric!r}")
    by_name = {c.name: c for c in cands}
    values: dict[tuple, dict[int, list[float]]] = {}
    for r in records:
        cand = by_name.get(r.get("method"))
        value = (r.get("metrics") or {}).get(f"accuracy_{metric}")
        if cand is None or r.get("repeat", 0) or value is None or not math.isfinite(float(value)):
            continue
        values.setdefault((cand.method, r["task"], r["level"]), {}).setdefault(cand.index, []).append(float(value))
    best = METRICS[metric]
    out = {}
    for cell, per in sorted(values.items()):
        need = n_images or max(len(v) for v in per.values())
        scores = {k: sum(v) / len(v) for k, v in sorted(per.items()) if len(v) >= need}
        if not scores:
            continue
        chosen = best(scores, key=lambda k: (scores[k], -k) if best is max else (scores[k], k))
        options = next(c.options for c in cands if c.method == cell[0] and c.index == chosen)
        out[cell] = {"chosen": chosen, "options": dict(options), "score": scores[chosen],
                     "scores": scores, "n": need}
    return out


def tuned_table(method: str, chosen: Mapping[tuple, dict], provenance: Mapping) -> dict:
    """The untuned table of `method` with each tuned (task, level) entry set to its chosen
    options, plus `provenance` and per cell its scores (`provenance.cells`)."""
    base = load_table(method, table_path(method))
    tasks = {str(t): {str(k): dict(v or {}) for k, v in (entry or {}).items()}
             for t, entry in base["tasks"].items()}
    cells = {}
    for (m, task, level), pick in sorted(chosen.items()):
        if m != method:
            continue
        tasks.setdefault(task, {}).setdefault(level, {}).update(pick["options"])
        cells[f"{task}@{level}"] = {"chosen": pick["chosen"], "score": round(pick["score"], 4),
                                    "n_images": pick["n"],
                                    "scores": {int(k): round(v, 4) for k, v in pick["scores"].items()}}
    return {"defaults": base["defaults"], "tasks": tasks, "provenance": {**provenance, "cells": cells}}


def write_tables(out: Union[str, Path], generator: str, cands: Sequence[Candidate],
                 metric: str = "psnr", tables_dir: Union[str, Path, None] = None,
                 search: Optional[Mapping] = None,
                 search_file: Union[str, Path, None] = None) -> dict[str, Path]:
    """Select from the records in `out` and write each method's tuned table to
    `<tables_dir>/<generator>/<method>.yaml` (default the package's tables folder) and a copy to
    `out/tuned/<method>.yaml`. Returns {method: path}; a method with no finished cell is left out."""
    out = Path(out)
    config = read_config(out) or {}
    records = load_records(out)
    chosen = select(records, cands, metric)
    folder = Path(tables_dir) if tables_dir is not None else TABLES_DIR
    written, tables_made = {}, {}
    for method in dict.fromkeys(c.method for c in cands):
        if not any(cell[0] == method for cell in chosen):
            continue
        provenance = {
            "generator": generator, "generator_sha256": config.get("generator_sha256"),
            "split": config.get("split"), "metric": f"accuracy_{metric}",
            "tuning_images": config.get("image_names"), "tuning_images_spec": config.get("images"),
            "test_images": config.get("test_images"), "seed": config.get("seed"),
            "record_folder": str(out), "true_mask": config.get("true_mask"),
            "search_space": (search or {}).get(method), "search_file": str(search_file),
            # what the records say ran where a method may fall back (L-BRGM's perceptual term)
            "perceptual": sorted({str(r["config"]["perceptual"]) for r in records
                                  if r.get("method", "").startswith(f"{method}[tune=")
                                  and "perceptual" in (r.get("config") or {})}) or None,
            "candidates": {c.index: dict(c.options) for c in cands if c.method == method}}
        if provenance["perceptual"] and len(provenance["perceptual"]) == 1:
            # the tuned values suit the term that ran (L-BRGM offline: rusir's loss, not VGG16):
            # bind it, so that a run with the weights does not pair them with another term
            chosen = {cell: dict(pick, options={**pick["options"], "perceptual": provenance["perceptual"][0]})
                      if cell[0] == method else pick for cell, pick in chosen.items()}
        table = tuned_table(method, chosen, provenance)
        text = (f"# {method} tuned for generator {generator} by `rusir tune` (rusir.studies.tuning):"
                f"\n# per (task, level), the candidate with the best mean accuracy_{metric} on the "
                f"{provenance['split']} split; provenance below.\n"
                + yaml.safe_dump(_plain(table), sort_keys=False, default_flow_style=None, width=100))
        for root, path in ((folder, folder / generator / f"{method}.yaml"),
                           (out, out / "tuned" / f"{method}.yaml")):
            write_text(path, text, folder=root)      # no link on the way (data.outputs)
        written[method] = folder / generator / f"{method}.yaml"
        tables_made[method] = table
    if tables_made:
        write_text(out / "tuned" / "scores.md", scores_markdown(tables_made, metric), folder=out)
    return written


def scores_markdown(tables: Mapping[str, Mapping], metric: str = "psnr") -> str:
    """Every candidate's mean score per (task, level) of tuned tables, the chosen one in bold:
    the tuning's outcome for a reader (`out/tuned/scores.md`)."""
    lines = []
    for method, table in tables.items():
        prov = table["provenance"]
        cands = prov["candidates"]
        lines += [f"## {method}: mean accuracy_{metric} on the {prov['split']} split "
                  f"({', '.join(prov['tuning_images'] or [])})", "",
                  "| task@level | " + " | ".join(
                      f"{k}: " + ", ".join(f"{o}={v}" for o, v in opts.items()) for k, opts in cands.items())
                  + " |", "|:--|" + "--:|" * len(cands)]
        for cell, pick in prov["cells"].items():
            row = [(f"**{pick['scores'][k]:.2f}**" if k == pick["chosen"] else f"{pick['scores'][k]:.2f}")
                   if k in pick["scores"] else "n/a" for k in cands]
            lines.append(f"| {cell} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def _plain(value):
    """YAML-safe plain data (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, Mapping):
        return {(k if isinstance(k, (str, int)) else str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def run_tuning(generator="toyfaces64", methods: Union[str, Sequence[str]] = ("pulse", "lbrgm"),
               tasks="single", out: Union[str, Path] = "tune", *, split: str = "tuning",
               test_images="heldout:60-63", tuning: Optional[Any] = None,
               search: Union[str, Path, None] = None, metric: str = "psnr",
               write: bool = True, tables_dir: Union[str, Path, None] = None,
               select_only: bool = False, **bench) -> tuple[BenchSummary, dict[str, Path]]:
    """Run every candidate of each method's search space on every (task, level) of `tasks` on
    the tuning images (`tuning_images(split, test_images, tuning)`) into `out` with `run_bench`
    (`bench`: its other options, e.g. shard, batch, engine, seed), then write the chosen tables
    (`write_tables`; not for a shard, whose folder is not complete: run again with
    `select_only=True` once every shard is done). Returns (the run's summary, {method: table})."""
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    unknown = [m for m in names if m not in TABLES]
    if unknown or not names:
        raise ValueError(f"rusir tune tunes the baselines with tables {list(TABLES)}, got {names or methods!r}")
    if metric not in METRICS:
        raise ValueError(f"tuning metric must be one of {sorted(METRICS)}, got {metric!r}")
    spaces = {m: search_space(m, search) for m in names}
    cands = [c for m in names for c in candidates(m, spaces[m])]
    images = tuning_images(split, test_images, tuning)
    metrics = tuple(dict.fromkeys(("psnr", metric)))
    summary = BenchSummary()
    if not select_only:
        extra = {"study": "tuning", "split": split, "test_images": _spec(test_images),
                 "tuning_metric": metric}
        summary = run_bench(generator, images, candidate_methods(cands), tasks, out,
                            metrics=metrics, extra_config=extra, **bench)
    written = {}
    if write and (select_only or not bench.get("shard")):
        gen = str(generator) if isinstance(generator, (str, Path)) else None
        name = (read_config(Path(out)) or {}).get("generator") or gen
        written = write_tables(out, name, cands, metric, tables_dir, spaces,
                               search if search is not None else SEARCH_SPACES.name)
    return summary, written


def _spec(images):
    return images if isinstance(images, (str, list, tuple)) else "given tensors"
