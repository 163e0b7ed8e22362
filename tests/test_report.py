"""rusir.report.tables: tables in the paper's layout, set metrics from the saved PNGs, plots."""
from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import small_generator
from rusir.engine.runner import run_bench
from rusir.report.tables import build_tables, load_records, set_metrics_for, write_report
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


# --- damaged files and old folders ------------------------------------------------------------------

def _truncated(path):
    """record.json cut inside a string, as a killed writer without atomic writes left it."""
    text = path.read_text()
    path.write_text(text[:text.index('"image"') + 5])


def test_damaged_records_and_bench_json_are_skipped_with_a_warning_naming_them(bench_dir, tmp_path):
    import shutil
    from rusir.engine.records import DamagedFileWarning
    d = tmp_path / "bench"
    shutil.copytree(bench_dir, d)
    damaged = [d / "bicubic/upsampling/M/0001/record.json"] + [
        d / f"nearest/UN/M/000{j}/record.json" for j in range(3)]
    _truncated(damaged[0])
    for path, text in zip(damaged[1:], ("", "[]", '{"key": "x"}')):
        path.write_text(text)
    config = d / "bench.json"
    config.write_text(config.read_text()[:40])
    with pytest.warns(DamagedFileWarning) as got:
        result = write_report(d, tmp_path / "r", set_metrics=False, plots=False)
    messages = [str(w.message) for w in got]
    for path in damaged + [config]:
        assert sum(str(path) in m for m in messages) == 1, (path, messages)
    cells = {(r["method"], r["task"], r["level"]): r["n"] for t in result["tables"].values() for r in t.rows}
    assert cells[("bicubic", "upsampling", "M")] == 2 and ("nearest", "UN", "M") not in cells
    assert len(cells) == 9 and "skipped 4 damaged record" in result["markdown"]
    # the command line (a process of its own: pytest would catch the warnings): the report is
    # written, each damaged file named once on stderr, no traceback
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "rusir", "report", str(d), "--no-set-metrics",
                           "--no-plots"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "| upsampling | M | 2 |" in done.stdout
    assert all(done.stderr.count(str(p)) == 1 for p in damaged + [config]), done.stderr
    assert "Traceback" not in done.stderr


def test_a_damaged_set_metric_cache_is_recomputed(bench_dir, tmp_path, monkeypatch):
    import shutil
    import rusir.metrics as metrics
    from rusir.engine.records import DamagedFileWarning
    d = tmp_path / "bench"
    shutil.copytree(bench_dir, d, ignore=shutil.ignore_patterns("report"))
    monkeypatch.setattr(metrics, "inception_features",
                        lambda x, batch_size=32, device=None: x.double().mean((2, 3)) + 1e-3 * torch.randn(
                            x.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    records = [r for r in load_records(d) if r["task"] == "UN"]
    first = set_metrics_for(d, records, names=("fid",))
    cache = d / "report" / "set_metrics.json"
    cache.write_text(cache.read_text()[:30])
    with pytest.warns(DamagedFileWarning, match=str(cache)):
        assert set_metrics_for(d, records, names=("fid",)) == first
    assert json.loads(cache.read_text())              # rewritten whole


def test_old_folders_are_still_read(tmp_path):
    """Records as the first runner (rusir/bench.py) and the first IQA study wrote them."""
    from rusir.engine.records import save_png
    first_runner = {
        "key": "rusir/upsampling/M/0000", "method": "rusir", "task": "upsampling", "level": "M",
        "category": "single", "image_index": 0, "image": "a.png", "image_path": "/x/a.png", "seed": 0,
        "degradation_seed": 7, "degradation": {}, "method_config": {"steps": [1, 1, 1]}, "seconds": 1.0,
        "restore_seconds": 0.5, "resolution": 16, "target_size": [4, 4],
        "metrics": {"accuracy_psnr": 20.0, "fidelity_psnr": 30.0}, "unavailable": {}, "info": {}}
    first_iqa = {
        "key": "rusir[loss=ssim]/upsampling/M/0000", "method": "rusir[loss=ssim]", "variant": "ssim",
        "task": "upsampling", "level": "M", "category": "single", "image_index": 0, "image": "a.png",
        "seed": 0, "status": "done", "generator": "g", "loss": {}, "steps": [1, 1, 1],
        "restore_seconds": 0.5, "metrics": {"accuracy_psnr": 22.0}, "unavailable": {},
        "naive": {"psnr": 18.0, "ssim": 0.5}, "set_metrics": {}, "set_unavailable": {}}
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for rec in (first_runner, first_iqa):
        folder = tmp_path / rec["key"]
        folder.mkdir(parents=True)
        for name in ("ground_truth", "target", "prediction", "degraded_prediction"):
            save_png(img, folder / f"{name}.png")
        (folder / "record.json").write_text(json.dumps(rec, indent=1))
    (tmp_path / "bench.json").write_text(json.dumps({"generator": "g", "images": "heldout:1", "steps": [1, 1, 1]}))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # nothing about an old folder is "damaged"
        result = write_report(tmp_path, set_metrics=False, plots=False)
    rows = result["tables"]["single_tasks"].rows
    assert [(r["method"], r["accuracy_psnr"]) for r in rows] == [("rusir", 20.0), ("rusir[loss=ssim]", 22.0)]
    assert "generator `g`" in result["markdown"]
