"""`--engine ray` (rusir.engine.cluster): a local Ray with 2 CPUs, started once for the module.

Ray runs equal local runs (same records), resume them and are resumed by them; a unit whose
worker dies once is run again and nothing is lost or left behind; a killed driver's run is
completed by the next; a batch on Ray equals single items (float64); sweeps run as tasks.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import small_generator
from rusir.engine import cluster
from rusir.engine.records import load_records
from rusir.engine.runner import run_bench

ray = pytest.importorskip("ray", reason="Ray is optional (pip install 'rusir[cluster]')")

ROOT = Path(__file__).resolve().parents[1]
LOSS = {"terms": {"l2": 1.0, "consistency": 0.1}}
TASKS = "upsampling@M,UNAP@M"


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A 2-CPU Ray for the module; the workers inherit $RUSIR_TEST_DIE_FILE (records' test hook)."""
    die = tmp_path_factory.mktemp("hook") / "die-once"
    os.environ["RUSIR_TEST_DIE_FILE"] = str(die)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield die
    ray.shutdown()
    os.environ.pop("RUSIR_TEST_DIE_FILE", None)


@pytest.fixture(scope="module")
def G():
    return small_generator(resolution=16)


def bench(G, out, engine, **kw):
    kw.setdefault("methods", "rusir,pulse")
    kw.setdefault("batch", 2)
    return run_bench(G, "heldout:3", out=out, tasks=kw.pop("tasks", TASKS), steps=(2, 2, 2),
                     baseline_steps=3, loss=LOSS, metrics=("psnr", "ssim"), progress=False,
                     engine=engine, **kw)


def same_records(a: Path, b: Path, tol: float = 1e-6) -> None:
    ra = {r["key"]: r for r in load_records(a)}
    rb = {r["key"]: r for r in load_records(b)}
    assert set(ra) == set(rb) and ra
    for key, r in ra.items():
        for name, value in r["metrics"].items():
            assert abs(rb[key]["metrics"][name] - value) <= tol, (key, name)
        for png in ("target", "prediction", "degraded_prediction"):
            assert (Path(r["_dir"]) / f"{png}.png").read_bytes() == \
                (Path(rb[key]["_dir"]) / f"{png}.png").read_bytes(), (key, png)


def clean(out: Path) -> None:
    """Nothing left behind: no temporary folder, claim or storage token."""
    assert not (out / ".tmp").exists(), sorted(p.name for p in (out / ".tmp").rglob("*"))


@pytest.fixture(scope="module")
def local_run(G, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    s = bench(G, out, "local")
    assert (s.done, s.failed) == (12, 0)
    return out


# --- runs -----------------------------------------------------------------------------------

def test_ray_equals_local_and_a_second_run_restores_nothing(local_ray, G, local_run, tmp_path):
    s = bench(G, tmp_path, "ray")
    assert (s.items, s.done, s.failed) == (12, 12, 0), s.failures
    same_records(local_run, tmp_path)
    clean(tmp_path)
    s = bench(G, tmp_path, "ray")
    assert (s.done, s.skipped) == (0, 12)
    s = bench(G, tmp_path, "local")               # and the local engine agrees
    assert (s.done, s.skipped) == (0, 12)


def test_a_worker_that_dies_once_is_retried(local_ray, G, local_run, tmp_path):
    local_ray.write_text("die")                   # the first item write kills its worker
    s = bench(G, tmp_path, "ray", max_retries=2)
    assert not local_ray.exists()                 # the hook fired (and only once)
    assert (s.done, s.failed) == (12, 0), s.failures
    same_records(local_run, tmp_path)
    clean(tmp_path)


def test_a_unit_whose_worker_always_dies_is_recorded_failed(local_ray, G, tmp_path):
    local_ray.write_text("die")
    s = bench(G, tmp_path, "ray", methods="rusir", tasks="upsampling@M", max_retries=0)
    assert not local_ray.exists()
    # units [0, 1] and [2] run side by side: the one whose worker died fails, each of its items
    assert s.failed in (1, 2) and s.done + s.failed == 3
    failed = json.loads((tmp_path / "failed.json").read_text())
    assert len(failed) == s.failed and all("died" in f["error"] for f in failed)
    clean(tmp_path)
    n = s.failed
    s = bench(G, tmp_path, "ray", methods="rusir", tasks="upsampling@M")
    assert (s.done, s.skipped, s.failed) == (n, 3 - n, 0) and not (tmp_path / "failed.json").exists()


def test_local_and_ray_resume_each_other(local_ray, G, local_run, tmp_path):
    s = bench(G, tmp_path, "local", max_items=3)  # an interrupted local run (a unit cut in two)
    assert (s.done, s.remaining) == (3, 9)
    s = bench(G, tmp_path, "ray")
    assert (s.done, s.skipped) == (9, 3)
    same_records(local_run, tmp_path)
    clean(tmp_path)


# The killed driver's units: the first two run, every later one waits (polling, in its worker)
# until the driver is gone, so the driver is killed with exactly two items written however slow
# the machine is. `cluster._unit_task` is looked up when the run starts, so this one is used.
GATED_DRIVER = """
import os, time
from rusir.engine import cluster
from rusir.engine.runner import run_bench
DRIVER, TICKETS, unit_task = os.getpid(), {tickets!r}, cluster._unit_task

def gated(spec, items, fail_fast):
    n = 0
    while True:                               # ticket n: the n-th unit to start
        try:
            os.close(os.open(os.path.join(TICKETS, str(n)), os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            n += 1
    while n >= 2:
        try:
            os.kill(DRIVER, 0)
        except ProcessLookupError:
            raise RuntimeError("the driver is gone")
        time.sleep(0.1)
    return unit_task(spec, items, fail_fast)

cluster._unit_task = gated
run_bench({path!r}, 'heldout:3', out={out!r}, tasks={tasks!r}, methods='rusir,pulse',
          steps=(2, 2, 2), baseline_steps=3, loss={loss!r}, metrics=('psnr', 'ssim'),
          progress=False, batch=1, engine='ray', address='auto')
"""


def test_a_killed_driver_is_completed_by_the_next_run(local_ray, G, local_run, tmp_path):
    """A driver process joins this Ray, is killed once two items are written (the others wait for
    it: GATED_DRIVER), and a re-run here completes the rest: nothing missing, nothing left behind,
    records as the local run's. Event-driven: the wait has a deadline only against a hang."""
    from rusir.model.checkpoint import save_generator
    path = save_generator(G, tmp_path / "g.safetensors")
    out, tickets = tmp_path / "out", tmp_path / "tickets"
    tickets.mkdir()
    code = GATED_DRIVER.format(tickets=str(tickets), path=str(path), out=str(out), tasks=TASKS,
                               loss=LOSS)
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    env.pop("RUSIR_TEST_DIE_FILE", None)
    driver = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)
    hang_guard = time.monotonic() + 1800
    try:
        while len(list(out.rglob("record.json"))) < 2 and driver.poll() is None:
            assert time.monotonic() < hang_guard, "the driver wrote no two records in 30 minutes"
            time.sleep(0.05)
        assert driver.poll() is None, "the driver ended before it was killed"
    finally:
        driver.kill()
        driver.wait()
    written = len(list(out.rglob("record.json")))
    assert written == 2, written
    s = run_bench(str(path), "heldout:3", out=out, tasks=TASKS, methods="rusir,pulse",
                  steps=(2, 2, 2), baseline_steps=3, loss=LOSS, metrics=("psnr", "ssim"),
                  progress=False, batch=2, engine="ray")
    assert s.failed == 0 and s.skipped >= written and s.done + s.skipped == 12
    same_records(local_run, out)
    clean(out)


def test_an_item_claimed_by_a_live_run_is_left_to_it_and_counted_busy(local_ray, G, tmp_path):
    """As the local engine (tests/test_records.py): an item another live run holds is tried
    again at the end, then left to it and counted busy -- never dropped silently; once its
    owner is dead, the next run takes it over."""
    import socket
    from rusir.data import claims
    from rusir.engine import records
    key = "rusir/upsampling/M/0001"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert claims.claim_item(tmp_path, key, f"{socket.gethostname()}-{live.pid}+x")
        s = bench(G, tmp_path, "ray", methods="rusir", tasks="upsampling@M")
        assert (s.done, s.busy, s.failed) == (2, 1, 0) and "1 busy" in s.line()
        assert not records.is_finished(tmp_path, key)
    finally:
        live.kill()
        live.wait()
    s = bench(G, tmp_path, "ray", methods="rusir", tasks="upsampling@M")
    assert (s.done, s.skipped, s.busy) == (1, 2, 0) and records.is_finished(tmp_path, key)
    clean(tmp_path)


def test_a_batch_on_ray_equals_single_items_float64(local_ray, G, tmp_path):
    s = bench(G, tmp_path / "one", "local", batch=1, dtype="float64")
    t = bench(G, tmp_path / "three", "ray", batch=3, dtype="float64")
    assert s.done == t.done == 12
    same_records(tmp_path / "one", tmp_path / "three", tol=1e-9)
    assert {r["batch"] for r in load_records(tmp_path / "three")} == {3}


def test_ray_and_local_run_the_same_repeats(local_ray, G, tmp_path):
    """--repeats on Ray: the same items, seeds and jitter (each record's config) as locally."""
    kw = dict(methods="rusir,pulse", tasks="upsampling@M", repeats=2)
    s = bench(G, tmp_path / "ray", "ray", **kw)
    assert (s.items, s.done, s.failed) == (12, 12, 0), s.failures
    bench(G, tmp_path / "local", "local", **kw)
    same_records(tmp_path / "local", tmp_path / "ray")
    local = {r["key"]: r for r in load_records(tmp_path / "local")}
    for rec in load_records(tmp_path / "ray"):
        assert (rec["repeat"], rec["config"]) == (local[rec["key"]]["repeat"], local[rec["key"]]["config"])
    assert sum(r["key"].endswith("-r1") and r["config"].get("jitter", 0) > 0
               for r in load_records(tmp_path / "ray")) == 3          # RUSIR's repeat 1



def test_a_stylegan3_pickle_on_ray_equals_local(local_ray, tmp_path, sg3t32_pkl):
    """The tiny official-format StyleGAN3-T (32 px) by its path: one item, RUSIR, on both engines:
    the same records (metrics, PNGs) and the pickle named in each configuration."""
    pkl = sg3t32_pkl
    for engine in ("local", "ray"):
        s = run_bench(str(pkl), "heldout:1", out=tmp_path / engine, methods="rusir",
                      tasks="upsampling@M", steps=(1, 1, 1), loss=LOSS, metrics=("psnr", "ssim"),
                      progress=False, engine=engine, fail_fast=True)
        assert (s.done, s.failed) == (1, 0), s.failures
    same_records(tmp_path / "local", tmp_path / "ray")
    (record,) = load_records(tmp_path / "ray")
    assert record["config"]["generator"] == str(pkl)
    clean(tmp_path / "ray")

# --- shared storage, Ray missing --------------------------------------------------------------

def test_workers_that_do_not_see_the_folder_are_refused(local_ray, tmp_path):
    with pytest.raises(OSError, match="shared by every node"):
        cluster.check_nodes_see(tmp_path / "no-such-token", "x")
    token = cluster.check_shared_storage(tmp_path)
    assert token.is_file() and token.parent == tmp_path / ".tmp"
    from rusir.engine.unit import Job
    job = Job(None, {}, {}, tmp_path)
    spec = cluster.WorkerSpec("k", job, None, False, (str(tmp_path / "elsewhere"), "x"))
    with pytest.raises(OSError, match="shared storage"):
        cluster._worker_job(spec)


def test_a_storage_check_that_fails_leaves_no_token_and_raises(monkeypatch, tmp_path):
    def unseen(token, text):
        raise OSError("the output folder must be shared by every node")
    monkeypatch.setattr(cluster, "check_nodes_see", unseen)
    with pytest.raises(OSError, match="shared by every node"):
        cluster.check_shared_storage(tmp_path)
    assert not any((tmp_path / ".tmp").iterdir())


def test_gpus_per_unit_as_given_or_one_when_the_cluster_has_gpus():
    from types import SimpleNamespace
    with_gpus = SimpleNamespace(cluster_resources=lambda: {"CPU": 8, "GPU": 2})
    cpu_only = SimpleNamespace(cluster_resources=lambda: {"CPU": 8})
    assert cluster._gpus(with_gpus, None) == 1.0 and cluster._gpus(cpu_only, None) == 0.0
    assert cluster._gpus(with_gpus, 0.5) == 0.5 and cluster._gpus(cpu_only, 0) == 0.0
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match="gpus_per_unit"):
            cluster._gpus(with_gpus, bad)


def rusir_bench(tmp_path, *options: str, address: str) -> subprocess.CompletedProcess:
    """`rusir bench --engine ray` in a process of its own: a regression waits forever, and the
    hang guard ends it (a refusal takes seconds)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RUSIR_TEST_DIE_FILE")}
    return subprocess.run([sys.executable, "-m", "rusir", "bench", "--images", "heldout:1", "--tasks",
                           "denoising@XS", "--out", str(tmp_path / "o"), "--engine", "ray",
                           "--address", address, "--no-progress", *options],
                          capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**env, "PYTHONPATH": str(ROOT)})


def one_line(run: subprocess.CompletedProcess, *words: str) -> None:
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "error:" in lines[0], run.stderr[-3000:]
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_an_address_where_nothing_listens_fails_in_one_line(tmp_path):
    with socket.socket() as free:          # a free local port, closed again: nothing listens
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    one_line(rusir_bench(tmp_path, address=f"127.0.0.1:{port}"), f"127.0.0.1:{port}", "no Ray cluster")
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        cluster.check_reachable(f"ray://127.0.0.1:{port}")


@pytest.mark.parametrize("options, words", [
    (("--gpus-per-unit", "1"), ("--gpus-per-unit 1", "GPUs", "has 0 in all")),
    (("--cpus-per-unit", "3"), ("--cpus-per-unit 3", "CPUs", "has 2 in all"))])
def test_resources_the_cluster_lacks_fail_in_one_line(local_ray, tmp_path, options, words):
    """This module's Ray has 2 CPUs and no GPU: asking for more is refused, not waited for."""
    one_line(rusir_bench(tmp_path, *options, address=ray.get_runtime_context().gcs_address), *words)


def test_ray_missing_is_one_line_naming_the_install(monkeypatch, tmp_path, capsys):
    from rusir import cli
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'rusir\[cluster\]'"):
        cluster.require_ray()
    code = cli.main(["bench", "--images", "heldout:1", "--tasks", "denoising@XS", "--out",
                     str(tmp_path / "o"), "--engine", "ray", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "rusir[cluster]" in err


# --- sweeps -----------------------------------------------------------------------------------

def fake_execute(notebook, output, parameters, cwd, kernel_name):
    """Stands in for papermill: writes the results file a notebook would (in the worker)."""
    out = Path(parameters["out_dir"])
    if parameters["a"] == 3:
        raise RuntimeError("set three fails")
    (out / "result.json").write_text(json.dumps({"a": parameters["a"], "pid": os.getpid()}))


def test_sweep_sets_run_as_ray_tasks(local_ray, tmp_path):
    pytest.importorskip("papermill", reason="sweeps need papermill (the notebooks extra)")
    from ray import cloudpickle
    from test_sweep import _notebook
    from rusir.sweep import run_sweep, set_status
    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import tests/
    nb = _notebook(tmp_path / "nb.ipynb")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"notebook: {nb}\nname: 'a{{a}}'\ngrid: {{a: [1, 2, 3]}}\n")
    out = tmp_path / "runs"
    logs = []
    statuses = run_sweep(sweep, out, execute=fake_execute, engine="ray", log=logs.append)
    assert statuses == {"a1": "done", "a2": "done", "a3": "failed"}
    assert any("FAILED: RuntimeError: set three fails" in line for line in logs)
    pids = {json.loads((out / f"a{a}" / "result.json").read_text())["pid"] for a in (1, 2)}
    assert os.getpid() not in pids                 # ran in Ray workers
    assert [set_status(out / f"a{a}") for a in (1, 2, 3)] == ["done", "done", "failed"]
    statuses = run_sweep(sweep, out, execute=fake_execute, engine="ray", log=logs.append)
    assert statuses == {"a1": "skipped", "a2": "skipped", "a3": "failed"}
    assert not (out / ".tmp").exists()


def test_a_loaded_generators_own_defaults_reach_the_ray_workers(local_ray, tmp_path):
    """A generator object with its own defaults (schedule, rates, tau, loss preset: GeneratorInfo)
    restores on a Ray worker as it does here: the records' configurations are equal."""
    from rusir.model.generators import GeneratorInfo, set_info
    own = GeneratorInfo("tuned16", "test", 16, default_loss="offline", lr_scale=3.0, steps=(1, 1, 1),
                        lrs=(0.1, 0.05, 0.02), discrepancy=2.0, sha256="ab" * 32)
    G = set_info(small_generator(resolution=16), own)
    for engine in ("local", "ray"):
        s = run_bench(G, "heldout:2", out=tmp_path / engine, methods="rusir", tasks="denoising@M",
                      metrics=("psnr",), progress=False, engine=engine, fail_fast=True)
        assert (s.done, s.failed) == (2, 0), s.failures
    configs = {engine: {r["key"]: r["config"] for r in load_records(tmp_path / engine)}
               for engine in ("local", "ray")}
    assert configs["ray"] == configs["local"]
    for config in configs["ray"].values():
        assert (config["lr_scale"], config["discrepancy"], config["loss"]) == (3.0, 2.0, "offline")
        assert (config["lrs"], config["generator_sha256"]) == ([0.1, 0.05, 0.02], "ab" * 32)
