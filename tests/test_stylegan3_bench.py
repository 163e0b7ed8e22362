"""`rusir bench` with a StyleGAN3 pickle as the generator: the runner, the report and the CLI take
it like any other generator (the family seam: rusir.model.family), and a batch of images equals
its images restored alone.

Batch coupling in float32: the official StyleGAN3 `modulated_conv2d` pre-normalises the styles by
ONE scalar for the whole batch (../shared/spec/stylegan3-format.md, point 14), and rusir keeps
the official behaviour. Demodulation cancels that scalar mathematically (up to the relative size
of its 1e-8), so in float32 a batch differs from its images alone only by rounding; the check
below runs in float64, where the cancellation leaves < 1e-9.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from rusir.engine.records import load_records
from rusir.engine.runner import run_bench
from rusir.report.document import write_report


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pkl(sg3t32_pkl) -> Path:
    return sg3t32_pkl


def bench(pkl: Path, out: Path, batch: int = 2, **kw):
    kw.setdefault("tasks", "upsampling@M")
    return run_bench(str(pkl), "heldout:0-1", methods="rusir", out=out, steps=(2, 2, 2),
                     metrics=("psnr", "ssim"), loss="offline", progress=False, batch=batch, device="cpu", **kw)


def test_bench_and_report_with_a_stylegan3_pickle(pkl, tmp_path):
    """Heldout faces (resized to the pickle's 32 px) restored in one batch of 2: the records
    name the pickle and its sha256, and the report writes Table 1."""
    s = bench(pkl, tmp_path)
    assert (s.done, s.failed) == (2, 0), s.failures
    config = json.loads((tmp_path / "bench.json").read_text())
    assert config["generator"] == str(pkl) and config["resolution"] == 32
    assert config["generator_sha256"] == hashlib.sha256(pkl.read_bytes()).hexdigest()
    recs = load_records(tmp_path)
    assert sorted(r["key"] for r in recs) == ["rusir/upsampling/M/0000", "rusir/upsampling/M/0001"]
    assert all(r["batch"] == 2 and set(r["phases"]) == {"W", "W+", "W++"} for r in recs)
    report = write_report(tmp_path, set_metrics=False, plots=False)
    assert report["tables"]["table1"].rows
    assert (tmp_path / "report" / "table1.csv").is_file()
    assert "| upsampling | M |" in report["markdown"]


def test_cli_bench_with_a_stylegan3_pickle(pkl, tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run(
        [sys.executable, "-m", "rusir", "bench", "--generator", str(pkl), "--images", "heldout:1",
         "--tasks", "upsampling@M", "--steps", "1,1,1", "--metrics", "psnr", "--loss", "offline", "--out", str(out),
         "--no-progress", "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 items: 1 done now" in done.stdout
    assert json.loads((out / "bench.json").read_text())["generator"] == str(pkl)


def test_a_stylegan3_batch_equals_its_images_alone_float64(pkl, tmp_path):
    """Batch 2 against batch 1, in float64, through W, W+ and W++: metrics, every phase's scores
    and latents within 1e-9, 8-bit predictions byte for byte. Fails when the style
    pre-normalisation's batch-wide scalar is not cancelled (e.g. demodulation dropped) or any
    other term mixes images."""
    a = bench(pkl, tmp_path / "b1", batch=1, dtype="float64")
    b = bench(pkl, tmp_path / "b2", batch=2, dtype="float64")
    assert (a.done, b.done, a.failed, b.failed) == (2, 2, 0, 0), (a.failures, b.failures)
    ref = {r["key"]: r for r in load_records(tmp_path / "b1")}
    got = {r["key"]: r for r in load_records(tmp_path / "b2")}
    assert set(ref) == set(got) and len(ref) == 2
    import torch
    for key, r in ref.items():
        g = got[key]
        for name, value in r["metrics"].items():
            assert abs(g["metrics"][name] - value) <= 1e-9, (key, name)
        assert set(g["phases"]) == set(r["phases"]) == {"W", "W+", "W++"}, key
        for phase, scores in r["phases"].items():
            for name, value in scores.items():
                assert abs(g["phases"][phase][name] - value) <= 1e-9, (key, phase, name)
        da, db = Path(r["_dir"]), Path(g["_dir"])
        assert (da / "prediction.png").read_bytes() == (db / "prediction.png").read_bytes(), key
        la, lb = torch.load(da / "latent.pt"), torch.load(db / "latent.pt")
        assert (la["latent"] - lb["latent"]).abs().max() <= 1e-9, key
