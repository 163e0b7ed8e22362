"""The item store: one folder per benchmark item, written atomically. Only this module writes records.

Layout of an output folder `out/` (written by `rusir.engine.runner`, read by `rusir report`):

    bench.json                          the run configuration (rusir.engine.config.RunConfig;
                                        write_config refuses a re-run with another one, naming
                                        the fields, unless forced: then `mixed` lists them all)
    <method>/<task>/<level>/<jjjj>/     one finished item (<jjjj>-r<r>/: its repeat r >= 1): ground_truth.png, target.png,
                                        prediction.png, degraded_prediction.png (the TRUE degradation
                                        of the prediction), latent.pt (optional), record.json
    failed.json, failed-<k>of<n>.json   failures of a run / of shard k of n
    .tmp/<host>-<pid>+<key>/            items being written (ignored by readers)
    .tmp/claims/<key>                   which run works on an item (rusir.data.claims)

An item is finished iff its folder holds a `record.json` that parses and has the RECORD_FIELDS
(`read_record`): a damaged one (truncated, empty, not an object, a field missing, another item's
key) is unfinished -- redone by `rusir bench`, skipped by `load_records` with a DamagedFileWarning
naming it. A damaged `bench.json` is a ValueError naming it (`read_config`): a run refuses to start
(the file guards the configuration of the finished items); the report warns and leaves it out.

An item is built in `out/.tmp/` and moved into place with one atomic rename, and the first writer
wins: a finished item already in place (another run's) is kept and the new one discarded; an
unfinished or damaged folder there is renamed aside whole, then replaced. So a finished folder is
never deleted and a folder never mixes two writers. Temporary folders of killed runs are removed
by the next run on their host (`clean_stale_tmp`). JSON files are written to a temporary sibling
and replaced, so a reader never sees half a file.

The images are stored and scored as 8-bit (`as_8bit`: what saving to PNG and reading back gives).
`MetricCache` (rusir.engine.availability, re-exported) remembers which metrics cannot be
computed here.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import uuid
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..data.claims import CLAIMS, TMP, alive, owner_tag
from ..data.outputs import write_text
from ..degradations import COMPOSITIONS, LEVELS, TASKS, cycle_8bit
from ..degradations.base import to_uint8
from .availability import UNAVAILABLE, MetricCache  # re-exported: the store's users score items

__all__ = ["TMP", "CLAIMS", "RECORD", "CONFIG", "RECORD_FIELDS", "FIXED_CONFIG", "IMAGE_FILES", "UNAVAILABLE",
           "DamagedFileWarning", "item_key", "item_dir", "is_finished", "read_json", "record_problem",
           "read_record", "load_records", "warn_damaged", "write_item", "write_json", "read_config",
           "config_conflicts", "write_config", "write_failures", "clean_stale_tmp", "discard_item_tmp",
           "remove_empty_tmp",
           "owner_tag", "config_folder", "jsonable", "as_8bit", "save_png", "read_png", "MetricCache"]

RECORD = "record.json"
CONFIG = "bench.json"
# What makes a record.json a finished item: these fields, of these types (every runner so far,
# the first rusir/bench.py and the first IQA study included, wrote them all).
RECORD_FIELDS = {"key": str, "method": str, "task": str, "level": str, "image_index": int,
                 "image": str, "metrics": dict}
# Config fields that must agree between runs sharing one output folder.
FIXED_CONFIG = ("generator", "generator_sha256", "generator_defaults", "images", "steps", "seed",
                "loss", "metrics", "baseline_steps", "degradation_seeds", "dtype", "discrepancy",
                "chunk", "method_options", "true_mask", "images_manifest")
# Config fields that may grow between runs sharing one folder: the union is recorded.
GROWING_CONFIG = ("methods", "tasks", "image_names")
IMAGE_FILES = ("ground_truth", "target", "prediction", "degraded_prediction")

PathLike = Union[str, Path]


class DamagedFileWarning(UserWarning):
    """A file of a benchmark folder that cannot be read (a damaged record.json is skipped)."""


# --- layout and reading ---------------------------------------------------------------------------

def item_key(method: str, task: str, level: str, index: int, repeat: int = 0) -> str:
    """`<method>/<task>/<level>/<jjjj>`: an item's folder relative to the output folder; repeat
    r >= 1 of it (`rusir bench --repeats`) is `<jjjj>-r<r>` (repeat 0 keeps the plain key, so
    a folder of a run without repeats is its repeat 0)."""
    return f"{method}/{task}/{level}/{index:04d}" + (f"-r{repeat}" if repeat else "")


def item_dir(out: PathLike, key) -> Path:
    """The folder of an item: `key` is `<method>/<task>/<level>/<jjjj>` or has a `.key`."""
    return Path(out) / getattr(key, "key", key)


def is_finished(out: PathLike, key) -> bool:
    """Whether the item's folder holds its finished record (see read_record)."""
    key = getattr(key, "key", key)
    return _holds_record(item_dir(out, key), key)


def read_json(path: PathLike) -> Any:
    """The JSON data of a file; ValueError naming the file when it is empty, not text or not JSON."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: damaged (not text: {exc.reason})") from None
    if not text.strip():
        raise ValueError(f"{path}: damaged (empty)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: damaged (not valid JSON: {exc})") from None


def record_problem(record, key: Optional[str] = None) -> Optional[str]:
    """Why `record` is not a finished item's record (of item `key` when given), or None."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    missing = [name for name in RECORD_FIELDS if name not in record]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    wrong = [f"{name} is {type(record[name]).__name__}, not {kind.__name__}"
             for name, kind in RECORD_FIELDS.items()
             if not isinstance(record[name], kind) or (kind is int and isinstance(record[name], bool))]
    if not wrong:
        wrong = [f"metric {name} is {type(v).__name__}, not a number" for name, v in record["metrics"].items()
                 if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
    if wrong:
        return "; ".join(wrong)
    if key is not None and record["key"] != key:
        return f"it is the record of {record['key']}, not of {key}"
    return None


def read_record(path: PathLike, key: Optional[str] = None) -> dict:
    """A finished item's record; ValueError naming the file when it is damaged (see read_json and
    record_problem; `key`: the item it must belong to)."""
    record = read_json(path)
    problem = record_problem(record, key)
    if problem:
        raise ValueError(f"{path}: damaged ({problem})")
    return record


def load_records(directory: PathLike, damaged: Optional[list] = None) -> list[dict]:
    """Every finished item's record.json under `directory` (temporary folders and `report/`
    ignored), sorted by method, single before composed, task, level, image; each record gains
    `_dir`, the item folder. A damaged record (see read_record; or one whose key is not its
    folder) is skipped with a DamagedFileWarning naming it (and `<path>: damaged (why)` appended
    to `damaged`)."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark folder {root} does not exist")
    records = []
    for path in sorted(root.rglob(RECORD)):
        rel = path.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or rel[0] == "report":
            continue
        try:
            rec = read_record(path)
            if tuple(rec["key"].split("/")) != rel[-1 - len(rec["key"].split("/")):-1]:
                raise ValueError(f"{path}: damaged (its key {rec['key']} is not its folder)")
        except (ValueError, OSError) as exc:
            warn_damaged(f"skipped {exc}")
            if damaged is not None:
                damaged.append(str(exc))
            continue
        rec["_dir"] = str(path.parent)
        records.append(rec)
    return sorted(records, key=_order)


def warn_damaged(message: str, collect: Optional[list] = None) -> None:
    """A DamagedFileWarning (message appended to `collect`)."""
    warnings.warn(message, DamagedFileWarning, stacklevel=3)
    if collect is not None:
        collect.append(message)


def _order(rec: dict) -> tuple:
    level, task = rec.get("level"), rec.get("task", "")
    rank = (0, TASKS.index(task)) if task in TASKS else (
        (1, COMPOSITIONS.index(task)) if task in COMPOSITIONS else (2, 0))
    return (rec.get("method", ""), rec.get("category", "") != "single", rank, task,
            LEVELS.index(level) if level in LEVELS else 99, rec.get("image_index", 0))


def read_config(out: PathLike) -> Optional[dict]:
    """`out/bench.json`, None when absent; ValueError naming it when it is damaged."""
    path = Path(out) / CONFIG
    if not path.is_file():
        return None
    config = read_json(path)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: damaged (not a JSON object but {type(config).__name__})")
    return config


# --- writing ----------------------------------------------------------------------------------------

def write_json(path: PathLike, data) -> Path:
    """Atomic, never through a link (rusir.data.outputs.write_text)."""
    return write_text(path, json.dumps(jsonable(data), indent=1, sort_keys=False) + "\n")


def write_item(out: PathLike, key: str, images: Mapping[str, Tensor], record: dict,
               latent: Optional[dict] = None) -> Optional[Path]:
    """Write one finished item: `images` ({name: [1, 3, H, W]}) as 8-bit PNGs, `latent` (a dict,
    torch.save'd) and `record` (with the RECORD_FIELDS, else ValueError) as record.json, built in
    `out/.tmp/` and moved into place with one atomic rename. Returns the item's folder, or None when
    it already held a finished item (another run's: kept, this one discarded). An unfinished or
    damaged folder at the place is replaced as a whole."""
    out = Path(out)
    problem = record_problem(jsonable(record), key)
    if problem:
        raise ValueError(f"refusing to write item {key}: its record is not finished ({problem})")
    final = item_dir(out, key)
    tmp = out / TMP / f"{owner_tag()}+{key.replace('/', '__')}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        for name, img in images.items():
            save_png(img, tmp / f"{name}.png")
        if latent is not None:
            torch.save(latent, tmp / "latent.pt")
        write_json(tmp / RECORD, record)
        _die_here_for_tests()
        return final if _move_into_place(out, key, tmp, final) else None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _die_here_for_tests() -> None:
    """Test hook: when the file named by $RUSIR_TEST_DIE_FILE exists, the first writer to remove
    it kills its own process here, a half-written item left in `.tmp` (how the tests kill a Ray
    worker once). Unset, it costs one environment lookup."""
    path = os.environ.get("RUSIR_TEST_DIE_FILE")
    if not path:
        return
    try:
        os.remove(path)
    except FileNotFoundError:
        return
    os._exit(70)


def _move_into_place(out: Path, key: str, tmp: Path, final: Path) -> bool:
    """Rename `tmp` to `final`: True, or False when `final` holds a finished item (first writer
    wins). rename(2) refuses a non-empty target folder, so a finished folder is never replaced;
    an unfinished one is first renamed aside (atomic) and then removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):   # each retry follows another writer's move at the same place
        try:
            os.rename(tmp, final)
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if _holds_record(final, key):
            return False
        aside = out / TMP / f"{owner_tag()}+replaced-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(final, aside)
        except FileNotFoundError:
            continue
        if _holds_record(aside, key):
            # finished by another writer between the check and the move: put it back, keep it
            try:
                os.rename(aside, final)
                return False
            except OSError:   # a third writer's finished item is there now: this one is a copy
                pass
        shutil.rmtree(aside, ignore_errors=True)
    raise OSError(f"could not move item {key} into place at {final}: other writers keep changing it")


def _holds_record(folder: Path, key: str) -> bool:
    """Whether `folder` holds the finished record of item `key`."""
    try:
        read_record(folder / RECORD, key)
    except (ValueError, OSError):
        return False
    return True


def config_conflicts(old: Mapping, new: Mapping) -> list[str]:
    """The FIXED_CONFIG fields on which two runs' configurations disagree (a field an older folder
    did not record is not compared). A list of image paths may grow (items are numbered by
    position, so a longer list keeps every finished item valid); `method_options` may gain
    methods, but a method already there must keep its bound options."""
    diff = []
    for key in FIXED_CONFIG:
        if key not in old:   # an older folder that did not record it
            continue
        a, b = old[key], new.get(key)
        if key == "images" and isinstance(a, list) and isinstance(b, list) and _is_prefix(a, b):
            continue
        if key == "method_options" and isinstance(a, dict) and isinstance(b, dict):
            a, b = ({m: v for m, v in d.items() if m in a and m in b} for d in (a, b))
        if a != b:
            diff.append(key)
    return diff


def fixed_part(config: Mapping) -> dict:
    """The FIXED_CONFIG fields of a configuration: what one of a mixed folder's runs was."""
    return {key: config[key] for key in FIXED_CONFIG if key in config}


def _is_prefix(a: Sequence, b: Sequence) -> bool:
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return list(long[:len(short)]) == list(short)


def write_config(out: PathLike, config: dict, force_mixed: bool = False) -> dict:
    """Write `out/bench.json`; when one exists, refuse a run with another configuration (a
    one-line ValueError naming each differing field, old -> new) and record the union of methods,
    tasks and images, and the most repeats. `force_mixed` writes it anyway and marks the folder mixed: `mixed` lists
    the fixed part of every configuration that ran there (each item's record says what it ran).
    Returns what was written."""
    out = Path(out)
    try:
        old = read_config(out)
    except ValueError as exc:   # it guards the configuration the finished items were made with
        raise ValueError(f"{exc}; restore it, or delete it to accept this run's configuration "
                         "(the finished items are kept)") from None
    config = jsonable(dict(config))
    if old is not None:
        diff = config_conflicts(old, config)
        if diff and not force_mixed:
            changes = "; ".join(f"{k} {json.dumps(old[k])} -> {json.dumps(config.get(k))}"
                                for k in diff)
            raise ValueError(f"{out} holds a sweep with another configuration ({changes}); use a "
                             "new --out folder, or --force-mixed (force_mixed=True) to add to it "
                             "as a mixed folder")
        mixed = list(old.get("mixed") or ([] if not diff else [fixed_part(old)]))
        if diff:
            mixed.append(fixed_part(config))
        if mixed:
            config["mixed"] = mixed
        if isinstance(old.get("method_options"), dict) and isinstance(config.get("method_options"), dict):
            config["method_options"] = {**old["method_options"], **config["method_options"]}
        for key in GROWING_CONFIG:
            config[key] = list(dict.fromkeys(list(old.get(key, [])) + list(config.get(key, []))))
        if isinstance(old.get("images"), list) and len(old["images"]) > len(config.get("images") or []):
            config["images"] = old["images"]
        if isinstance(old.get("repeats"), int) and old["repeats"] > config.get("repeats", 1):
            config["repeats"] = old["repeats"]   # fewer repeats now: the extra ones stay valid
    write_json(out / CONFIG, config)
    return config


def write_failures(out: PathLike, shard: Optional[tuple[int, int]], failures: list) -> None:
    """`failed.json` (`failed-<k>of<n>.json` for shard k of n); removed when nothing failed."""
    name = "failed.json" if shard is None else f"failed-{shard[0]}of{shard[1]}.json"
    path = Path(out) / name
    if failures:
        write_json(path, failures)
    elif path.exists():
        path.unlink()


def clean_stale_tmp(out: PathLike) -> None:
    """Remove temporary item folders left by dead processes of this host (killed runs); folders
    of live processes (other shards, other runs in this process) and of other hosts are left alone
    (and always ignored)."""
    root = Path(out) / TMP
    if not root.is_dir():
        return
    host = socket.gethostname()
    for entry in root.iterdir():
        owner, sep, _ = entry.name.partition("+")
        owner_host, _, pid = owner.rpartition("-")
        if not sep or owner_host != host or not pid.isdigit():
            continue
        if alive(int(pid)):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def discard_item_tmp(out: PathLike, key: str) -> None:
    """Remove the temporary folders of item `key` (any owner): called by the run that holds the
    item's claim once the worker writing it is known to have died. A worker that died a moment
    ago may still be exiting, so `clean_stale_tmp` cannot yet tell its folder is stale."""
    root = Path(out) / TMP
    if not root.is_dir():
        return
    for entry in root.glob(f"*+{key.replace('/', '__')}-*"):
        shutil.rmtree(entry, ignore_errors=True)


def remove_empty_tmp(out: PathLike) -> None:
    """Remove `out/.tmp` when empty (other shards may still be writing there)."""
    for folder in (Path(out) / TMP / CLAIMS, Path(out) / TMP):
        try:
            folder.rmdir()
        except OSError:
            pass


def config_folder(root: PathLike, settings: Mapping) -> Path:
    """`root/<10 hex digits of the settings' hash>`: one store per configuration of a study, so
    that changed settings start a fresh store and switching back resumes the old one."""
    text = json.dumps(jsonable(settings), sort_keys=True)
    return Path(root) / hashlib.sha1(text.encode()).hexdigest()[:10]


# --- values -------------------------------------------------------------------------------------------

def jsonable(obj):
    """Plain JSON data: tensors to lists, configs with `to_dict` to dicts, anything else to repr."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    if hasattr(obj, "item"):
        return obj.item()
    return repr(obj)


def as_8bit(img: Tensor) -> Tensor:
    """What saving to PNG and reading back gives (the images the metrics see)."""
    return cycle_8bit(img, "round")


def save_png(img: Tensor, path: PathLike) -> None:
    """[1, 3, H, W] -> 8-bit PNG (clamped, rounded)."""
    arr = to_uint8(img[0], rounding="round").permute(1, 2, 0).cpu().numpy()
    Image.fromarray(arr, mode="RGB").save(path)


def read_png(path: PathLike) -> Tensor:
    """An 8-bit image file -> [1, 3, H, W] float32 in [0, 1], exactly as saved."""
    with Image.open(path) as f:
        arr = np.asarray(f.convert("RGB"), dtype=np.uint8).copy()
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float() / 255
