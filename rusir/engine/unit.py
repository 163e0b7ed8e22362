"""One work unit of the benchmark: items of one (method, task, level), restored as one batch.

`run_unit(job, items)` loads the items' ground truths, degrades each with its own degradation
seed, restores them with one call of the method (a batch of N images) and then scores and writes
each item on its own (`rusir.engine.records.write_item`). Each item keeps the seeds it has
alone (`degradation_seed`, `method_seed`), so in exact arithmetic a batch of N equals its N items
run one by one; in float32 batched kernels round differently (docs/python-api.md, "batch").
Repeat r >= 1 of an item (`rusir bench --repeats`) restores the same target (same degradation
seed) from another start: the method's seed derived from (seed, r) (`repeat_seed`) and, for a
method that draws nothing random (RUSIR), its start perturbed at float32 rounding level
(`REPEAT_JITTER`). Their spread is how much of a difference between methods is rounding luck.
`execute_unit` is what an engine runs (rusir.engine.runner locally, rusir.engine.cluster
on Ray): the unit's still unfinished items, a failure recorded per item instead of raised.
A method that asks for it (`wants_true_mask`: PULSE, L-BRGM, as the paper ran them) gets the
true dead-pixel mask of denoising in its approximation unless the run turns it off (`Job.true_mask`);
records say so (`true_mask`), and which hyperparameter table the method's options came from
(`table`: rusir.baselines.config.table_source, a generator's tuned table when one ships), and
which code made them (`code`: rusir.engine.provenance.code_version, the package's version and
commit).
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from .. import degradations
from ..baselines.config import baseline_config, table_source
from ..data import load_image
from ..degradations.base import derive_seed
from ..metrics import psnr, ssim
from ..model.generators import info as generator_info
from . import records
from ..baselines.naive import naive_restoration
from .plan import ImageSource, Item
from .provenance import code_version
from .records import as_8bit, is_finished

__all__ = ["DEFAULT_METRICS", "DEGRADATION_SEEDS", "degradation_seed", "load_ground_truth",
           "method_kwargs", "method_seed", "Job", "run_unit", "image_info",
           "UnitOutcome", "execute_unit", "ran_config", "REPEAT_JITTER", "repeat_seed",
           "wants_true_mask", "method_table"]

DEFAULT_METRICS = ("psnr", "ssim", "ms_ssim", "lpips")
DEGRADATION_SEEDS = ("derived", "image")


def degradation_seed(seed: int, item: Item, policy: str = "derived") -> int:
    """The degradation seed of an item, the same for every method (same targets). `derived`: a
    hash of (seed, task, level, image); `image`: seed + image index, the targets one batch
    `rusir.studies.experiment.run_task(..., seed=seed)` of the images draws (as the demo)."""
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


# The start's relative perturbation of a repeat r >= 1 for a method that takes `jitter` (RUSIR,
# which draws nothing random: without it every repeat would be the same run). 2**-23 is float32's
# machine epsilon, the relative spacing of float32 numbers near 1: the size of one rounding
# difference, what another CPU's kernels or another thread count give. A repeat so started
# shows how far rounding alone carries a result, not a different method.
REPEAT_JITTER = 2.0 ** -23


def repeat_seed(seed: int, repeat: int) -> int:
    """The method's seed for repeat `repeat` of a run with `seed`: the seed itself for repeat 0
    (a run without repeats), else one derived from (seed, repeat) -- another start for a method
    that draws one (PULSE, L-BRGM), another draw of RUSIR's loss noise and start jitter. Below
    2**31, so per-image seeds (seed + i) stay within MAX_SEED."""
    return int(seed) if not repeat else derive_seed(seed, f"repeat/{int(repeat)}") % (2 ** 31)


def method_kwargs(fn: Callable, item: Item, steps: Sequence[int], baseline_steps: Optional[int],
                  chunk: Union[int, str, None] = None, discrepancy=None,
                  generator: Optional[str] = None) -> dict:
    """The method's own options for one item (loss, seed and progress go to every method alike),
    from what the method declares, never from its name:

    - `fn.run_options` names the run-level options it takes (RUSIR's `restore`: steps per phase,
      discrepancy, batch_size, jitter): it gets the run's `steps`, `discrepancy` /
      `batch_size=chunk` when the run sets them, and `jitter=REPEAT_JITTER` for a repeat r >= 1
      (repeat 0 runs exactly as a run without repeats);
    - `fn.table` names its hyperparameter table (rusir.baselines.config: the `generator`'s tuned
      table when one ships, else the untuned one): it gets the (task, level) entry, or {} (its
      code defaults) when the table is absent;
    - a method that does not take per-phase steps gets `baseline_steps` as its step count if given.

    Options bound with `bind_method` are left out here: the bound values win (BoundMethod)."""
    accepts = tuple(getattr(fn, "run_options", ()))
    table = getattr(fn, "table", None)
    config = dict(baseline_config(table, item.task, item.level, generator=generator)) if table else {}
    if "steps" in accepts:
        config["steps"] = tuple(steps)
    elif baseline_steps is not None:
        config["steps"] = int(baseline_steps)
    if "discrepancy" in accepts and discrepancy is not None:
        config["discrepancy"] = discrepancy
    if "batch_size" in accepts and chunk is not None:
        config["batch_size"] = chunk
    if "jitter" in accepts and item.repeat:
        config["jitter"] = REPEAT_JITTER
    for name in getattr(fn, "fixed", {}):
        config.pop(name, None)
    return config


def wants_true_mask(fn: Callable) -> bool:
    """Whether a method asks for the true dead-pixel mask (`fn.wants_true_mask`: the baselines,
    as the paper ran them). RUSIR does not, so it never gets it."""
    return bool(getattr(getattr(fn, "fn", fn), "wants_true_mask", False))


def method_table(fn: Callable, generator: Optional[str]) -> Optional[dict]:
    """The table behind a method's hyperparameters (`table_source`), None for a method without
    one or one whose options are all bound (a tuning candidate)."""
    table = getattr(fn, "table", None)
    return table_source(table, generator) if table else None


def method_seed(fn: Callable, seed: int, n: int):
    """The `seed` argument of a batch of n items that each ran alone with `seed`. RUSIR and
    adam_wplus draw nothing per image (the seed restarts the loss's noise, one draw shared by the
    batch), so the int is exact; a method that draws per image (seed + i: PULSE, L-BRGM) marks
    itself `seeds_per_image` and gets [seed] * n, so that image i starts as it would alone."""
    inner = getattr(fn, "fn", fn)   # a BoundMethod's function
    return [int(seed)] * n if n > 1 and getattr(inner, "seeds_per_image", False) else int(seed)


@dataclass
class Job:
    """What every unit of a run shares: the loaded generator and methods, the images by name,
    the output folder and the run's settings."""
    G: object
    fns: Mapping[str, Callable]
    sources: Mapping[str, ImageSource]
    out: Path
    loss: object = None
    steps: Sequence[int] = ()
    baseline_steps: Optional[int] = None
    seed: int = 0
    metric_names: Sequence[str] = DEFAULT_METRICS
    save_latent: bool = True
    device: torch.device = torch.device("cpu")
    degradation_seeds: str = "derived"
    dtype: torch.dtype = torch.float32
    chunk: Union[int, str, None] = None      # RUSIR's restore(batch_size=...) inside a unit
    discrepancy: Optional[float] = None      # tau for methods that take it; None: their own
    metrics: records.MetricCache = field(default_factory=records.MetricCache)
    true_mask: bool = True                   # the dead-pixel mask to methods that want it


def run_unit(job: Job, items: Sequence[Item]) -> list[Optional[dict]]:
    """Restore `items` (one method, task and level) as one batch, then score and write each item
    on its own (records.write_item). Item i gets the target it gets alone (its own degradation
    seed) and the method the same seed, so in exact arithmetic the batch equals the items run
    one by one (float32 rounding differs: docs/python-api.md, "batch"). Returns per item its record, or
    None when another run finished it meanwhile (its folder is kept, this result discarded)."""
    started = time.time()
    G, res, n = job.G, job.G.img_resolution, len(items)
    first = items[0]
    if any((it.method, it.task, it.level, it.repeat) != (first.method, first.task, first.level,
                                                         first.repeat) for it in items):
        raise ValueError("a unit's items must share method, task, level and repeat")
    gt = torch.cat([as_8bit(load_ground_truth(job.sources[it.image_name], res)) for it in items])
    gt = gt.to(job.device, job.dtype)                                        # [N, 3, R, R]
    dseeds = [degradation_seed(job.seed, it, job.degradation_seeds) for it in items]
    fn = job.fns[first.method]
    deg = degradations.make(first.task, first.level, seed=dseeds[0] if n == 1 else dseeds)
    # the true dead-pixel mask, to a method that asks for it (never RUSIR): before the targets
    # are made, since the degradation keeps each target's mask as it draws it
    true_mask = job.true_mask and wants_true_mask(fn) and degradations.expose_true_mask(deg)
    with torch.no_grad():
        target = deg.degrade_ground_truth(gt)                                # [N, 3, r, r]
    # a tuning candidate starts from the untuned table, never from an earlier tuning's result
    generator = None if getattr(fn, "untuned_table", False) else generator_info(G).name
    kwargs = method_kwargs(fn, first, job.steps, job.baseline_steps, job.chunk, job.discrepancy,
                           generator)
    table = method_table(fn, generator)
    seed = repeat_seed(job.seed, first.repeat)          # the same target, another start
    result = fn(G, target, deg, loss=job.loss, seed=method_seed(fn, seed, n), progress=False,
                **kwargs)
    preds = as_8bit(result.images.detach()).float()                          # [N, 3, R, R]
    phases = getattr(result, "phases", None) or {}
    last = list(phases.values())[-1] if job.save_latent and phases else None
    unit_seconds = time.time() - started
    restore_seconds = float(getattr(result, "seconds", 0.0) or 0.0)
    info = getattr(result, "info", {}) or {}
    out = []
    for i, (item, dseed) in enumerate(zip(items, dseeds)):
        item_deg = degradations.make(item.task, item.level, seed=dseed)   # item i's own degradation
        if true_mask:
            degradations.expose_true_mask(item_deg)                       # so its record says so
        one = slice(i, i + 1)
        pred, gt_i, target_i = preds[one], gt[one].float(), target[one].float()
        latent = None if last is None else {"space": last.space, "latent": last.latent[one].detach().cpu().clone()}
        with torch.no_grad():
            degraded = item_deg.degrade_ground_truth(pred)
        record = _record(job, item, dseed, item_deg, pred, gt_i, target_i, degraded, {
            "config": ran_config(result, i, n), "true_mask": bool(true_mask), "table": table,
            "seconds": round(unit_seconds / n, 3), "restore_seconds": round(restore_seconds / n, 3),
            "batch": n, "info": records.jsonable(image_info(info, i, n)),
            "phases": phase_metrics(phases, one, item_deg, gt_i, target_i)})
        kept = records.write_item(job.out, item.key, {"ground_truth": gt_i, "target": target_i,
                                                      "prediction": pred, "degraded_prediction": degraded},
                                  record, latent)
        out.append(record if kept is not None else None)
    return out


def _record(job: Job, item: Item, dseed: int, deg, pred: Tensor, gt: Tensor, target: Tensor,
            degraded: Tensor, extra: dict) -> dict:
    """One item's record.json (see the module doc): the item, its seeds, the degradation, the
    metrics of the 8-bit images ([1, 3, H, W] each) and `extra` (method configuration, timings,
    batch size, info)."""
    res = job.G.img_resolution
    image = job.sources[item.image_name]
    with torch.no_grad():
        naive = naive_restoration(target, res)
    scores, unavailable = job.metrics.item_metrics(job.metric_names, pred, gt, degraded, target)
    return {
        "key": item.key, "method": item.method, "task": item.task, "level": item.level,
        "category": item.category, "image_index": item.image_index, "image": item.image_name,
        "image_path": None if isinstance(image, Tensor) else str(image), "seed": job.seed,
        "repeat": item.repeat, "degradation_seed": dseed, "degradation": records.jsonable(deg.describe()),
        "config": extra["config"], "true_mask": extra["true_mask"], "table": extra["table"],
        "seconds": extra["seconds"],
        "restore_seconds": extra["restore_seconds"], "batch": extra["batch"],
        "resolution": res, "target_size": list(target.shape[-2:]),
        "metrics": scores, "unavailable": unavailable,
        "naive": {"psnr": float(psnr(naive, gt)[0]), "ssim": float(ssim(naive, gt)[0])},
        "phases": extra.get("phases", {}),
        "info": extra["info"],
        "code": code_version(),
    }


def ran_config(result, i: int = 0, n: int = 1) -> dict:
    """What the method reports it ran (`result.config`) for image i of a batch of n, as plain
    data: a RestoreConfig's `as_dict()` (options, generator, loss, chunk) or a baseline's dict
    alike. The one source of a record's `config`: never the options the runner asked for. A seed
    per image (a batch of a `seeds_per_image` method: `method_seed`) is image i's, as it runs
    alone."""
    config = getattr(result, "config", None) or {}
    data = records.jsonable(config.as_dict() if hasattr(config, "as_dict") else dict(config))
    if n > 1 and isinstance(data.get("seed"), list) and len(data["seed"]) == n:
        data["seed"] = data["seed"][i]
    return data


def phase_metrics(phases: dict, one: slice, deg, gt: Tensor, target: Tensor) -> dict:
    """{phase: {psnr, ssim, fidelity_psnr}} of image `one` after each phase of a result (8-bit, as
    saved): accuracy vs the ground truth and the TRUE degradation of it vs the target, so that a
    phase that undoes an earlier one shows (rusir.studies.robustness). {} without phases."""
    out = {}
    for name, phase in phases.items():
        pred = as_8bit(phase.images[one].detach()).float()
        with torch.no_grad():
            degraded = deg.degrade_ground_truth(pred)
        out[name] = {"psnr": float(psnr(pred, gt)[0]), "ssim": float(ssim(pred, gt)[0]),
                     "fidelity_psnr": float(psnr(degraded, target)[0])}
    return out


def image_info(info, i: int, n: int):
    """Image i's part of a batch's `result.info`: lists of n entries and tensors of n rows are
    cut to image i's (kept a list / a tensor of one, as a run of that image alone records them);
    everything else is the batch's, kept whole. n == 1: unchanged."""
    if n == 1:
        return info
    if isinstance(info, dict):
        return {k: image_info(v, i, n) for k, v in info.items()}
    if isinstance(info, list) and len(info) == n:
        return [info[i]]
    if isinstance(info, Tensor) and info.dim() >= 1 and info.shape[0] == n:
        return info[i:i + 1]
    return info


# --- what an engine runs ---------------------------------------------------------------------

@dataclass
class UnitOutcome:
    """What running a unit gave: items done, found finished (skipped) and failures."""
    done: int = 0
    skipped: int = 0
    failures: list = field(default_factory=list)

    def add_to(self, summary: BenchSummary) -> None:
        summary.done += self.done
        summary.skipped += self.skipped
        summary.failed += len(self.failures)
        summary.failures += self.failures


def execute_unit(job: Job, items: Sequence[Item], fail_fast: bool = False) -> UnitOutcome:
    """Run the unfinished ones of `items` as one batch (re-checked now: another run, or an
    earlier attempt of this unit, may have finished some); a failure fails each of them and is
    recorded, not raised (unless `fail_fast`)."""
    outcome = UnitOutcome()
    todo = [it for it in items if not is_finished(job.out, it)]
    outcome.skipped = len(items) - len(todo)
    if not todo:
        return outcome
    try:
        kept = run_unit(job, todo)
    except Exception as exc:  # noqa: BLE001 - one failing unit must not stop a sweep
        if fail_fast:
            raise
        text, tb = f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=8)
        outcome.failures = [{"key": it.key, "error": text, "traceback": tb} for it in todo]
        return outcome
    outcome.done = sum(r is not None for r in kept)
    outcome.skipped += sum(r is None for r in kept)
    return outcome
