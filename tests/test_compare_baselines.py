"""scripts/compare_baselines.py: a configuration of the runner; its table is a summary of records."""
import json

import pytest

from conftest import load_script, small_generator
from rusir.engine.plan import bind_method
from rusir.engine.records import load_records


@pytest.fixture(scope="module")
def cb():
    return load_script("scripts/compare_baselines.py", "compare_baselines")


def _rec(method, task, j, psnr, ssim, seconds, info=None):
    return {"method": method, "task": task, "level": "M", "image_index": j, "degradation_seed": 10 + j,
            "metrics": {"accuracy_psnr": psnr, "accuracy_ssim": ssim},
            "naive": {"psnr": 1.0, "ssim": 0.1}, "restore_seconds": seconds,
            "config": {"steps": 7}, "info": info or {}}


def test_cell_is_a_hand_computation_of_known_records(cb):
    records = [_rec("pulse", "denoising", 1, 20.0, 0.6, 3.0, {"reached_eps": False}),
               _rec("rusir", "denoising", 1, 22.0, 0.7, 2.0), _rec("rusir", "denoising", 0, 18.0, 0.5, 4.0),
               _rec("pulse", "denoising", 0, 16.0, 0.4, 1.0, {"reached_eps": True}),
               _rec("rusir", "upsampling", 0, 99.0, 0.9, 9.0)]     # another cell: not counted
    cell = cb.cell_entry(records, ["rusir", "pulse", "lbrgm"], "denoising", "M")
    assert cell["task"] == "denoising" and cell["degradation_seeds"] == [10, 11]
    assert list(cell["methods"]) == ["rusir", "pulse"]               # lbrgm has no records
    rusir, pulse = cell["methods"]["rusir"], cell["methods"]["pulse"]
    assert (rusir["psnr"], rusir["ssim"], rusir["seconds_per_image"]) == (20.0, 0.6, 3.0)
    assert rusir["psnr_per_image"] == [18.0, 22.0] and "reached_eps" not in rusir
    assert (pulse["psnr"], pulse["ssim"], pulse["seconds_per_image"]) == (18.0, 0.5, 2.0)
    assert pulse["reached_eps"] == [True, False] and pulse["config"] == {"steps": 7}
    md = cb.markdown({"generator": "g", "resolution": 16, "n_images": 2, "loss": "offline",
                      "rusir_steps": [1, 1, 1], "baseline_steps": None, "lbrgm_candidates": None,
                      "machine": "m", "methods": ["rusir", "pulse"], "cells": [cell]})
    assert "| denoising | M | 20.00 / 0.600 (3.0 s) | 18.00 / 0.500 (2.0 s) |" in md


def test_script_runs_through_the_runner_and_resumes(cb, tmp_path, monkeypatch):
    from rusir.model.checkpoint import save_generator
    gen = save_generator(small_generator(resolution=16), tmp_path / "tiny.safetensors")
    args = ["--generator", str(gen), "--loss", "offline", "--images", "2", "--tasks", "denoising",
            "--levels", "M", "--methods", "rusir,lbrgm", "--rusir-steps", "1,1,1",
            "--baseline-steps", "1", "--lbrgm-candidates", "2", "--out", str(tmp_path / "table"),
            "--records", str(tmp_path / "records")]
    record = cb.main(args)
    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved == json.loads(json.dumps(record))
    recs = load_records(record["records"])
    assert sorted(r["key"] for r in recs) == [f"{m}/denoising/M/000{j}" for m in ("lbrgm", "rusir")
                                              for j in (0, 1)]
    assert all(r["config"]["init_candidates"] == 2 for r in recs if r["method"] == "lbrgm")
    (cell,) = saved["cells"]
    for m in ("rusir", "lbrgm"):
        mine = sorted((r for r in recs if r["method"] == m), key=lambda r: r["image_index"])
        psnrs = [r["metrics"]["accuracy_psnr"] for r in mine]
        assert cell["methods"][m]["psnr_per_image"] == psnrs
        assert cell["methods"][m]["psnr"] == pytest.approx(sum(psnrs) / 2)
        assert cell["methods"][m]["ssim"] == pytest.approx(sum(r["metrics"]["accuracy_ssim"] for r in mine) / 2)
    assert "| denoising | M |" in (tmp_path / "table.md").read_text()
    # a re-run finds every item finished: no method is called, the table is the same
    monkeypatch.setattr(cb, "get_method", lambda name: pytest.fail(f"{name} called"), raising=True)
    # (stand-ins with the same bound options: bench.json's method_options must agree to resume)
    monkeypatch.setattr(cb, "methods_of", lambda names, n=None: {
        m: bind_method(_never, init_candidates=n) if m == "lbrgm" and n else _never for m in names})
    again = cb.main(args)
    assert again["cells"] == record["cells"]


def _never(*args, **kwargs):
    raise AssertionError("a finished item was run again")
