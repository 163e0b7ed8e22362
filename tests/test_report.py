"""rusir.evaluation.report: tables in the paper's layout, set metrics from the saved PNGs, plots."""
from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import small_generator
from rusir.evaluation.runner import run_bench
from rusir.evaluation.report import build_tables, load_records, set_metrics_for, write_report
from rusir.inversion.restore import RestoreResult


def bicubic(G, target, degradation, loss=None, seed=0, steps=None, progress=True):
    s = G.img_resolution
    return RestoreResult(F.interpolate(target, size=(s, s), mode="bicubic", align_corners=False), {})


def nearest(G, target, degradation, loss=None, seed=0, steps=None, progress=True):
    s = G.img_resolution
    return RestoreResult(F.interpolate(target, size=(s, s), mode="nearest"), {})


TASKS = "upsampling@XS,upsampling@M,denoising@S,UN@M,UNAP@M"


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    s = run_bench(small_generator(resolution=16), "heldout:3", {"bicubic": bicubic, "nearest": nearest},
                  TASKS, out, metrics=("psnr", "ssim"), progress=False)
    assert s.done == 2 * 5 * 3
    return out


def test_tables_layout(bench_dir):
    records = load_records(bench_dir)
    assert len(records) == 30 and all("_dir" in r for r in records)
    tables = build_tables(records, set_metrics=False)
    single, composed = tables["single_tasks"], tables["composed_tasks"]
    assert [(r["method"], r["task"], r["level"]) for r in single.rows] == [
        (m, t, lv) for m in ("bicubic", "nearest")
        for t, lv in (("upsampling", "XS"), ("upsampling", "M"), ("denoising", "S"))]
    assert [(r["method"], r["task"]) for r in composed.rows] == [
        ("bicubic", "UN"), ("bicubic", "UNAP"), ("nearest", "UN"), ("nearest", "UNAP")]
    assert single.columns[:4] == ["method", "task", "level", "n"]
    assert single.columns[4:] == ["accuracy_psnr", "accuracy_ssim", "fidelity_psnr", "fidelity_ssim"]
    assert all(r["n"] == 3 for r in single.rows + composed.rows)
    # a cell's value is the mean of its records
    cell = [r for r in records if r["key"].startswith("bicubic/upsampling/M/")]
    expect = sum(r["metrics"]["accuracy_psnr"] for r in cell) / 3
    assert single.rows[1]["accuracy_psnr"] == pytest.approx(expect)
    # upsampling gets harder with the level
    assert single.rows[0]["accuracy_psnr"] > single.rows[1]["accuracy_psnr"]


def test_write_report_files(bench_dir, tmp_path):
    result = write_report(bench_dir, tmp_path, set_metrics=False)
    md = (tmp_path / "single_tasks.md").read_text()
    assert "### bicubic" in md and "### nearest" in md
    assert "| upsampling | XS | 3 |" in md and "accuracy PSNR ↑" in md
    assert "| UNAP | 3 |" in (tmp_path / "composed_tasks.md").read_text()
    with open(tmp_path / "single_tasks.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and set(rows[0]) >= {"method", "task", "level", "n", "accuracy_psnr"}
    for metric in ("accuracy_psnr", "fidelity_ssim"):
        assert (tmp_path / f"metric_vs_level_{metric}.png").stat().st_size > 1000
    assert result["markdown"].count("### bicubic") == 2


def test_set_metrics_from_pngs_and_cache(bench_dir, monkeypatch):
    import rusir.metrics as metrics
    calls = []

    def fake_features(images, batch_size=32, device=None):  # cheap stand-in for Inception
        calls.append(images.shape[0])
        x = images.double()
        return torch.cat([x.mean((2, 3)), x.std((2, 3)), x.amax((2, 3))], 1) + 1e-3 * torch.randn(
            images.shape[0], 9, dtype=torch.float64, generator=torch.Generator().manual_seed(len(calls)))

    monkeypatch.setattr(metrics, "inception_features", fake_features)
    records = load_records(bench_dir)
    values = set_metrics_for(bench_dir, records, names=("patch_fid", "fid", "kid", "is"), crops=4)
    v, reasons = values[("bicubic", "upsampling", "M")]
    assert v["patch_fid"] is not None and v["fid"] is not None and v["kid"] is not None
    assert v["patch_fid_crops"] == [8, 4]       # half the 16-px side, 4 crops per image
    assert v["is"] is None and "is" in reasons  # no classifier logits offline: n/a with a reason
    n_calls = len(calls)
    # the reference (ground-truth) features are shared by cells with the same images
    assert n_calls < 4 * len(values)
    cached = set_metrics_for(bench_dir, records, names=("patch_fid", "fid", "kid", "is"), crops=4)
    assert len(calls) == n_calls and cached == values
    assert json.loads((bench_dir / "report" / "set_metrics.json").read_text())
    tables = build_tables(records, set_metrics=values)
    assert {"patch_fid", "fid", "kid", "is"} <= set(tables["single_tasks"].columns)
    assert "is" in tables["single_tasks"].notes
    assert "n/a" in tables["single_tasks"].to_markdown()


def test_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_records(tmp_path / "missing")
    with pytest.raises(ValueError, match="no finished items"):
        write_report(tmp_path)
    with pytest.raises(ValueError, match="set metric"):
        set_metrics_for(None, [], names=("bogus",))
