"""rusir.train: `--resume` is bit-exact, SIGTERM saves a resumable state, state writes are atomic,
and a state saved on another device resumes (its RNG states come back as CPU tensors).

Why these: the shipped generator was trained over many resumed sessions (CPU, then an H200), so a
resume that silently forgets an RNG, an optimiser moment or a counter would bend the trajectory
without any error, and a kill during a save must never cost the finished work.
Everything runs a tiny G/D (8 channels, 16 px, batch 2) in about a second per run.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rusir.train import trainer as train
from rusir.train.trainer import capture_rng, load_run_state, restore_rng, save_run_state, stop_requests

BATCH = 2
CPU = torch.device("cpu")
# Compared bit for bit between runs; "wall" (seconds) and "args" legitimately differ.
EXACT_KEYS = ("G", "G_ema", "D", "opt_G", "opt_D", "step", "nimg", "rng", "data_rng", "cuda_rng")


def tiny_args(data: Path, out: Path, steps: int, *extra: str, start_step: int = 0) -> list[str]:
    """CLI arguments of a tiny run that stops after `steps` steps in total.

    R1 every 3 steps and an EMA half-life ramped over the first images make the lazy-R1 counter
    and the images-seen bookkeeping matter across a resume at step 2. `--kimg` sits half a batch
    past the last step, so float rounding cannot add or drop a step.
    """
    kimg = ((start_step + steps) * BATCH - BATCH / 2) / 1000
    return ["--data", str(data), "--out", str(out), "--kimg", repr(kimg), "--batch", str(BATCH),
            "--z-dim", "8", "--w-dim", "8", "--map-layers", "1", "--g-base", "64", "--g-max", "8",
            "--d-base", "64", "--d-max", "8", "--r1-every", "3", "--ema-kimg", "0.004",
            "--ema-rampup", "0.5", "--snap-every", "100000", "--log-every", "1",
            "--threads", str(torch.get_num_threads()), "--device", "cpu", *extra]


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths at which two nested (dict/list/tensor/scalar) states are not bit-identical."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(map(str, a.keys() ^ b.keys()))}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [path]
    return [] if type(a) is type(b) and a == b else [f"{path}: {a!r} != {b!r}"]


def assert_same_run(run_a: Path, run_b: Path) -> None:
    """state.pt (weights, optimisers, RNGs, counters) and G_ema.safetensors are bit-identical."""
    a, b = load_run_state(run_a / "state.pt"), load_run_state(run_b / "state.pt")
    diff = [d for k in EXACT_KEYS for d in differences(a[k], b[k], k)]
    assert not diff, f"{len(diff)} differences, first: {diff[:8]}"
    g_a, g_b = load_file(run_a / "G_ema.safetensors"), load_file(run_b / "G_ema.safetensors")
    assert not differences(g_a, g_b, "G_ema.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 4-step run straight, and one of 2 steps then --resume'd for 2 more (another --seed:
    after a resume nothing may depend on it). `step2` keeps the state saved after step 2."""
    root = tmp_path_factory.mktemp("train")
    data = root / "images.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8))
    straight, split = root / "straight", root / "split"
    train.main(tiny_args(data, straight, 4))
    train.main(tiny_args(data, split, 2))
    shutil.copy(split / "state.pt", root / "step2.pt")
    train.main(tiny_args(data, split, 2, "--resume", "--seed", "7", start_step=2))
    return dict(data=data, straight=straight, split=split, step2=root / "step2.pt")


def test_resume_is_bit_identical_to_a_straight_run(runs: dict[str, Path]) -> None:
    st = load_run_state(runs["split"] / "state.pt")
    assert (st["step"], st["nimg"]) == (4, 4 * BATCH)
    logged = [json.loads(line)["step"] for line in (runs["split"] / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]  # the resumed half continued the count, no step repeated
    assert_same_run(runs["split"], runs["straight"])


def test_the_exactness_check_sees_a_single_bit(runs: dict[str, Path], tmp_path: Path) -> None:
    """Guards the test above against comparing nothing: one flipped Adam moment is reported."""
    twin = tmp_path / "twin"
    shutil.copytree(runs["straight"], twin)
    st = load_run_state(twin / "state.pt")
    moment = next(iter(st["opt_D"]["state"].values()))["exp_avg_sq"]
    moment.view(-1)[0] = torch.nextafter(moment.view(-1)[0], torch.tensor(1.0))
    torch.save(st, twin / "state.pt")
    with pytest.raises(AssertionError, match="opt_D"):
        assert_same_run(twin, runs["straight"])


# --- SIGTERM ---------------------------------------------------------------------------------

def sigterm_after_first_step(log: Path, sent: list[bool], timeout: float = 1800) -> None:
    """Send SIGTERM to this process once `log` records a step (polling, no fixed sleep; the
    timeout only guards against a hang, however slow a busy machine's first step)."""
    deadline = time.monotonic() + timeout
    while not (log.exists() and log.stat().st_size > 0):
        if time.monotonic() > deadline:
            return  # the run then goes to its end and the test fails on its step count
        time.sleep(0.02)
    sent.append(True)
    os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_every_finished_step_and_resume_continues(runs: dict[str, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """A real SIGTERM, delivered to this process while `main()` trains in it (a subprocess would
    spend most of the test's time importing torch). The run is 300 steps long: stopping after a
    few proves the signal ended it; `stray` catches a SIGTERM that `main()` did not handle."""
    out = tmp_path / "run"
    sent: list[bool] = []
    stray: list[bool] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: stray.append(True))  # never kill pytest
    try:
        sender = threading.Thread(target=sigterm_after_first_step, args=(out / "log.jsonl", sent))
        sender.start()
        train.main(tiny_args(runs["data"], out, 300))
        sender.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sent and not stray, "main() did not handle the SIGTERM"
    assert "done:" in capsys.readouterr().out  # it left through the normal end, after saving
    st = load_run_state(out / "state.pt")
    logged = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert 1 <= st["step"] < 300
    assert st["step"] == logged[-1] and st["nimg"] == st["step"] * BATCH  # no finished step lost
    assert not (out / "state.pt.tmp").exists()

    train.main(tiny_args(runs["data"], out, 1, "--resume", start_step=st["step"]))
    resumed = load_run_state(out / "state.pt")
    assert (resumed["step"], resumed["nimg"]) == (st["step"] + 1, st["nimg"] + BATCH)
    assert differences(resumed["G"], st["G"])  # it trained on, from the saved weights


def test_stop_requests_catches_signals_and_restores_the_handlers() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    with stop_requests() as stop:
        for sig in before:
            assert signal.getsignal(sig) is not before[sig]
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # what delivery would call
        assert stop == [True]
    assert {sig: signal.getsignal(sig) for sig in before} == before  # Ctrl+C works again


# --- atomic, durable state writes --------------------------------------------------------------

def test_a_write_killed_midway_keeps_the_previous_state(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "state.pt"
    save_run_state({"step": 1, "w": torch.arange(1000.0)}, path)

    def killed_midway(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        """torch.save writing the start of a zip, then stopped by a signal or crash."""
        with open(f, "wb") if isinstance(f, (str, os.PathLike)) else contextlib.nullcontext(f) as out:
            out.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        save_run_state({"step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    st = load_run_state(path)
    assert st["step"] == 1 and torch.equal(st["w"], torch.arange(1000.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]  # no temporary left over


def test_a_state_is_on_disk_before_it_replaces_the_previous_one(tmp_path: Path, monkeypatch) -> None:
    """Durability after a power cut needs fsync(file) -> rename -> fsync(folder), in this order."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    proc_fd = Path("/proc/self/fd")  # Linux: names what an fd is open on

    def fsync(fd: int) -> None:
        events.append(f"fsync {(proc_fd / str(fd)).resolve().name}" if proc_fd.is_dir() else "fsync")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(f"replace {Path(src).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_run_state({"step": 3}, tmp_path / "state.pt")
    monkeypatch.undo()
    if proc_fd.is_dir():
        assert events == ["fsync state.pt.tmp", "replace state.pt.tmp", f"fsync {tmp_path.resolve().name}"]
    else:
        assert events[:2] == ["fsync", "replace state.pt.tmp"]


# --- RNG states and devices --------------------------------------------------------------------

def test_restore_rng_rewinds_every_stream_a_step_draws_from() -> None:
    with torch.random.fork_rng(devices=[]):
        data_gen = torch.Generator().manual_seed(3)
        saved = capture_rng(data_gen, CPU)
        assert saved["cuda_rng"] is None
        expected = torch.rand(5), torch.rand(5, generator=data_gen)
        torch.rand(2), torch.rand(2, generator=data_gen)  # both streams move on
        restore_rng(saved, data_gen, CPU)
        assert torch.equal(torch.rand(5), expected[0])
        assert torch.equal(torch.rand(5, generator=data_gen), expected[1])


_TAG_AS: list[str] = []  # while non-empty, torch.save tags CPU storages with this location


def _foreign_tag(storage: Any) -> str | None:
    return _TAG_AS[0] if _TAG_AS and storage.device.type == "cpu" else None


def save_as_if_on(device: str, obj: Any, path: Path) -> None:
    """torch.save `obj` with its storages tagged `device`, as a run on that device writes them."""
    if not getattr(save_as_if_on, "registered", False):
        # Priority 1 runs before the CPU tagger (10); returning None defers to the real taggers.
        torch.serialization.register_package(1, _foreign_tag, lambda storage, location: None)
        save_as_if_on.registered = True
    _TAG_AS.append(device)
    try:
        torch.save(obj, path)
    finally:
        _TAG_AS.clear()


def test_a_state_saved_on_cuda_resumes_exactly_on_cpu(runs: dict[str, Path], tmp_path: Path) -> None:
    """The CPU-side half of cross-device resume: every tensor (the RNG states too) comes back on
    the CPU whatever device wrote it, and the run continues bit for bit."""
    out = tmp_path / "from_gpu"
    out.mkdir()
    st = load_run_state(runs["step2"])
    st["cuda_rng"] = torch.cuda.get_rng_state() if torch.cuda.is_available() else st["rng"].clone()
    save_as_if_on("cuda:0", st, out / "state.pt")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # the file really is a GPU run's state
            torch.load(out / "state.pt", weights_only=False)
    loaded = load_run_state(out / "state.pt")
    assert all(loaded[k].device == CPU and loaded[k].dtype == torch.uint8 for k in ("rng", "data_rng"))
    assert all(t.device == CPU for t in loaded["G"].values())

    train.main(tiny_args(runs["data"], out, 2, "--resume", start_step=2))
    assert_same_run(out, runs["straight"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CPU -> CUDA resume needs a CUDA device")
def test_a_cpu_state_resumes_on_cuda(runs: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    """A CPU run resumed on CUDA: the RNG setters get CPU tensors and training continues."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)  # main() sets it
    out = tmp_path / "to_gpu"
    out.mkdir()
    shutil.copy(runs["step2"], out / "state.pt")
    train.main(tiny_args(runs["data"], out, 2, "--resume", "--device", "cuda", start_step=2))
    st = load_run_state(out / "state.pt")
    assert (st["step"], st["nimg"]) == (4, 4 * BATCH)
    assert st["cuda_rng"] is not None  # saved from the CUDA RNG this time
    assert all(torch.isfinite(t).all() for t in st["G_ema"].values())
    assert differences(st["G"], load_run_state(runs["step2"])["G"])  # it trained on the GPU
