"""benchmarks/gpu.py end to end as a CPU smoke run (64 px, 2 steps): the record's structure and
the invariants its numbers must satisfy. What it measures on a GPU is not tested here. The run has
no time budget (`--budget-s 0`): on a busy machine it takes longer but skips nothing."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


HANG_GUARD_S = 1800    # only against a hang: the run takes about a minute on an idle CPU


def smoke_run(out: Path, *options: str) -> dict:
    """benchmarks/gpu.py on the CPU with `options`, no budget; its record."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--steps", "2", "--time-steps", "2",
           "--device", "cpu", "--channel-max", "16", "--budget-s", "0", "--out", str(out), *options]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD_S, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    [path] = out.glob("gpu_*.json")
    assert path.name.startswith("gpu_cpu") and path.stem.endswith("-smoke")
    assert path.with_suffix(".md").is_file()
    rec = json.loads(path.read_text())
    assert "CPU SMOKE RUN" in rec["note"] and "timing only" in rec["generator"]
    return rec


def test_cpu_smoke_run_writes_a_consistent_record(tmp_path):
    rec = smoke_run(tmp_path, "--resolution", "64", "--max-batch", "2",
                    "--modes", "reference,fp32,bf16", "--tasks", "inpainting,denoising")
    assert rec["family"] == "stylegan2" and "FFHQ architecture" in rec["generator"]
    assert rec["resolution"] == 64 and rec["peaks_tflops"] is None

    flops = rec["flops_per_image"]["per_phase"]
    assert 0 < flops["W"]["synthesis"] <= flops["W+"]["synthesis"] < flops["W++"]["synthesis"]
    for phase in flops.values():
        assert math.isclose(phase["step"], phase["synthesis"] + phase["loss"], rel_tol=1e-6)
    assert rec["flops_per_image"]["loss_uncached"] > flops["W"]["loss"]

    rows = rec["accuracy"]
    assert [(r["task"], r["mode"]) for r in rows] == [   # the sweep's task first
        (t, m) for t in ("denoising", "inpainting") for m in ("reference", "fp32", "bf16")]
    for r in rows + rec["speed"]:
        per_step = r["seconds_per_step"]
        assert all(v > 0 for v in per_step.values())
        expected = 3600 * r["batch"] / sum(150 * v for v in per_step.values())
        assert math.isclose(r["images_per_hour"], expected, rel_tol=1e-9)
        assert r["peak_bytes_per_image"] is None                 # no CUDA memory on the CPU
        assert math.isfinite(r["psnr0"])
    for r in rows:
        if r["mode"] == "reference":
            assert r["batch"] == 1 and "max_abs_diff" not in r
        else:
            assert 0 <= r["max_abs_diff"] < 0.5 and math.isfinite(r["dpsnr"])
    fp32 = [r for r in rows if r["mode"] == "fp32"]
    assert all(r["max_abs_diff"] == 0 for r in fp32)             # the cached target changes nothing
    assert [(r["mode"], r["batch"]) for r in rec["speed"]] == [("fp32", 1), ("fp32", 2),
                                                                ("bf16", 1), ("bf16", 2)]
    assert rec["skipped"] == [] and rec["budget_s"] == 0 and rec["seconds"] > 0   # no budget: all ran
    assert rec["summary"]["best"]["batch"] in (1, 2) and rec["gpu16"] is None


def test_cpu_smoke_run_of_the_stylegan3_family(tmp_path):
    """--family stylegan3: a random StyleGAN3-T at 32 px through the same measurements, its own
    file name (beside the StyleGAN2 record, not over it)."""
    rec = smoke_run(tmp_path, "--family", "stylegan3", "--resolution", "32", "--max-batch", "1",
                    "--modes", "reference,fp32", "--tasks", "denoising")
    assert next(tmp_path.glob("gpu_*.json")).stem.endswith("-stylegan3-smoke")
    assert rec["family"] == "stylegan3" and "StyleGAN3-T" in rec["generator"]
    assert rec["resolution"] == 32
    flops = rec["flops_per_image"]["per_phase"]
    assert 0 < flops["W"]["synthesis"] <= flops["W+"]["synthesis"] < flops["W++"]["synthesis"]
    assert [(r["mode"], r["batch"]) for r in rec["accuracy"]] == [("reference", 1), ("fp32", 1)]
    assert rec["accuracy"][1]["max_abs_diff"] == 0 and math.isfinite(rec["accuracy"][0]["psnr0"])
    assert [(r["mode"], r["batch"]) for r in rec["speed"]] == [("fp32", 1)]
