"""The benchmark runner: every (method, task, level, image) item, resumable and shardable.

    rusir bench --generator toyfaces64 --images heldout:8 --methods rusir,pulse --tasks single --out runs/b
    rusir bench ... --tasks upsampling@M,UNAP@M --shard 0/4      # 4 processes share one sweep
    rusir bench ... --batch 8                                     # 8 images per restoration call
    rusir report runs/b                                           # tables and plots (rusir.report)

Work units (`rusir.engine.plan.plan_units`): the items sharing (method, task, level), in
batches of `batch` images, restored by one call (`run_unit`) and then scored and written one item
at a time; each item keeps its own degradation seed and the method's seed (`method_seed`), so a
batch equals its items alone up to float rounding. Shards split the units. Engines: `local` runs
the units one after another in this process; `ray` runs each as a Ray task on this machine's or
a cluster's GPUs / CPUs (rusir.engine.cluster); both write the same records.

Every study is a configuration of this one runner: the IQA-loss study passes its loss variants as
methods (`bind_method(restore, loss=...)` named `rusir[loss=<variant>]`), the baselines table
(scripts/compare_baselines.py) and the quality bar (benchmarks/quality_bar.py) summarise its
records. The records (layout, atomic writes, `bench.json`, failures) are `rusir.engine.records`:
an item is finished iff its folder holds a valid `record.json`, so a re-run skips finished items,
redoes damaged ones, and an interrupted run loses nothing finished. Runs sharing a folder split
the items (a claim per item, `rusir.data.claims`; an item claimed by another live run is
left to it, counted `busy`), re-check each item just before running it, and never replace a
finished item (the first to finish wins). Failures go to `failed.json` (`failed-<k>of<n>.json`
for a shard) and do not stop the sweep unless `fail_fast`.

Per-item record fields: the item (key, method, task, level, category, image_index, image), seeds,
the degradation, `config` (what the method reports it ran: `result.config`, a RestoreConfig's
`as_dict()` for RUSIR -- options, generator and sha256, loss, chunk -- or a baseline's dict),
timings, `metrics` on the 8-bit images as saved
(`accuracy_<m>`: prediction vs ground truth; `fidelity_<m>`: true degradation of the prediction
vs target; None with its reason under `unavailable` when it cannot be computed here), `naive`
(PSNR/SSIM of `rusir.studies.experiment.naive_restoration`), `phases` (per phase of the
result: PSNR/SSIM vs the ground truth and fidelity PSNR; `unit.phase_metrics`) and the method's
`info`. Set metrics (FID, KID, patch-FID, IS) are computed per cell by `rusir report` from the saved PNGs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch

from ..progress import progress_bar
from ..data import claims
from ..inversion.batching import check_batch_size
from ..inversion.presets import load_preset
from ..inversion.schedule import resolve as resolve_schedule
from ..metrics import PER_IMAGE_METRICS
from ..model.generators import info as generator_info, load_generator
from ..validation import MAX_RETRIES, MAX_SEED, MAX_STEPS, whole
from . import records
from .config import RunConfig, check_discrepancy
from .cluster import ENGINES, require_ray, run_units
from .plan import (IMAGE_EXTENSIONS, BoundMethod, Item, Unit, bind_method, images_config,
                   images_manifest, parse_batch, parse_repeats, parse_shard, parse_tasks, plan_items,
                   plan_units, resolve_images,
                   resolve_methods, shard_items)
from .records import is_finished, item_dir
from .unit import (DEFAULT_METRICS, DEGRADATION_SEEDS, Job, UnitOutcome, degradation_seed,
                   execute_unit, image_info, load_ground_truth, method_kwargs, method_seed,
                   run_unit)

__all__ = ["run_bench", "BenchSummary", "parse_dtype", "RunConfig",
           # one work unit (rusir.engine.unit), planning (rusir.engine.plan) and the store
           # (rusir.engine.records), for callers that know the runner only
           "run_unit", "execute_unit", "Job", "UnitOutcome", "degradation_seed",
           "method_kwargs", "method_seed", "image_info", "load_ground_truth", "DEFAULT_METRICS",
           "DEGRADATION_SEEDS", "Item", "Unit", "plan_items", "plan_units", "parse_tasks",
           "parse_shard", "shard_items", "resolve_images", "resolve_methods", "bind_method",
           "BoundMethod", "item_dir", "is_finished", "IMAGE_EXTENSIONS"]


# --- the run --------------------------------------------------------------------------------

@dataclass
class BenchSummary:
    items: int = 0
    done: int = 0
    skipped: int = 0             # finished before this run, or by another run meanwhile
    failed: int = 0
    busy: int = 0                # left to another live run that holds the item's claim
    remaining: int = 0           # not attempted (max_items reached)
    seconds: float = 0.0
    failures: list = field(default_factory=list)

    def line(self) -> str:
        text = (f"{self.items} items: {self.done} done now, {self.skipped} skipped (already "
                f"finished), {self.failed} failed")
        if self.busy:
            text += f", {self.busy} busy (being run by another process)"
        if self.remaining:
            text += f", {self.remaining} left (max items reached)"
        return text + f" [{self.seconds:.1f} s]"


def run_bench(generator, images, methods="rusir", tasks="single", out: Union[str, Path] = "bench",
              shard: Optional[Union[str, tuple[int, int]]] = None,
              steps: Optional[Sequence[int]] = None, n_images: Optional[int] = None,
              metrics: Sequence[str] = DEFAULT_METRICS, seed: int = 0, device=None, loss=None,
              baseline_steps: Optional[int] = None, fail_fast: bool = False,
              max_items: Optional[int] = None, save_latent: bool = True,
              progress: bool = True, degradation_seeds: str = "derived",
              generator_name: Optional[str] = None,
              extra_config: Optional[Mapping] = None, batch: int = 1,
              dtype: Union[str, torch.dtype] = "float32", engine: str = "local",
              address: Optional[str] = None, gpus_per_unit: Optional[float] = None,
              cpus_per_unit: float = 1, max_retries: int = 3,
              batch_size: Union[int, str, None] = None, discrepancy=None,
              force_mixed: bool = False, repeats: int = 1, true_mask: bool = True) -> BenchSummary:
    """Run every (method, task, level, image) item not yet finished in `out`.

    generator: a Generator, or a registry name / .pkl / .safetensors path (load_generator).
    images: `heldout`, `heldout:N`, `heldout:A-B`, a folder, a list of paths, a tensor [N, 3, R, R] or
    {name: tensor or path} (see resolve_images).
    methods: comma list / list of names (rusir, pulse, lbrgm, adam_wplus) or {name: function}.
    tasks: `single`, `composed`, `all`, `T@L,...` (see parse_tasks) or [(task, level)].
    batch: images restored together per work unit (items sharing method, task and level;
    plan_units); each item keeps its own seeds, so a batch equals its items run alone up to
    float rounding (docs/python-api.md, "batch"). Only a unit's unfinished items are restored.
    batch_size: RUSIR's chunk inside a unit (`restore(batch_size=...)`: n, or "auto" from free
    GPU memory); None restores a unit in one call. Chunks keep every image's seeds.
    shard: `k/n` or (k, n): run shard k of n of the planned units (shard_items).
    loss: a loss callable, a preset name/YAML, or None (the generator's default).
    max_items: stop after running this many items (time-boxed jobs; a re-run continues).
    steps: RUSIR steps per phase; None: the generator's own schedule (rusir.inversion.schedule).
    degradation_seeds: `derived` or `image` (see degradation_seed).
    dtype: the precision of the restorations (`float64` runs the generator and the targets in
    float64: how the tests check that a batch equals its items alone; records stay 8-bit).
    engine: `local` (this process, one unit after another) or `ray` (each unit a Ray task:
    rusir.engine.cluster); address: the Ray cluster to join (`auto`, `ray://host:port`;
    None starts a local one); gpus_per_unit: GPUs per task (fractions pack units on a GPU;
    None: 1 when the cluster has GPUs, else 0 and `cpus_per_unit` CPUs); max_retries: runs of a
    unit whose worker process died. Both engines write the same records and resume each other.
    discrepancy: tau of the discrepancy stop for the methods that take it (RUSIR's `restore`;
    `run_options`); 0 turns it off; None leaves each method its own (the generator's).
    repeats: restore every item this many times (1..MAX_REPEATS): repeat 0 is the plain run
    (same keys and records as without repeats); repeat r >= 1 (`<jjjj>-r<r>`) restores the same
    target with a seed derived from (seed, r) and, for RUSIR, a start perturbed at float32
    rounding level (rusir.engine.unit: `repeat_seed`, `REPEAT_JITTER`): their spread says how
    much of a difference between methods is rounding luck (`rusir report` shows it). A resumed
    run may ask for more repeats (only the new ones run).
    true_mask: give the methods that ask for it (`wants_true_mask`: PULSE, L-BRGM) the true
    dead-pixel mask of denoising in their approximation, as the paper did (RUSIR never gets it);
    False: every method redraws it. Recorded in bench.json and in each record.
    generator_name: the name recorded in bench.json (default: the path / info(G).name).
    extra_config: more fields for bench.json (e.g. the IQA study's losses).
    bench.json holds the run's configuration (`rusir.engine.config.RunConfig`: the generator's
    name, sha256 and own defaults, the methods with their bound options, ...); resuming a folder
    whose configuration differs is refused naming the fields, unless `force_mixed`, which adds
    to it and marks it mixed. Each record's `config` is what its method reports it ran.
    """
    t0 = time.time()
    out = Path(out).resolve()          # Ray workers on other nodes start in another folder
    batch = parse_batch(batch)
    chunk = check_batch_size(batch_size)
    discrepancy = check_discrepancy(discrepancy)   # before the generator is loaded
    repeats = parse_repeats(repeats)
    seed = whole(seed, "seed", 0, MAX_SEED, "MAX_SEED")
    n_images, max_items = (None if v is None else whole(v, what, 1) for v, what in
                           ((n_images, "n_images"), (max_items, "max_items")))
    if baseline_steps is not None:
        baseline_steps = whole(baseline_steps, "baseline_steps", 0, MAX_STEPS, "MAX_STEPS")
    max_retries = whole(max_retries, "max_retries", 0, MAX_RETRIES, "MAX_RETRIES")
    precision = parse_dtype(dtype)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {list(ENGINES)}")
    if engine == "ray":
        require_ray()                     # before any work: the install command if absent
        device = "cpu"                    # the driver only plans; workers pick their device
    found = resolve_images(images, n_images)      # a bad image spec before the generator
    manifest = images_manifest(images)            # a built set that fails its manifest, too
    dev = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    G = load_generator(generator, device=dev) if isinstance(generator, (str, Path)) else generator.to(dev)
    G = G.to(precision)
    steps = resolve_schedule(G, steps=steps)[0]
    gen_name = generator_name or (str(generator) if isinstance(generator, (str, Path))
                                  else generator_info(G).name)
    loss_name = loss if isinstance(loss, (str, type(None))) else getattr(loss, "__name__", type(loss).__name__)
    loss_fn = load_preset(loss).build() if isinstance(loss, (str, Path)) else loss
    fns = resolve_methods(methods)
    pairs = parse_tasks(tasks) if isinstance(tasks, str) or not tasks or not isinstance(tasks[0], tuple) \
        else list(tasks)
    which = parse_shard(shard) if isinstance(shard, str) or shard is None else tuple(shard)
    if degradation_seeds not in DEGRADATION_SEEDS:
        raise ValueError(f"degradation_seeds must be one of {DEGRADATION_SEEDS}, got {degradation_seeds!r}")
    metric_names = list(metrics)
    bad = [m for m in metric_names if m not in PER_IMAGE_METRICS]
    if bad:
        raise ValueError(f"unknown per-image metric(s) {bad}; valid: {sorted(PER_IMAGE_METRICS)} "
                         "(set metrics fid/kid/patch_fid/is are computed by `rusir report`)")

    units = plan_units(plan_items(list(fns), pairs, [name for name, _ in found], repeats), batch)
    if which is not None:
        units = shard_items(units, *which)
    config = RunConfig.build(
        G, generator_name=gen_name, images=images_config(images, found), images_manifest=manifest,
        image_names=[name for name, _ in found], fns=fns, tasks=pairs, steps=steps, seed=seed,
        loss=loss_name, metrics=metric_names, baseline_steps=baseline_steps,
        degradation_seeds=degradation_seeds, dtype=str(precision).replace("torch.", ""),
        discrepancy=discrepancy, chunk=chunk, repeats=repeats, extra=extra_config,
        true_mask=true_mask)
    records.write_config(out, config.as_dict(), force_mixed=force_mixed)
    records.clean_stale_tmp(out)
    claims.clean_stale_claims(out)

    summary = BenchSummary(items=sum(len(u.items) for u in units))
    todo = unfinished_units(out, units, summary, max_items)
    job = Job(G, fns, dict(found), out, loss_fn, steps, baseline_steps, seed, metric_names,
              save_latent, dev, degradation_seeds, precision, chunk, config.discrepancy,
              true_mask=config.true_mask)
    try:
        if engine == "ray":
            source = generator if isinstance(generator, (str, Path)) else G
            if isinstance(source, (str, Path)) and Path(source).expanduser().exists():
                source = Path(source).expanduser().resolve()   # a file: absolute for every node
            run_units(job, source, todo, summary,
                      address=address, gpus_per_unit=gpus_per_unit, cpus_per_unit=cpus_per_unit,
                      max_retries=max_retries, fail_fast=fail_fast, progress=progress)
        else:
            run_local(job, todo, summary, fail_fast, progress)
    finally:
        summary.seconds = time.time() - t0
        records.write_failures(out, which, summary.failures)
        records.clean_stale_tmp(out)      # e.g. a dead worker's half-written item
        records.remove_empty_tmp(out)
    return summary


def parse_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    """`float32` (default) or `float64` (exactness checks) -> a torch dtype; ValueError otherwise."""
    value = dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype), None)
    if value not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return value


def unfinished_units(out: Path, units: Sequence[Unit], summary: BenchSummary,
                     max_items: Optional[int]) -> list[Unit]:
    """The units cut to their unfinished items (finished ones counted skipped; empty units
    dropped), at most `max_items` items in all (the rest counted remaining)."""
    todo, left = [], max_items
    for unit in units:
        items = [it for it in unit.items if not is_finished(out, it)]
        summary.skipped += len(unit.items) - len(items)
        if left is not None:
            summary.remaining += max(0, len(items) - left)
            items = items[:left]
            left -= len(items)
        if items:
            todo.append(Unit(tuple(items)))
    return todo


def run_local(job: Job, todo: Sequence[Unit], summary: BenchSummary, fail_fast: bool,
              progress: bool) -> None:
    """Run the units one after another in this process. Items claimed by another live run are
    tried again at the end, then left to it (counted busy)."""
    token = claims.claim_token()
    deferred: list[Unit] = []
    bar = progress_bar(total=sum(len(u.items) for u in todo), desc="bench", unit="item",
               dynamic_ncols=True, disable=not progress)

    def attempt(unit: Unit, last: bool) -> None:
        mine, held = claims.claim_items(job.out, unit.items, token, force=last)
        if held and last:
            summary.busy += len(held)
        elif held:
            deferred.append(Unit(tuple(held)))
        try:
            if mine:
                bar.set_postfix_str(unit.key)
                execute_unit(job, mine, fail_fast).add_to(summary)
        finally:
            for item in mine:
                claims.release_claim(job.out, item.key, token)
            bar.update(len(unit.items) - (len(held) if not last else 0))

    try:
        for unit in todo:
            attempt(unit, last=False)
        for unit in list(deferred):
            attempt(unit, last=True)
    finally:
        bar.close()
