"""rusir.studies.ablation: the design-choice variants as data, run as methods of the benchmark
runner, and read back from its records."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import small_generator
from rusir.engine.records import load_records
from rusir.report import summarise
from rusir.studies.ablation import (ADAM_LR_SCALES, CONFIGS, ablation_methods, ablation_records,
                                    build_loss_for, configs, method_name, method_of, run_ablation,
                                    tuned)


def test_groups_and_budgets():
    assert [c.name for c in configs("phases")] == ["W", "W+", "W++", "W->W+", "W->W+->W++"]
    assert [c.name for c in configs("loss")] == ["multiresolution", "single scale"]
    assert [c.optimizer for c in configs("optimizer")] == ["ngd"] + ["adam"] * len(ADAM_LR_SCALES)
    assert len(configs()) == len(CONFIGS) == len(configs(["phases", "optimizer", "loss"]))
    for c in configs("phases"):              # the same total step budget for every phase subset
        kw = c.restore_kwargs(150)
        assert sum(kw["steps"]) == 450 and "lrs" not in kw  # each space's rate: restore's schedule
    assert CONFIGS["W->W+"].restore_kwargs(150)["steps"] == (225, 225)
    assert CONFIGS["W"].restore_kwargs(1)["steps"] == (3,)
    assert CONFIGS["Adam x0.1"].restore_kwargs(10)["lr_scale"] == 0.1
    with pytest.raises(ValueError, match="unknown ablation group"):
        configs("phase")


def test_loss_scales():
    G = small_generator()
    multi = build_loss_for(G, CONFIGS["multiresolution"], "offline")
    single = build_loss_for(G, CONFIGS["single scale"], "offline")
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    a, b = multi(x, y), single(x, y)
    assert a.shape == b.shape == (2,) and not torch.allclose(a, b)


def test_identical_variants_are_one_method():
    assert method_name(CONFIGS["W"]) == "rusir[ablation=W]" == method_name("W")
    full = method_name("W->W+->W++")
    assert method_of(CONFIGS["NGD"]) == method_of(CONFIGS["multiresolution"]) == full
    assert method_of(CONFIGS["single scale"]) == method_name("single scale")
    G = small_generator()
    methods = ablation_methods(G, configs(), steps=2, loss="offline")
    assert len(methods) == len(CONFIGS) - 2 and full in methods
    w = methods[method_name("W")]     # the config's options are bound (they win over the run's)
    assert w.fixed["spaces"] == ("W",) and w.fixed["steps"] == (6,)
    assert methods[method_name("Adam x0.3")].fixed["optimizer"] == "adam"
    assert methods[method_name("single scale")].fixed["loss"].multiresolution is False
    with pytest.raises(ValueError, match="ablation steps"):
        ablation_methods(G, configs(), steps=0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The whole ablation at one step on one task and level, two images: (folder, first run)."""
    out = tmp_path_factory.mktemp("ablation") / "run"
    G = small_generator(resolution=32)
    truth = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    summary = run_ablation(G, truth, ["denoising"], ["S"], steps=1, out=out, loss="offline",
                           generator_name="small")
    return out, summary, G, truth


def test_the_study_writes_runner_records(study):
    out, summary, _, _ = study
    distinct = len(CONFIGS) - 2                 # NGD and multiresolution are the full method
    assert summary.done == summary.items == distinct * 2 and summary.failed == 0
    records = load_records(out)
    assert len(records) == distinct * 2
    assert {r["method"] for r in records} == {method_of(c) for c in configs()}
    config = json.loads((out / "bench.json").read_text())
    assert config["ablation"]["NGD"] == method_name("W->W+->W++") and config["steps"] == [1, 1, 1]
    by_method = {r["method"]: r for r in records}
    w = by_method[method_name("W")]           # what actually ran: the bound options
    assert w["config"]["spaces"] == ["W"] and w["config"]["steps"] == [3]
    assert list(w["phases"]) == ["W"] and w["batch"] == 2     # the images restored together
    assert list(by_method[method_name("W->W+")]["phases"]) == ["W", "W+"]
    assert by_method[method_name("Adam x0.3")]["config"]["lr_scale"] == 0.3
    assert by_method[method_name("single scale")]["config"]["loss"]["multiresolution"] is False


def test_a_rerun_resumes(study, tmp_path):
    out, first, G, truth = study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    again = run_ablation(G, truth, ["denoising"], ["S"], steps=1, out=copy, loss="offline",
                         generator_name="small")
    assert (again.done, again.skipped) == (0, first.items)
    shutil.rmtree(copy / method_name("W") / "denoising" / "S" / "0001")
    again = run_ablation(G, truth, ["denoising"], ["S"], steps=1, out=copy, loss="offline",
                         generator_name="small")
    assert (again.done, again.skipped) == (1, first.items - 1)
    with pytest.raises(ValueError, match="another configuration"):   # other steps: another folder
        run_ablation(G, truth, ["denoising"], ["S"], steps=2, out=copy, loss="offline",
                     generator_name="small")


def test_the_table_comes_from_the_records(study):
    """The study's numbers are means over its folder's record.json files, read here directly."""
    out, _, _, _ = study
    raw = [json.loads(p.read_text()) for p in Path(out).rglob("record.json")]
    psnr = {}
    for r in raw:
        psnr.setdefault(r["method"], []).append(r["metrics"]["accuracy_psnr"])
    mean = {m: sum(v) / len(v) for m, v in psnr.items()}
    adam = {c.name: mean[method_name(c)] for c in configs("optimizer") if c.optimizer == "adam"}
    best = max(adam, key=adam.get)

    records = ablation_records(load_records(out))
    summary = summarise(records, by=("group", "ablation"))
    expected = [(c.group, c.name) for c in configs() if c.optimizer != "adam" or c.name == best]
    expected = [(g, "Adam (tuned)" if n == best else n) for g, n in expected]
    assert sorted(summary) == sorted(expected) and len(summary) == len(CONFIGS) - len(ADAM_LR_SCALES) + 1
    for (group, name), s in summary.items():
        method = method_name(best) if name == "Adam (tuned)" else method_of(CONFIGS[name])
        assert s["n"] == 2 and s["mean_psnr"] == pytest.approx(mean[method], abs=1e-12)
    assert summary[("optimizer", "NGD")]["psnr"] == summary[("phases", "W->W+->W++")]["psnr"]
    tuned_rows = [r for r in records if r["ablation"] == "Adam (tuned)"]
    assert {r["adam_config"] for r in tuned_rows} == {best} and {r["method"] for r in tuned_rows} == {"Adam (tuned)"}
    assert {r["ablation"] for r in ablation_records(load_records(out), "loss")} == {"multiresolution",
                                                                                  "single scale"}


def _record(config: str, psnr: float) -> dict:
    return {"ablation": config, "metrics": {"accuracy_psnr": psnr}}


def test_tuned_keeps_the_best_adam():
    records = [_record("NGD", 20.0)] + [
        _record(f"Adam x{s:g}", p) for s, p in zip(ADAM_LR_SCALES, (10.0, 25.0, 12.0, 11.0))
        for _ in range(2)]
    out = tuned(records)
    assert [r["ablation"] for r in out] == ["NGD", "Adam (tuned)", "Adam (tuned)"]
    assert out[1]["adam_config"] == "Adam x0.03" and out[1]["metrics"]["accuracy_psnr"] == 25.0
    assert tuned([_record("W", 1.0)]) == [_record("W", 1.0)]
    ssim = [dict(_record("Adam x0.01", 1.0), metrics={"accuracy_psnr": 1.0, "accuracy_ssim": 0.9}),
            dict(_record("Adam x0.1", 2.0), metrics={"accuracy_psnr": 2.0, "accuracy_ssim": 0.1})]
    assert tuned(ssim, "accuracy_ssim")[0]["adam_config"] == "Adam x0.01"
    assert tuned(ssim)[0]["adam_config"] == "Adam x0.1"


def test_records_figure_shows_the_saved_images(study, tmp_path):
    from rusir.engine.records import read_png
    from rusir.studies.figures import record_rows, records_figure
    out, _, _, truth = study
    records = [r for r in load_records(out) if r["method"] == method_name("W")]
    rows, labels = record_rows(records)
    assert labels == ["target", "restored", "naive", "truth"] and len(rows) == 2
    item = Path(records[1]["_dir"])
    assert torch.equal(rows[1][1], read_png(item / "prediction.png")[0])
    assert torch.equal(rows[1][3], read_png(item / "ground_truth.png")[0])
    assert records_figure(records, tmp_path / "f.png").is_file()
    with pytest.raises(ValueError, match="no records"):
        record_rows([])
