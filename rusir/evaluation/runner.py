"""The benchmark runner: every (method, task, level, image) item, resumable and shardable.

    rusir bench --generator toyfaces64 --images heldout:8 --methods rusir,pulse --tasks single --out runs/b
    rusir bench ... --tasks upsampling@M,UNAP@M --shard 0/4      # 4 processes share one sweep
    rusir report runs/b                                           # tables and plots (rusir.evaluation.report)

Layout of `out/`: `bench.json` (the run configuration), one folder per item
`<method>/<task>/<level>/<jjjj>/` holding `ground_truth.png`, `target.png`, `prediction.png`,
`degraded_prediction.png` (the TRUE degradation of the prediction, for fidelity), `latent.pt`
and `record.json`. An item is written into `out/.tmp/` and moved into place with one
`os.replace`, so an item is finished iff its folder (with `record.json`) exists; a re-run skips
finished items and an interrupted run loses nothing finished. Failures go to `failed.json`
(`failed-<k>of<n>.json` for a shard) and do not stop the sweep unless `fail_fast`.

Per-item metrics (compute_metrics on the 8-bit images, as saved): `accuracy_<m>` (prediction vs
ground truth) and `fidelity_<m>` (true degradation of the prediction vs target); a metric that
cannot be computed here is None with its reason under `unavailable`. Set metrics (FID, KID,
patch-FID, IS) are computed per cell by `rusir report` from the saved PNGs.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from .. import degradations
from ..degradations.base import LEVELS, derive_seed, to_uint8
from ..inversion.schedule import resolve as resolve_schedule
from ..model.generators import info as generator_info

__all__ = ["Item", "BenchSummary", "plan_items", "parse_tasks", "parse_shard", "shard",
           "resolve_images", "resolve_methods", "run_bench", "item_dir", "is_finished",
           "DEFAULT_METRICS", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
DEFAULT_METRICS = ("psnr", "ssim", "ms_ssim", "lpips")
COMPOSED_LEVEL = "M"
TMP = ".tmp"
# Config fields that must agree between runs sharing one output folder.
_FIXED_CONFIG = ("generator", "images", "steps", "seed", "loss", "metrics", "baseline_steps")


# --- items ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One unit of work: restore image `image_index` degraded by `task` at `level` with `method`."""
    method: str
    task: str          # registry name (single task) or upper-case initials (composition)
    level: str
    image_index: int
    image_name: str

    @property
    def key(self) -> str:
        """Folder of the item relative to the output folder, e.g. `rusir/upsampling/M/0003`."""
        return f"{self.method}/{self.task}/{self.level}/{self.image_index:04d}"

    @property
    def category(self) -> str:
        return "composed" if degradations.is_composition(self.task) else "single"


def canonical_task(name: str) -> str:
    """`degradations.canonical_task`, with the benchmark's extra words in the error."""
    try:
        return degradations.canonical_task(name)
    except ValueError:
        raise ValueError(f"unknown task {name!r}; valid: single, composed, all, or T@L with T one of "
                         f"{degradations.available()} and L one of {list(LEVELS)}") from None


def parse_tasks(spec: Union[str, Sequence[str]]) -> list[tuple[str, str]]:
    """`single` (4 tasks x 5 levels), `composed` (11 compositions at M), `all`, or a comma list of
    `T@L` / `T` (level M) -- mixable, e.g. `single,UNAP@M`. Returns unique (task, level) in order."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[tuple[str, str]] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if part.lower() in ("single", "all"):
            out += [(t, lv) for t in degradations.TASKS for lv in LEVELS]
        if part.lower() in ("composed", "all"):
            out += [(c, COMPOSED_LEVEL) for c in degradations.COMPOSITIONS]
        if part.lower() in ("single", "composed", "all"):
            continue
        task, _, level = part.partition("@")
        level = level.strip().upper() or "M"
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r} in {part!r}; valid: {list(LEVELS)}")
        out.append((canonical_task(task), level))
    if not out:
        raise ValueError(f"no tasks in {spec!r}; use single, composed, all or T@L,...")
    return list(dict.fromkeys(out))


def plan_items(methods: Sequence[str], tasks: Union[str, Sequence], images: Union[int, Sequence[str]]
               ) -> list[Item]:
    """Every (method, task, level, image) item in run order: method, task, level, image.
    `images` is a count (names `0000`, ...) or the list of image names."""
    names = [f"{i:04d}" for i in range(images)] if isinstance(images, int) else list(images)
    pairs = tasks if not isinstance(tasks, str) and tasks and isinstance(tasks[0], tuple) \
        else parse_tasks(tasks)
    return [Item(m, t, lv, j, name) for m in methods for t, lv in pairs
            for j, name in enumerate(names)]


def parse_shard(text: Optional[str]) -> Optional[tuple[int, int]]:
    """`k/n` with 0 <= k < n (0-based shard index) -> (k, n); None/'' -> None."""
    if not text:
        return None
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"bad shard {text!r}: expected k/n, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"bad shard {text!r}: need 0 <= k < n (shards are 0/{max(n, 1)} .. "
                         f"{max(n, 1) - 1}/{max(n, 1)})")
    return k, n


def shard(items: Sequence[Item], k: int, n: int) -> list[Item]:
    """Round-robin over the planned order: shard k of n gets items k, k+n, ... All shards must
    plan the same items (same --methods/--tasks/--images); then they are disjoint and cover all."""
    parse_shard(f"{k}/{n}")
    return list(items[k::n])


# --- inputs ---------------------------------------------------------------------------------

def resolve_images(spec: Union[str, Path, Sequence], n_images: Optional[int] = None
                   ) -> list[tuple[str, Path]]:
    """`heldout`, `heldout:N`, a folder (sorted recursive glob of png/jpg/jpeg/tif) or a list of
    paths -> [(name, path)], the first `n_images` of them."""
    if isinstance(spec, (list, tuple)):
        paths = [Path(p) for p in spec]
        found = [(p.name, p) for p in paths]
    elif isinstance(spec, str) and spec.split(":")[0] == "heldout":
        from ..data import heldout_paths
        head, _, count = str(spec).partition(":")
        found = [(p.name, p) for p in heldout_paths()]
        if count:
            if not count.isdigit():
                raise ValueError(f"bad image spec {spec!r}: expected heldout or heldout:N")
            found = found[:int(count)]
    else:
        root = Path(spec).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist (or use --images heldout)")
        paths = sorted(p for p in root.rglob("*") if p.is_file()
                       and p.suffix.lower() in IMAGE_EXTENSIONS)
        found = [(p.relative_to(root).as_posix(), p) for p in paths]
    if n_images is not None:
        found = found[:int(n_images)]
    if not found:
        raise ValueError(f"no images found in {spec!r} (extensions {', '.join(IMAGE_EXTENSIONS)})")
    return found


def resolve_methods(methods: Union[str, Sequence[str], Mapping[str, Callable]]) -> dict[str, Callable]:
    """Names -> restoration functions (`rusir.baselines.get_method`; only `rusir` without it)."""
    if isinstance(methods, Mapping):
        return dict(methods)
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    if not names:
        raise ValueError("no methods given")
    try:
        from ..baselines import get_method
    except ImportError:
        from ..inversion.restore import restore

        def get_method(name: str) -> Callable:
            if name != "rusir":
                raise ValueError(f"unknown method {name!r}; rusir.baselines is not available, "
                                 "valid: ['rusir']")
            return restore
    return {name: get_method(name) for name in dict.fromkeys(names)}


# --- one item ---------------------------------------------------------------------------------

def item_dir(out: Union[str, Path], item: Item) -> Path:
    return Path(out) / item.key


def is_finished(out: Union[str, Path], item: Item) -> bool:
    return (item_dir(out, item) / "record.json").is_file()


def degradation_seed(seed: int, item: Item) -> int:
    """Per-(task, level, image) degradation seed, the same for every method (same targets)."""
    return derive_seed(seed, f"{item.task}@{item.level}/{item.image_index}") % (2 ** 31)


def save_png(img: Tensor, path: Path) -> None:
    """[1, 3, H, W] -> 8-bit PNG (clamped, rounded)."""
    from PIL import Image
    arr = to_uint8(img[0], rounding="round").permute(1, 2, 0).cpu().numpy()
    Image.fromarray(arr, mode="RGB").save(path)


def as_8bit(img: Tensor) -> Tensor:
    """What saving to PNG and reading back gives (the images the metrics see)."""
    return to_uint8(img, rounding="round").to(torch.float32) / 255


def method_kwargs(name: str, item: Item, steps: Sequence[int], baseline_steps: Optional[int]) -> dict:
    """The method's own options for one item (loss, seed and progress go to every method alike):
    RUSIR its steps per phase; a baseline its tuned (task, level) table entry, or {} (its code
    defaults) when the table is absent, with `baseline_steps` as its step count if given; any
    other method (a function passed in `methods`) nothing but `baseline_steps`. A method other
    than RUSIR never gets RUSIR's per-phase steps."""
    if name == "rusir":
        return {"steps": tuple(steps)}
    from ..baselines.config import TABLES, baseline_config
    config = dict(baseline_config(name, item.task, item.level)) if name in TABLES else {}
    if baseline_steps is not None:
        config["steps"] = int(baseline_steps)
    return config


class _MetricCache:
    """Per-image metrics; a metric found unavailable once is not retried on every item."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.reasons: dict[str, str] = {}

    def __call__(self, pred: Tensor, gt: Tensor, degraded: Tensor, target: Tensor) -> dict:
        from ..metrics import compute_metrics
        values: dict = {}
        unavailable: dict[str, str] = {}
        for kind, a, b in (("accuracy", pred, gt), ("fidelity", degraded, target)):
            for name in self.names:
                key = f"{kind}_{name}"
                if name in self.reasons:
                    values[key], unavailable[key] = None, self.reasons[name]
                    continue
                try:
                    res = compute_metrics(a, b, names=[name])
                except ValueError as exc:  # e.g. an image too small for the metric
                    values[key], unavailable[key] = None, f"ValueError: {exc}"
                    continue
                value = res[f"accuracy_{name}"]
                if value is None:
                    self.reasons[name] = res["unavailable"][f"accuracy_{name}"]
                    values[key], unavailable[key] = None, self.reasons[name]
                else:
                    values[key] = float(value[0])
        values["unavailable"] = unavailable
        return values


def run_item(G, item: Item, fn: Callable, image_path: Path, out: Path, *, loss, steps,
             baseline_steps, seed: int, metrics: _MetricCache, save_latent: bool,
             device: torch.device) -> dict:
    """Run one item into a temporary folder and move it into place; returns its record."""
    from ..data import load_image
    res = G.img_resolution
    started = time.time()
    gt = as_8bit(load_image(image_path, res)).to(device)
    dseed = degradation_seed(seed, item)
    deg = degradations.make(item.task, item.level, seed=dseed)
    with torch.no_grad():
        target = deg.degrade_ground_truth(gt)
    kwargs = method_kwargs(item.method, item, steps, baseline_steps)
    result = fn(G, target, deg, loss=loss, seed=seed, progress=False, **kwargs)
    pred = as_8bit(result.images.detach())
    with torch.no_grad():
        degraded = deg.degrade_ground_truth(pred)
    scores = metrics(pred, gt, degraded, target)

    final = item_dir(out, item)
    tmp = out / TMP / f"{_owner_tag()}+{item.key.replace('/', '__')}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for name, img in (("ground_truth", gt), ("target", target), ("prediction", pred),
                          ("degraded_prediction", degraded)):
            save_png(img, tmp / f"{name}.png")
        phases = getattr(result, "phases", None) or {}
        if save_latent and phases:
            last = list(phases.values())[-1]
            torch.save({"space": last.space, "latent": last.latent.detach().cpu()},
                       tmp / "latent.pt")
        record = {
            "key": item.key, "method": item.method, "task": item.task, "level": item.level,
            "category": item.category, "image_index": item.image_index, "image": item.image_name,
            "image_path": str(image_path), "seed": seed, "degradation_seed": dseed,
            "degradation": _jsonable(deg.describe()),
            "method_config": _jsonable(kwargs), "seconds": round(time.time() - started, 3),
            "restore_seconds": round(float(getattr(result, "seconds", 0.0) or 0.0), 3),
            "resolution": res, "target_size": list(target.shape[-2:]),
            "metrics": {k: v for k, v in scores.items() if k != "unavailable"},
            "unavailable": scores["unavailable"],
            "info": _jsonable(getattr(result, "info", {}) or {}),
        }
        _write_json(tmp / "record.json", record)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a stale, unfinished folder (no record.json): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return record


# --- the sweep --------------------------------------------------------------------------------

@dataclass
class BenchSummary:
    items: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    remaining: int = 0           # not attempted (max_items reached)
    seconds: float = 0.0
    failures: list = field(default_factory=list)

    def line(self) -> str:
        text = (f"{self.items} items: {self.done} done now, {self.skipped} skipped (already "
                f"finished), {self.failed} failed")
        if self.remaining:
            text += f", {self.remaining} left (max items reached)"
        return text + f" [{self.seconds:.1f} s]"


def run_bench(generator, images, methods="rusir", tasks="single", out: Union[str, Path] = "bench",
              shard: Optional[Union[str, tuple[int, int]]] = None,
              steps: Optional[Sequence[int]] = None, n_images: Optional[int] = None,
              metrics: Sequence[str] = DEFAULT_METRICS, seed: int = 0, device=None, loss=None,
              baseline_steps: Optional[int] = None, fail_fast: bool = False,
              max_items: Optional[int] = None, save_latent: bool = True,
              progress: bool = True) -> BenchSummary:
    """Run every (method, task, level, image) item not yet finished in `out`.

    generator: a Generator, or a registry name / .pkl / .safetensors path (load_generator).
    images: `heldout`, `heldout:N`, a folder, or a list of paths (see resolve_images).
    methods: comma list / list of names (rusir, pulse, lbrgm, adam_wplus) or {name: function}.
    tasks: `single`, `composed`, `all`, `T@L,...` (see parse_tasks) or [(task, level)].
    loss: a loss callable, a preset name/YAML, or None (the generator's default).
    max_items: stop after running this many items (time-boxed jobs; a re-run continues).
    steps: RUSIR steps per phase; None: the generator's own schedule (rusir.inversion.schedule).
    """
    t0 = time.time()
    out = Path(out)
    from ..model.generators import load_generator
    dev = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    G = load_generator(generator, device=dev) if isinstance(generator, (str, Path)) else generator.to(dev)
    steps = resolve_schedule(G, steps=steps)[0]
    gen_name = str(generator) if isinstance(generator, (str, Path)) else generator_info(G).name
    loss_name = loss if isinstance(loss, (str, type(None))) else getattr(loss, "__name__", type(loss).__name__)
    loss_fn = loss
    if isinstance(loss, (str, Path)):
        from ..inversion.presets import load_preset
        loss_fn = load_preset(loss).build()
    fns = resolve_methods(methods)
    pairs = parse_tasks(tasks) if isinstance(tasks, str) or not tasks or not isinstance(tasks[0], tuple) \
        else list(tasks)
    found = resolve_images(images, n_images)
    if isinstance(shard, str) or shard is None:
        shard = parse_shard(shard)
    metric_names = list(metrics)
    from ..metrics import PER_IMAGE_METRICS
    bad = [m for m in metric_names if m not in PER_IMAGE_METRICS]
    if bad:
        raise ValueError(f"unknown per-image metric(s) {bad}; valid: {sorted(PER_IMAGE_METRICS)} "
                         "(set metrics fid/kid/patch_fid/is are computed by `rusir report`)")

    items = plan_items(list(fns), pairs, [name for name, _ in found])
    if shard is not None:
        items = globals()["shard"](items, *shard)
    config = {"generator": gen_name, "resolution": int(G.img_resolution),
              "images": str(images) if not isinstance(images, (list, tuple)) else [str(p) for p in images],
              "image_names": [name for name, _ in found], "methods": list(fns),
              "tasks": [f"{t}@{lv}" for t, lv in pairs], "steps": list(steps), "seed": seed,
              "loss": loss_name, "metrics": metric_names, "baseline_steps": baseline_steps}
    _write_config(out, config)
    _clean_stale_tmp(out)

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
    paths = dict(found)
    metric_cache = _MetricCache(metric_names)
    bar = _progress(todo, progress)
    try:
        for item in bar:
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(item.key)
            try:
                run_item(G, item, fns[item.method], paths[item.image_name], out, loss=loss_fn,
                         steps=steps, baseline_steps=baseline_steps, seed=seed,
                         metrics=metric_cache, save_latent=save_latent, device=dev)
                summary.done += 1
            except Exception as exc:  # noqa: BLE001 - one failing item must not stop a sweep
                if fail_fast:
                    raise
                summary.failed += 1
                summary.failures.append({"key": item.key, "error": f"{type(exc).__name__}: {exc}",
                                         "traceback": traceback.format_exc(limit=8)})
    finally:
        if hasattr(bar, "close"):
            bar.close()
        summary.seconds = time.time() - t0
        _write_failures(out, shard, summary.failures)
        try:
            (out / TMP).rmdir()  # only when empty (other shards may be writing there)
        except OSError:
            pass
    return summary


# --- files --------------------------------------------------------------------------------------

def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):
        return obj.item()
    return repr(obj)


def _write_json(path: Path, data) -> None:
    """Atomic: write a sibling temporary file, then os.replace it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{_owner_tag()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _write_config(out: Path, config: dict) -> None:
    path = out / "bench.json"
    if path.is_file():
        old = json.loads(path.read_text())
        diff = [k for k in _FIXED_CONFIG if k in old and old[k] != config.get(k)]
        if diff:
            raise ValueError(f"{out} holds a sweep with another configuration ({', '.join(diff)}: "
                             f"{[old[k] for k in diff]} vs {[config.get(k) for k in diff]}); "
                             "use a new --out folder")
        # Methods / tasks / images may grow: record the union.
        for key in ("methods", "tasks", "image_names"):
            config[key] = list(dict.fromkeys(list(old.get(key, [])) + list(config[key])))
    _write_json(path, config)


def _write_failures(out: Path, shard_: Optional[tuple[int, int]], failures: list) -> None:
    name = "failed.json" if shard_ is None else f"failed-{shard_[0]}of{shard_[1]}.json"
    path = out / name
    if failures:
        _write_json(path, failures)
    elif path.exists():
        path.unlink()


def _owner_tag() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _clean_stale_tmp(out: Path) -> None:
    """Remove temporary item folders left by dead processes of this host (killed runs); folders
    of live processes (other shards) and of other hosts are left alone (and always ignored)."""
    root = out / TMP
    if not root.is_dir():
        return
    host = socket.gethostname()
    for entry in root.iterdir():
        owner, sep, _ = entry.name.partition("+")
        owner_host, _, pid = owner.rpartition("-")
        if not sep or owner_host != host or not pid.isdigit():
            continue
        if int(pid) != os.getpid() and _alive(int(pid)):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _progress(items: list, enabled: bool):
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc="bench", unit="item", dynamic_ncols=True)
