"""The benchmark runner: every (method, task, level, image) item, resumable and shardable.

    rusir bench --generator toyfaces64 --images heldout:8 --methods rusir,pulse --tasks single --out runs/b
    rusir bench ... --tasks upsampling@M,UNAP@M --shard 0/4      # 4 processes share one sweep
    rusir report runs/b                                           # tables and plots (rusir.evaluation.report)

Every study is a configuration of this one runner: the IQA-loss study passes its loss variants as
methods (`bind_method(restore, loss=...)` named `rusir[loss=<variant>]`), the baselines table
(scripts/compare_baselines.py) and the quality bar (benchmarks/quality_bar.py) summarise its
records. The records (layout, atomic writes, `bench.json`, failures) are `rusir.evaluation.records`:
an item is finished iff its folder holds a valid `record.json`, so a re-run skips finished items,
redoes damaged ones, and an interrupted run loses nothing finished. Runs sharing a folder split
the items (a claim per item, `rusir.evaluation.claims`; an item claimed by another live run is
left to it, counted `busy`), re-check each item just before running it, and never replace a
finished item (the first to finish wins). Failures go to `failed.json` (`failed-<k>of<n>.json`
for a shard) and do not stop the sweep unless `fail_fast`.

Per-item record fields: the item (key, method, task, level, category, image_index, image), seeds,
the degradation, the method's configuration and timings, `metrics` on the 8-bit images as saved
(`accuracy_<m>`: prediction vs ground truth; `fidelity_<m>`: true degradation of the prediction
vs target; None with its reason under `unavailable` when it cannot be computed here), `naive`
(PSNR/SSIM of `rusir.evaluation.experiment.naive_restoration`), `phases` (per phase of the
result: PSNR/SSIM vs the ground truth and fidelity PSNR; `phase_metrics`) and the method's `info`. Set
metrics (FID, KID, patch-FID, IS) are computed per cell by `rusir report` from the saved PNGs.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import degradations
from ..baselines.config import TABLES, baseline_config
from ..data import load_image
from ..degradations.base import derive_seed
from ..inversion.presets import load_preset
from ..inversion.schedule import resolve as resolve_schedule
from ..metrics import PER_IMAGE_METRICS, psnr, ssim
from ..model.generators import info as generator_info, load_generator
from . import claims, records
from .experiment import naive_restoration
from .plan import (IMAGE_EXTENSIONS, BoundMethod, ImageSource, Item, bind_method, images_config,
                   parse_shard, parse_tasks, plan_items, resolve_images, resolve_methods,
                   shard_items)
from .records import as_8bit, is_finished, item_dir

__all__ = ["run_bench", "run_item", "BenchSummary", "degradation_seed", "DEFAULT_METRICS",
           "DEGRADATION_SEEDS",
           # planning (rusir.evaluation.plan) and the store (rusir.evaluation.records), for callers
           # that know the runner only
           "Item", "plan_items", "parse_tasks", "parse_shard", "shard_items", "resolve_images",
           "resolve_methods", "bind_method", "BoundMethod", "item_dir", "is_finished",
           "IMAGE_EXTENSIONS"]

DEFAULT_METRICS = ("psnr", "ssim", "ms_ssim", "lpips")
DEGRADATION_SEEDS = ("derived", "image")


# --- one item ---------------------------------------------------------------------------------

def degradation_seed(seed: int, item: Item, policy: str = "derived") -> int:
    """The degradation seed of an item, the same for every method (same targets). `derived`: a
    hash of (seed, task, level, image); `image`: seed + image index, the targets one batch
    `rusir.evaluation.experiment.run_task(..., seed=seed)` of the images draws (as the demo)."""
    if policy == "image":
        return int(seed) + item.image_index
    if policy != "derived":
        raise ValueError(f"degradation_seeds must be one of {DEGRADATION_SEEDS}, got {policy!r}")
    return derive_seed(seed, f"{item.task}@{item.level}/{item.image_index}") % (2 ** 31)


def load_ground_truth(image: ImageSource, size: int) -> Tensor:
    """[1, 3, size, size] in [0, 1] from an image file (resized) or a given tensor (checked)."""
    if not isinstance(image, Tensor):
        return load_image(image, size)
    if image.shape[-2:] != (size, size):
        raise ValueError(f"a given image is {list(image.shape[-2:])} px, the generator's {size}")
    return image.detach().float().cpu()


def method_kwargs(name: str, item: Item, steps: Sequence[int], baseline_steps: Optional[int]) -> dict:
    """The method's own options for one item (loss, seed and progress go to every method alike):
    RUSIR its steps per phase; a baseline its tuned (task, level) table entry, or {} (its code
    defaults) when the table is absent, with `baseline_steps` as its step count if given; any
    other method (a function passed in `methods`) nothing but `baseline_steps`. A method other
    than RUSIR never gets RUSIR's per-phase steps."""
    if name == "rusir":
        return {"steps": tuple(steps)}
    config = dict(baseline_config(name, item.task, item.level)) if name in TABLES else {}
    if baseline_steps is not None:
        config["steps"] = int(baseline_steps)
    return config


def phase_metrics(result, deg, gt: Tensor, target: Tensor) -> dict:
    """{phase: {psnr, ssim, fidelity_psnr}} of each phase's prediction (8-bit, as saved): accuracy
    vs the ground truth and the TRUE degradation of it vs the target, so that a phase that undoes
    an earlier one shows (rusir.evaluation.robustness). {} for a result without phases."""
    out = {}
    for name, phase in (getattr(result, "phases", None) or {}).items():
        pred = as_8bit(phase.images.detach())
        with torch.no_grad():
            degraded = deg.degrade_ground_truth(pred)
        out[name] = {"psnr": float(psnr(pred, gt)[0]), "ssim": float(ssim(pred, gt)[0]),
                     "fidelity_psnr": float(psnr(degraded, target)[0])}
    return out


def run_item(G, item: Item, fn: Callable, image: ImageSource, out: Path, *, loss, steps,
             baseline_steps, seed: int, metrics: records.MetricCache, metric_names: Sequence[str],
             save_latent: bool, device: torch.device, degradation_seeds: str = "derived") -> dict:
    """Run one item and write it (records.write_item); returns its record, or None when another
    run finished the item meanwhile (its folder is kept, this result discarded)."""
    res = G.img_resolution
    started = time.time()
    gt = as_8bit(load_ground_truth(image, res)).to(device)
    dseed = degradation_seed(seed, item, degradation_seeds)
    deg = degradations.make(item.task, item.level, seed=dseed)
    with torch.no_grad():
        target = deg.degrade_ground_truth(gt)
    kwargs = method_kwargs(item.method, item, steps, baseline_steps)
    result = fn(G, target, deg, loss=loss, seed=seed, progress=False, **kwargs)
    pred = as_8bit(result.images.detach())
    with torch.no_grad():
        degraded = deg.degrade_ground_truth(pred)
        naive = naive_restoration(target, res)
    scores, unavailable = metrics.item_metrics(metric_names, pred, gt, degraded, target)
    phases = getattr(result, "phases", None) or {}
    latent = None
    if save_latent and phases:
        last = list(phases.values())[-1]
        latent = {"space": last.space, "latent": last.latent.detach().cpu()}
    record = {
        "key": item.key, "method": item.method, "task": item.task, "level": item.level,
        "category": item.category, "image_index": item.image_index, "image": item.image_name,
        "image_path": None if isinstance(image, Tensor) else str(image), "seed": seed,
        "degradation_seed": dseed, "degradation": records.jsonable(deg.describe()),
        "method_config": records.jsonable({**kwargs, **getattr(fn, "fixed", {})}),
        "seconds": round(time.time() - started, 3),
        "restore_seconds": round(float(getattr(result, "seconds", 0.0) or 0.0), 3),
        "resolution": res, "target_size": list(target.shape[-2:]),
        "metrics": scores, "unavailable": unavailable,
        "naive": {"psnr": float(psnr(naive, gt)[0]), "ssim": float(ssim(naive, gt)[0])},
        "phases": phase_metrics(result, deg, gt, target),
        "info": records.jsonable(getattr(result, "info", {}) or {}),
    }
    kept = records.write_item(out, item.key, {"ground_truth": gt, "target": target, "prediction": pred,
                                              "degraded_prediction": degraded}, record, latent)
    return record if kept is not None else None


# --- the sweep --------------------------------------------------------------------------------

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
              extra_config: Optional[Mapping] = None) -> BenchSummary:
    """Run every (method, task, level, image) item not yet finished in `out`.

    generator: a Generator, or a registry name / .pkl / .safetensors path (load_generator).
    images: `heldout`, `heldout:N`, `heldout:A-B`, a folder, a list of paths, a tensor [N, 3, R, R] or
    {name: tensor or path} (see resolve_images).
    methods: comma list / list of names (rusir, pulse, lbrgm, adam_wplus) or {name: function}.
    tasks: `single`, `composed`, `all`, `T@L,...` (see parse_tasks) or [(task, level)].
    shard: `k/n` or (k, n): run shard k of n of the planned items (shard_items).
    loss: a loss callable, a preset name/YAML, or None (the generator's default).
    max_items: stop after running this many items (time-boxed jobs; a re-run continues).
    steps: RUSIR steps per phase; None: the generator's own schedule (rusir.inversion.schedule).
    degradation_seeds: `derived` or `image` (see degradation_seed).
    generator_name: the name recorded in bench.json (default: the path / info(G).name).
    extra_config: more fields for bench.json (e.g. the IQA study's losses).
    """
    t0 = time.time()
    out = Path(out)
    dev = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    G = load_generator(generator, device=dev) if isinstance(generator, (str, Path)) else generator.to(dev)
    steps = resolve_schedule(G, steps=steps)[0]
    gen_name = generator_name or (str(generator) if isinstance(generator, (str, Path))
                                  else generator_info(G).name)
    loss_name = loss if isinstance(loss, (str, type(None))) else getattr(loss, "__name__", type(loss).__name__)
    loss_fn = load_preset(loss).build() if isinstance(loss, (str, Path)) else loss
    fns = resolve_methods(methods)
    pairs = parse_tasks(tasks) if isinstance(tasks, str) or not tasks or not isinstance(tasks[0], tuple) \
        else list(tasks)
    found = resolve_images(images, n_images)
    which = parse_shard(shard) if isinstance(shard, str) or shard is None else tuple(shard)
    if degradation_seeds not in DEGRADATION_SEEDS:
        raise ValueError(f"degradation_seeds must be one of {DEGRADATION_SEEDS}, got {degradation_seeds!r}")
    metric_names = list(metrics)
    bad = [m for m in metric_names if m not in PER_IMAGE_METRICS]
    if bad:
        raise ValueError(f"unknown per-image metric(s) {bad}; valid: {sorted(PER_IMAGE_METRICS)} "
                         "(set metrics fid/kid/patch_fid/is are computed by `rusir report`)")

    items = plan_items(list(fns), pairs, [name for name, _ in found])
    if which is not None:
        items = shard_items(items, *which)
    config = {"generator": gen_name, "resolution": int(G.img_resolution),
              "images": images_config(images, found), "image_names": [name for name, _ in found],
              "methods": list(fns), "tasks": [f"{t}@{lv}" for t, lv in pairs], "steps": list(steps),
              "seed": seed, "loss": loss_name, "metrics": metric_names,
              "baseline_steps": baseline_steps, "degradation_seeds": degradation_seeds,
              **dict(extra_config or {})}
    records.write_config(out, config)
    records.clean_stale_tmp(out)
    claims.clean_stale_claims(out)

    summary = BenchSummary(items=len(items))
    todo = []
    for item in items:
        if is_finished(out, item):
            summary.skipped += 1
        else:
            todo.append(item)
    if max_items is not None and len(todo) > max_items:
        summary.remaining = len(todo) - max_items
        todo = todo[:max_items]
    sources = dict(found)
    metric_cache = records.MetricCache()
    token = claims.claim_token()
    deferred: list[Item] = []   # claimed by another run: tried again at the end

    def attempt(item: Item, last: bool) -> None:
        if is_finished(out, item):        # finished by another run since the plan
            summary.skipped += 1
            return
        if not claims.claim_item(out, item.key, token, force=last):
            if last:
                summary.busy += 1
            else:
                deferred.append(item)
            return
        try:
            kept = run_item(G, item, fns[item.method], sources[item.image_name], out, loss=loss_fn,
                            steps=steps, baseline_steps=baseline_steps, seed=seed,
                            metrics=metric_cache, metric_names=metric_names,
                            save_latent=save_latent, device=dev, degradation_seeds=degradation_seeds)
            if kept is None:
                summary.skipped += 1
            else:
                summary.done += 1
        except Exception as exc:  # noqa: BLE001 - one failing item must not stop a sweep
            if fail_fast:
                raise
            summary.failed += 1
            summary.failures.append({"key": item.key, "error": f"{type(exc).__name__}: {exc}",
                                     "traceback": traceback.format_exc(limit=8)})
        finally:
            claims.release_claim(out, item.key, token)

    bar = _progress(todo, progress)
    try:
        for item in bar:
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(item.key)
            attempt(item, last=False)
        for item in list(deferred):
            attempt(item, last=True)
    finally:
        if hasattr(bar, "close"):
            bar.close()
        summary.seconds = time.time() - t0
        records.write_failures(out, which, summary.failures)
        records.remove_empty_tmp(out)
    return summary


def _progress(items: list, enabled: bool):
    return tqdm(items, desc="bench", unit="item", dynamic_ncols=True) if enabled else items
