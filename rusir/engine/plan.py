"""What a benchmark run does: its items (method, task, level, image), units, shards, images, methods.

`plan_items` orders the items method, task, level, repeat, image; `plan_units(items, batch)` groups the
items that share (method, task, level) into work units of up to `batch` images (one restoration
call each); `shard_items(units, k, n)` gives shard k of n (round robin, so shards are disjoint,
cover the plan and differ by at most one unit).
Images are files (`heldout`, a folder, a list of paths) or given tensors; methods are names
(`rusir.baselines.get_method`) or {name: function}. `bind_method(restore, loss=config)` fixes a
method's keyword arguments (how the IQA study turns loss variants into methods).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

from torch import Tensor

from .. import degradations
from ..baselines import get_method
from ..data import heldout_paths
from ..data.manifest import manifest_hash
from ..degradations.base import LEVELS, to_uint8
from ..validation import MAX_BATCH, MAX_REPEATS, whole
from .records import item_key

__all__ = ["Item", "canonical_task", "parse_tasks", "plan_items", "parse_shard", "shard_items",
           "resolve_images", "images_config", "images_manifest", "resolve_methods", "BoundMethod", "bind_method",
           "IMAGE_EXTENSIONS", "COMPOSED_LEVEL", "ImageSource", "Unit", "plan_units", "parse_batch",
           "parse_repeats", "TASK_GROUPS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
COMPOSED_LEVEL = "M"

ImageSource = Union[Path, Tensor]   # an image file, or a [1, 3, R, R] ground truth in [0, 1]


# --- items ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One unit of work: restore image `image_index` degraded by `task` at `level` with `method`."""
    method: str
    task: str          # registry name (single task) or upper-case initials (composition)
    level: str
    image_index: int
    image_name: str
    repeat: int = 0    # r-th restoration of the same target (`--repeats`): 0 is the plain run

    @property
    def key(self) -> str:
        """Folder of the item relative to the output folder, e.g. `rusir/upsampling/M/0003`
        (repeat r >= 1: `rusir/upsampling/M/0003-r1`)."""
        return item_key(self.method, self.task, self.level, self.image_index, self.repeat)

    @property
    def category(self) -> str:
        return "composed" if degradations.is_composition(self.task) else "single"


def canonical_task(name: str) -> str:
    """`degradations.canonical_task`, with the benchmark's extra words in the error."""
    try:
        return degradations.canonical_task(name)
    except ValueError:
        raise ValueError(f"unknown task {name!r}; valid: single, composed, all, "
                         f"{', '.join(TASK_GROUPS)}, or T@L with T one of "
                         f"{degradations.available()} and L one of {list(LEVELS)}") from None


# Named sets of (task, level) beyond single / composed / all. `table3` (alias `ddrm`): the
# paper's Table 3 (RUSIR vs DDRM, ../shared/spec/paper-tables.md), every task at XL; uncropping
# (the top-left corner kept) has no levels, XL is only what its items record.
TASK_GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "table3": (("avgpool_upsampling", "XL"), ("nearest_upsampling", "XL"), ("gaussian_noise", "XL"),
               ("clamped_gaussian_noise", "XL"), ("inpainting", "XL"), ("uncropping", "XL")),
}
TASK_GROUPS["ddrm"] = TASK_GROUPS["table3"]


def parse_tasks(spec: Union[str, Sequence[str]]) -> list[tuple[str, str]]:
    """`single` (4 tasks x 5 levels), `composed` (11 compositions at M), `all`, a group of
    TASK_GROUPS (`table3` / `ddrm`: the paper's Table 3), or a comma list of `T@L` / `T` (level
    M) -- mixable, e.g. `single,UNAP@M` or `all,table3`. Returns unique (task, level) in order."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[tuple[str, str]] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if part.lower() in TASK_GROUPS:
            out += list(TASK_GROUPS[part.lower()])
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
        raise ValueError(f"no tasks in {spec!r}; use single, composed, all, table3 or T@L,...")
    return list(dict.fromkeys(out))


def plan_items(methods: Sequence[str], tasks: Union[str, Sequence], images: Union[int, Sequence[str]],
               repeats: int = 1) -> list[Item]:
    """Every (method, task, level, repeat, image) item in that run order. `images` is a count
    (names `0000`, ...) or the list of image names; `repeats` restorations of each (repeat 0 is
    the plain run: the items of `repeats=1`)."""
    names = [f"{i:04d}" for i in range(images)] if isinstance(images, int) else list(images)
    pairs = tasks if not isinstance(tasks, str) and tasks and isinstance(tasks[0], tuple) \
        else parse_tasks(tasks)
    return [Item(m, t, lv, j, name, r) for m in methods for t, lv in pairs
            for r in range(parse_repeats(repeats)) for j, name in enumerate(names)]


def parse_repeats(repeats) -> int:
    """How many times each item is restored: a whole number in [1, MAX_REPEATS]."""
    return whole(repeats, "repeats", 1, MAX_REPEATS, "MAX_REPEATS")


@dataclass(frozen=True)
class Unit:
    """Items of one (method, task, level, repeat) restored together as one batch (images in plan order).
    Planned from every item, finished or not, so that units and shards do not depend on what a
    folder holds; a run restores only a unit's unfinished items."""
    items: tuple[Item, ...]

    @property
    def key(self) -> str:
        """`<method>/<task>/<level>/<first>-<last>` (`-r<r>` for repeat r >= 1), for progress
        and failure messages."""
        first, last = self.items[0], self.items[-1]
        if len(self.items) == 1:
            return first.key
        span = item_key(first.method, first.task, first.level, first.image_index)
        return f"{span}-{last.image_index:04d}" + (f"-r{first.repeat}" if first.repeat else "")


def parse_batch(batch) -> int:
    """A batch size: a whole number in [1, MAX_BATCH] (ValueError otherwise)."""
    return whole(batch, "batch size", 1, MAX_BATCH, "MAX_BATCH")


def plan_units(items: Sequence[Item], batch: int = 1) -> list[Unit]:
    """Consecutive items sharing (method, task, level, repeat), in chunks of at most `batch`
    images (a unit's items share their method's seed and start: `rusir.engine.unit`)."""
    batch = parse_batch(batch)
    units: list[Unit] = []
    current: list[Item] = []
    for item in items:
        if current and (len(current) == batch or _cell(current[0]) != _cell(item)):
            units.append(Unit(tuple(current)))
            current = []
        current.append(item)
    if current:
        units.append(Unit(tuple(current)))
    return units


def _cell(item: Item) -> tuple[str, str, str, int]:
    return item.method, item.task, item.level, item.repeat


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


def shard_items(items: Sequence, k: int, n: int) -> list:
    """Round-robin over the planned order: shard k of n gets items (or units) k, k+n, ... All
    shards must plan the same items (same --methods/--tasks/--images/--batch); then they are
    disjoint and cover all."""
    parse_shard(f"{k}/{n}")
    return list(items[k::n])


# --- inputs ---------------------------------------------------------------------------------

def resolve_images(spec, n_images: Optional[int] = None) -> list[tuple[str, ImageSource]]:
    """`heldout`, `heldout:N` (the first N), `heldout:A-B` (faces A..B inclusive), a folder
    (sorted recursive glob of png/jpg/jpeg/tif), a list of paths, a tensor [N, 3, R, R] (names
    `0000`, ...) or {name: tensor [3, R, R] or path} -> [(name, path or [1, 3, R, R] tensor)],
    the first `n_images` of them."""
    if isinstance(spec, Tensor):
        if spec.dim() != 4 or spec.shape[1] != 3:
            raise ValueError(f"images as a tensor must be [N, 3, R, R], got {list(spec.shape)}")
        found = [(f"{j:04d}", spec[j:j + 1]) for j in range(spec.shape[0])]
    elif isinstance(spec, Mapping):
        found = [(str(name), v if not isinstance(v, Tensor) or v.dim() == 4 else v.unsqueeze(0))
                 for name, v in spec.items()]
        found = [(name, v if isinstance(v, Tensor) else Path(v)) for name, v in found]
    elif isinstance(spec, (list, tuple)):
        found = [(Path(p).name, Path(p)) for p in spec]
    elif isinstance(spec, str) and spec.split(":")[0] == "heldout":
        found = [(p.name, p) for p in heldout_paths()]
        found = found[_heldout_range(spec, len(found))]
    else:
        root = Path(spec).expanduser().resolve()     # workers on other nodes: absolute paths
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


def _heldout_range(spec: str, shipped: int) -> slice:
    """The faces of `heldout`, `heldout:N` (the first N) or `heldout:A-B` (A..B inclusive): a
    count or a range beyond the `shipped` faces is an error naming the valid ones, not fewer
    faces than asked for."""
    count = spec.partition(":")[2]
    start, dash, stop = count.partition("-")
    if not count:
        return slice(None)
    if not re.fullmatch(r"\d{1,9}(-\d{1,9})?", count):
        raise ValueError(f"bad image spec {spec!r}: expected heldout, heldout:N or heldout:A-B")
    if not dash:
        if not 1 <= int(start) <= shipped:
            raise ValueError(f"{spec}: asks for {int(start)} held-out faces; there are {shipped} "
                             f"(0-{shipped - 1}): give heldout:N with 1 <= N <= {shipped}")
        return slice(int(start))
    first, last = int(start), int(stop)
    if not first <= last <= shipped - 1:
        raise ValueError(f"{spec}: faces {first}-{last} are not a range of the {shipped} held-out "
                         f"faces (0-{shipped - 1}); give heldout:A-B with 0 <= A <= B <= {shipped - 1}")
    return slice(first, last + 1)


def images_manifest(spec) -> Optional[str]:
    """sha256 of the manifest of an image folder built by `rusir data build` (checked first: a
    face missing or altered is refused in one line), None for any other image spec."""
    if not isinstance(spec, (str, Path)) or str(spec).split(":")[0] == "heldout":
        return None
    return manifest_hash(Path(spec).expanduser())


def images_config(spec, found: Sequence[tuple[str, ImageSource]]):
    """How bench.json names the images: the spec, the list of paths, or a hash of given tensors."""
    if isinstance(spec, (str, Path)):
        return str(spec)
    if all(isinstance(v, Path) for _, v in found):
        return [str(v) for _, v in found]
    digest = hashlib.sha1()
    for name, v in found:
        digest.update(name.encode())
        digest.update(str(v).encode() if isinstance(v, Path) else to_uint8(v, "round").numpy().tobytes())
    return f"tensors:{digest.hexdigest()[:16]}"


def resolve_methods(methods: Union[str, Sequence[str], Mapping[str, Callable]]) -> dict[str, Callable]:
    """Names -> restoration functions (`rusir.baselines.get_method`), or a {name: function} mapping."""
    if isinstance(methods, Mapping):
        return dict(methods)
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    if not names:
        raise ValueError("no methods given")
    return {name: get_method(name) for name in dict.fromkeys(names)}


class BoundMethod:
    """A method with some keyword arguments fixed, e.g. RUSIR with one IQA loss variant:
    `bind_method(restore, loss=config)`. The fixed values win over what the runner passes (its
    run-wide `loss`, usually None), unlike functools.partial, whose keywords a call overrides."""

    def __init__(self, fn: Callable, **fixed):
        self.fn, self.fixed = fn, dict(fixed)
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)

    @property
    def run_options(self) -> tuple[str, ...]:
        """The run-level options the function takes (`restore.run_options`), less the bound ones:
        the IQA study's `rusir[loss=...]` gets the run's steps, the ablation keeps its own."""
        return tuple(o for o in getattr(self.fn, "run_options", ()) if o not in self.fixed)

    @property
    def table(self) -> Optional[str]:
        """The function's hyperparameter table (a baseline's), if any."""
        return getattr(self.fn, "table", None)

    def __call__(self, G, target, degradation=None, **kwargs):
        return self.fn(G, target, degradation, **{**kwargs, **self.fixed})

    def __repr__(self) -> str:
        return f"bind_method({self.__name__}, {', '.join(self.fixed)})"


def bind_method(fn: Callable, **fixed) -> BoundMethod:
    """`fn` with the keyword arguments `fixed` (see BoundMethod); what ran is recorded from the
    result's `config` (records' `config`), bench.json lists the bound options per method."""
    return BoundMethod(fn, **fixed)
