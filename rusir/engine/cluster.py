"""The Ray engine: a benchmark's work units (or a sweep's parameter sets) as Ray tasks.

    rusir bench ... --engine ray --batch 8                        # this machine's GPUs / CPUs
    rusir bench ... --engine ray --address auto                   # an existing cluster (`ray start`)

Ray is optional (`pip install 'rusir[cluster]'`). Each unit is one task asking for
`gpus_per_unit` GPUs (fractions pack several units on a GPU) or `cpus_per_unit` CPUs; a task
whose worker process dies is run again (`max_retries`), and restores only what its last attempt
did not finish (records are per item, written atomically). A worker loads the generator once per
run (`_worker_job`, a per-process cache), not once per unit. The driver holds the items' claims
(rusir.data.claims), so local runs, shards and Ray runs can share one output folder.

Ray waits forever for what can never come, so two things are refused up front, in one line: an
address where nothing listens (`check_reachable`, within CONNECT_TIMEOUT_S) and a task that asks
for more CPUs or GPUs than any node of the cluster has (`check_resources`).

Workers write into the output folder themselves, so on a cluster it must be on storage every node
mounts (NFS, Lustre...): `check_shared_storage` writes a token file there and has a task on every
node read it, and refuses to start when one cannot.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from ..progress import progress_bar
from ..data import claims
from ..validation import ENGINES
from . import records
from .plan import Item, Unit
from .unit import Job, UnitOutcome, execute_unit

__all__ = ["require_ray", "connect", "check_reachable", "check_resources", "check_shared_storage",
           "run_units", "run_tasks", "RayNotInstalled", "StorageNotShared", "INSTALL", "ENGINES",
           "CONNECT_TIMEOUT_S"]

INSTALL = "pip install 'rusir[cluster]'"
CONNECT_TIMEOUT_S = 10.0    # a cluster's head answers in milliseconds; this only bounds the wait
_JOBS: dict[str, Job] = {}          # worker side: the Job of each run this process served


class RayNotInstalled(ImportError):
    """`--engine ray` without Ray installed (the CLI reports it in one line)."""


def require_ray():
    """The `ray` module, or RayNotInstalled naming the install command."""
    try:
        import ray
    except ImportError:
        raise RayNotInstalled(f"--engine ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def connect(address: Optional[str] = None) -> bool:
    """Join the cluster at `address` (`auto`, `ray://host:port`), or start a local one on this
    machine's GPUs and CPUs; a Ray already initialised in this process is used as it is.
    Returns whether this call started it (then the caller shuts it down)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    check_reachable(address)
    ray.init(address=address, log_to_driver=False, include_dashboard=False,
             configure_logging=False)
    return True


def check_reachable(address: Optional[str]) -> None:
    """Refuse a cluster address (`host:port`, `ray://host:port`; for None or `auto`, $RAY_ADDRESS
    when set) where nothing accepts a connection within CONNECT_TIMEOUT_S: Ray itself retries
    such an address for minutes. `auto` without $RAY_ADDRESS is Ray's own look-up."""
    target = address if address not in (None, "auto") else os.environ.get("RAY_ADDRESS")
    if not target or target in ("auto", "local"):
        return
    host, _, port = target.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        return                      # not host:port: ray.init says what is wrong with it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConnectionError(f"no Ray cluster answers at {target} ({exc.strerror or exc}): start one "
                              "with `ray start --head` or check --address") from None


def check_resources(ray, cpus: float, gpus: float, what: str = "unit") -> None:
    """Refuse a task that asks for more CPUs or GPUs than the cluster's largest node has (it would
    wait forever): one line naming the resource, the option and what the cluster has."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    total = ray.cluster_resources()
    for name, need in (("CPU", cpus), ("GPU", gpus)):
        most = max((resources.get(name, 0) for resources in nodes), default=0)
        if need > most:
            raise ValueError(f"--{name.lower()}s-per-{what} {need:g}: a {what} asks for {need:g} "
                             f"{name}s but the Ray cluster has {total.get(name, 0):g} in all, at most "
                             f"{most:g} on one node")


# --- shared storage ---------------------------------------------------------------------------

class StorageNotShared(OSError):
    """A node does not see the output folder: the whole run stops (not one unit's failure)."""


def check_shared_storage(folder: Path) -> Path:
    """Write a token file into `folder` and check that a task on every node of the cluster reads
    it back; OSError naming the hosts that cannot. Returns the token file (remove it at the end)."""
    # named like a temporary item (`<host>-<pid>+...`): a killed driver's is cleaned by the next run
    token = Path(folder) / records.TMP / f"{records.owner_tag()}+storage-token-{uuid.uuid4().hex[:12]}"
    token.parent.mkdir(parents=True, exist_ok=True)
    text = f"{socket.gethostname()} {os.getpid()}"
    token.write_text(text)
    try:
        check_nodes_see(token, text)
    except BaseException:
        token.unlink(missing_ok=True)
        raise
    return token


def check_nodes_see(token: Path, text: str) -> None:
    """Run `_sees` on every alive node; OSError naming the hosts that do not see `token`."""
    ray = require_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    sees = ray.remote(_sees)
    refs = [sees.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        node["NodeID"], soft=False)).remote(str(token), text) for node in ray.nodes() if node["Alive"]]
    blind = [host for host, ok in ray.get(refs) if not ok]
    if blind:
        raise StorageNotShared(f"the Ray workers on {', '.join(sorted(set(blind)))} do not see {token.parent.parent}: "
                      "the output folder must be on storage shared by every node (NFS, Lustre); "
                      "use a shared --out path")


def _sees(path: str, text: str) -> tuple[str, bool]:
    """(this host, whether `path` holds `text`): run on one node."""
    try:
        return socket.gethostname(), Path(path).read_text() == text
    except OSError:
        return socket.gethostname(), False


# --- the benchmark's units --------------------------------------------------------------------

@dataclasses.dataclass
class WorkerSpec:
    """What a worker needs to rebuild a run's Job: the job without its generator, the generator
    (a registry name / path, or the Generator itself), the device kind and the storage token."""
    key: str
    job: Job
    generator: Any
    use_gpu: bool
    token: tuple[str, str]


def _worker_job(spec: WorkerSpec) -> Job:
    """This worker's Job for the run: the generator loaded once per process and run."""
    job = _JOBS.get(spec.key)
    if job is None:
        from ..model.generators import load_generator
        if not Path(spec.token[0]).is_file() or Path(spec.token[0]).read_text() != spec.token[1]:
            raise StorageNotShared(f"worker on {socket.gethostname()} does not see the output folder "
                          f"{spec.job.out}: it must be on shared storage (NFS, Lustre)")
        device = torch.device("cuda" if spec.use_gpu else "cpu")
        G = spec.generator
        G = load_generator(G, device=device) if isinstance(G, (str, Path)) else G.to(device)
        job = dataclasses.replace(spec.job, G=G.to(spec.job.dtype), device=device,
                                  metrics=records.MetricCache())
        _JOBS.clear()                     # one run at a time per worker: free the last one's
        _JOBS[spec.key] = job
    return job


def _unit_task(spec: WorkerSpec, items: Sequence[Item], fail_fast: bool) -> UnitOutcome:
    """One unit on a worker (the Ray task)."""
    return execute_unit(_worker_job(spec), items, fail_fast)


def run_units(job: Job, generator, todo: Sequence[Unit], summary, *, address: Optional[str] = None,
              gpus_per_unit: Optional[float] = None, cpus_per_unit: float = 1,
              max_retries: int = 3, fail_fast: bool = False, progress: bool = True) -> None:
    """Run the units as Ray tasks and add their outcomes to `summary` (a BenchSummary). Items
    claimed by another live run are tried again at the end, then left to it (counted busy)."""
    ray = require_ray()
    started = connect(address)
    token = None
    try:
        token = check_shared_storage(job.out)
        gpus = _gpus(ray, gpus_per_unit)
        check_resources(ray, cpus_per_unit, gpus)
        spec = WorkerSpec(uuid.uuid4().hex, dataclasses.replace(job, G=None), generator, gpus > 0,
                          (str(token), token.read_text()))
        task = ray.remote(_unit_task).options(num_cpus=cpus_per_unit, num_gpus=gpus,
                                              max_retries=max_retries)
        _drive(ray, task, ray.put(spec), job.out, todo, summary, fail_fast, progress)
    finally:
        if token is not None:
            token.unlink(missing_ok=True)
        if started:
            ray.shutdown()


def _gpus(ray, gpus_per_unit: Optional[float]) -> float:
    """GPUs per unit: as given (a fraction packs units on a GPU), else 1 when the cluster has GPUs."""
    if gpus_per_unit is None:
        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    if not gpus_per_unit >= 0:
        raise ValueError(f"gpus_per_unit must be >= 0, got {gpus_per_unit}")
    return float(gpus_per_unit)


def _drive(ray, task, spec_ref, out: Path, todo: Sequence[Unit], summary, fail_fast: bool,
           progress: bool) -> None:
    """Submit every unit (claiming its items), collect outcomes as they finish, one progress bar."""
    owner = claims.claim_token()
    bar = progress_bar(total=sum(len(u.items) for u in todo), desc="bench (ray)", unit="item",
               dynamic_ncols=True, disable=not progress)
    pending: dict = {}
    deferred: list[Unit] = []
    units_done = 0

    def submit(unit: Unit, last: bool) -> None:
        mine, held = claims.claim_items(out, unit.items, owner, force=last)
        if held and last:
            summary.busy += len(held)
            bar.update(len(held))
        elif held:
            deferred.append(Unit(tuple(held)))
        if mine:
            pending[task.remote(spec_ref, mine, fail_fast)] = mine

    try:
        for unit in todo:
            submit(unit, last=False)
        for phase in ("first", "last"):
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                mine = pending.pop(ready[0])
                try:
                    outcome = _outcome(ray, ready[0], mine, fail_fast)
                    for failure in outcome.failures:   # still ours: a dead worker's half-written item
                        records.discard_item_tmp(out, failure["key"])
                    outcome.add_to(summary)
                finally:
                    for item in mine:
                        claims.release_claim(out, item.key, owner)
                units_done += 1
                bar.set_postfix_str(f"{units_done} units", refresh=False)
                bar.update(len(mine))
            if phase == "first":
                for unit in list(deferred):
                    submit(unit, last=True)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        for mine in pending.values():
            for item in mine:
                claims.release_claim(out, item.key, owner)
        bar.close()


def _outcome(ray, ref, items: Sequence[Item], fail_fast: bool) -> UnitOutcome:
    """A finished task's outcome; a task that failed for good (its worker died more than
    max_retries times) fails each of its items, as a failing restoration does."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:     # raised in the task: fail_fast, storage
        cause = getattr(exc, "cause", None) or exc
        if isinstance(cause, StorageNotShared):
            raise StorageNotShared(str(cause)) from None
        if fail_fast:
            raise
        return _failed(items, f"{type(cause).__name__}: {cause}")
    except ray.exceptions.RayError as exc:         # the worker died on every attempt
        if fail_fast:
            raise
        return _failed(items, f"{type(exc).__name__}: {exc}")


def _failed(items: Sequence[Item], error: str) -> UnitOutcome:
    return UnitOutcome(failures=[{"key": it.key, "error": error.splitlines()[0] if error else error,
                                  "traceback": error[-4000:]} for it in items])


# --- any list of tasks (the sweeps) ------------------------------------------------------------

def run_tasks(fn: Callable, calls: Sequence[tuple], *, on_done: Callable[[int, Any], None],
              folder: Path, address: Optional[str] = None, gpus_per_task: Optional[float] = None,
              cpus_per_task: float = 1, max_retries: int = 3) -> None:
    """`fn(*call)` for every call as Ray tasks; `on_done(index, result or exception)` as each
    finishes (a task whose worker died more than max_retries times gives its RayError).
    gpus_per_task None: 1 when the cluster has GPUs (as the benchmark's units), else 0."""
    ray = require_ray()
    started = connect(address)
    token = None
    try:
        token = check_shared_storage(folder)
        gpus = _gpus(ray, gpus_per_task)
        check_resources(ray, cpus_per_task, gpus)
        task = ray.remote(fn).options(num_cpus=cpus_per_task, num_gpus=gpus, max_retries=max_retries)
        pending = {task.remote(*call): i for i, call in enumerate(calls)}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                result = exc
            on_done(index, result)
    finally:
        if token is not None:
            token.unlink(missing_ok=True)
            records.remove_empty_tmp(folder)
        if started:
            ray.shutdown()
