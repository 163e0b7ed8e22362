"""rusir.engine.runner: planning, sharding, resumability, atomic item folders, failures, CLI."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import mse, small_generator
from rusir.engine import runner as bench
from rusir.engine.runner import Item, parse_shard, parse_tasks, plan_items, run_bench, shard_items
from rusir.report import build_tables, load_records
from rusir.inversion.restore import RestoreResult, restore

TASKS = "upsampling@M,UNAP@M"
STEPS = (3, 3, 3)


def naive(G, target, degradation, loss=None, seed=0, steps=None, progress=True):
    """A fast stand-in method: bicubic upsampling of the target."""
    size = G.img_resolution
    return RestoreResult(F.interpolate(target, size=(size, size), mode="bicubic",
                                       align_corners=False), {})


@pytest.fixture(scope="module")
def G():
    return small_generator(resolution=16)


def run(G, out, **kw):
    kw.setdefault("methods", {"rusir": restore})
    kw.setdefault("tasks", TASKS)
    kw.setdefault("metrics", ("psnr", "ssim", "lpips"))
    return run_bench(G, "heldout:2", out=out, steps=STEPS, loss=mse, progress=False, **kw)


def table_rows(out):
    return {k: t.flat for k, t in build_tables(load_records(out), set_metrics=False).items()}


# --- planning -----------------------------------------------------------------------------------

def test_plan_counts_and_order():
    assert len(parse_tasks("single")) == 20
    assert len(parse_tasks("composed")) == 11
    assert len(parse_tasks("all")) == 31
    assert all(lv == "M" for _, lv in parse_tasks("composed"))
    assert parse_tasks("U@XL,unap, denoising@s,upsampling") == [
        ("upsampling", "XL"), ("UNAP", "M"), ("denoising", "S"), ("upsampling", "M")]
    assert parse_tasks("single,UNAP@M")[-1] == ("UNAP", "M")
    items = plan_items(["rusir", "pulse"], "single", 3)
    assert len(items) == 2 * 20 * 3
    assert len({i.key for i in items}) == len(items)
    assert items[0].key == "rusir/upsampling/XS/0000" and items[0].category == "single"
    assert plan_items(["rusir"], "composed", ["a.png"])[0] == Item("rusir", "UN", "M", 0, "a.png")
    assert plan_items(["rusir"], "composed", 1)[0].category == "composed"


@pytest.mark.parametrize("spec", ["blurry@M", "upsampling@XXL", "PU@M", "", ","])
def test_bad_task_specs(spec):
    with pytest.raises(ValueError):
        parse_tasks(spec)


@pytest.mark.parametrize("spec", ["3/2", "2/2", "-1/2", "0/0", "a/b", "1", "1/2/3"])
def test_bad_shard_specs(spec):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(spec)


def test_shards_are_disjoint_and_cover_the_plan():
    items = plan_items(["rusir", "pulse"], "all", 3)
    for n in (1, 2, 3, 7):
        parts = [shard_items(items, k, n) for k in range(n)]
        keys = [i.key for p in parts for i in p]
        assert len(keys) == len(set(keys)) == len(items)
        assert set(keys) == {i.key for i in items}
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None


def test_bad_inputs(tmp_path, G):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images"):
        run_bench(G, empty, {"rusir": restore}, TASKS, tmp_path / "o1", progress=False)
    with pytest.raises(FileNotFoundError):
        bench.resolve_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown method"):
        bench.resolve_methods("rusir,nonesuch")
    with pytest.raises(ValueError, match="metric"):
        run(G, tmp_path / "o2", metrics=("psnr", "bogus"))
    with pytest.raises(ValueError, match="heldout"):
        bench.resolve_images("heldout:x")


def test_folder_images_sorted_recursive(tmp_path):
    from PIL import Image
    for rel in ("b/2.png", "a.jpg", "b/1.JPEG", "c.tif", "skip.txt"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".txt":
            p.write_text("x")
        else:
            Image.new("RGB", (8, 8), (10, 20, 30)).save(p)
    names = [n for n, _ in bench.resolve_images(tmp_path)]
    assert names == ["a.jpg", "b/1.JPEG", "b/2.png", "c.tif"]
    assert [n for n, _ in bench.resolve_images(tmp_path, n_images=2)] == ["a.jpg", "b/1.JPEG"]


# --- running ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clean_run(G, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    summary = run(G, out)
    return out, summary


@pytest.fixture(scope="module")
def naive_run(G, tmp_path_factory):
    """An uninterrupted run of the fast stand-in method (reference for the cheaper tests)."""
    out = tmp_path_factory.mktemp("naive")
    run(G, out, methods={"naive": naive})
    return out


def test_item_files_and_record(clean_run):
    out, summary = clean_run
    assert (summary.items, summary.done, summary.skipped, summary.failed) == (4, 4, 0, 0)
    assert summary.line().startswith("4 items: 4 done now, 0 skipped (already finished), 0 failed")
    d = out / "rusir" / "UNAP" / "M" / "0001"
    for name in ("ground_truth.png", "target.png", "prediction.png", "degraded_prediction.png",
                 "latent.pt", "record.json"):
        assert (d / name).is_file(), name
    rec = json.loads((d / "record.json").read_text())
    assert rec["key"] == "rusir/UNAP/M/0001" and rec["image"] == "0001.png"
    assert rec["degradation"]["name"] == "UNAP" and rec["degradation"]["seed"] == rec["degradation_seed"]
    assert rec["config"]["steps"] == list(STEPS)
    m = rec["metrics"]
    assert isinstance(m["accuracy_psnr"], float) and isinstance(m["fidelity_psnr"], float)
    assert "accuracy_ssim" in m and "fidelity_ssim" in m
    if m["accuracy_lpips"] is None:  # VGG weights absent here: None plus the reason
        assert "vgg" in rec["unavailable"]["accuracy_lpips"].lower()
    # fidelity is the TRUE degradation of the saved prediction, at the target's size
    from PIL import Image
    assert Image.open(d / "degraded_prediction.png").size == Image.open(d / "target.png").size
    assert json.loads((out / "bench.json").read_text())["tasks"] == TASKS.split(",")
    assert not (out / ".tmp").exists() and not (out / "failed.json").exists()


RECORD_KEYS = {"key", "method", "task", "level", "category", "image_index", "image", "image_path",
               "seed", "repeat", "degradation_seed", "degradation", "config", "true_mask", "table",
               "seconds",
               "restore_seconds", "batch", "resolution", "target_size", "metrics", "unavailable", "info",
               "naive", "phases", "code"}


def _png(path):
    import numpy as np
    from PIL import Image
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def test_record_metrics_are_those_of_the_saved_images(clean_run, naive_run):
    """What a record says can be recomputed from the PNGs and latent beside it."""
    from rusir.data import heldout_paths, load_image
    from rusir.metrics import psnr

    out, _ = clean_run
    for rec in load_records(out):
        d = Path(rec["_dir"])
        assert set(rec) - {"_dir"} == RECORD_KEYS
        assert rec["category"] == ("composed" if rec["task"] == "UNAP" else "single")
        assert 0 < rec["restore_seconds"] <= rec["seconds"]
        gt, pred = _png(d / "ground_truth.png"), _png(d / "prediction.png")
        truth = load_image(heldout_paths()[rec["image_index"]], 16)
        assert (gt - truth).abs().max() <= 0.5 / 255 + 1e-6     # the held-out image, rounded to 8 bits
        assert rec["metrics"]["accuracy_psnr"] == pytest.approx(psnr(pred, gt).item(), abs=1e-4)
        assert rec["metrics"]["fidelity_psnr"] == pytest.approx(
            psnr(_png(d / "degraded_prediction.png"), _png(d / "target.png")).item(), abs=1e-4)
        latent = torch.load(d / "latent.pt")
        assert latent["space"] == "W++" and latent["latent"].dim() == 4    # the last phase's
    assert all(r["restore_seconds"] == 0.0 and r["info"] == {} for r in load_records(naive_run))


def test_a_methods_info_goes_into_the_record(G, tmp_path):
    def with_info(G, target, degradation, *, loss=None, seed=0, progress=True, **config):
        result = naive(G, target, degradation)
        result.info = {"reached_eps": torch.tensor([True]), "note": "stand-in"}
        return result

    run(G, tmp_path, methods={"naive": with_info}, tasks="denoising@XS", n_images=1)
    assert load_records(tmp_path)[0]["info"] == {"reached_eps": [True], "note": "stand-in"}


def test_baselines_keep_their_own_steps():
    """The seed goes to every method as the protocol's keyword (tests/test_methods.py)."""
    item = Item("pulse", "upsampling", "M", 0, "0000.png")
    from rusir.baselines import pulse
    config = bench.method_kwargs(pulse, item, steps=(3, 3, 3), baseline_steps=None)
    assert config["steps"] == 100 and "seed" not in config           # rusir/baselines/tables/pulse.yaml
    assert bench.method_kwargs(pulse, item, (3, 3, 3), baseline_steps=7)["steps"] == 7
    assert bench.method_kwargs(restore, item, (3, 3, 3), None) == {"steps": (3, 3, 3)}


def test_targets_are_shared_across_methods(G, tmp_path):
    run(G, tmp_path, methods={"rusir": restore, "naive": naive}, tasks="denoising@M",
        n_images=1)
    a, b = load_records(tmp_path)
    assert (a["method"], b["method"]) == ("naive", "rusir") and a["image"] == b["image"]
    assert a["degradation_seed"] == b["degradation_seed"]
    assert (Path(a["_dir"]) / "target.png").read_bytes() == (Path(b["_dir"]) / "target.png").read_bytes()


def test_resume_after_interrupt_redoes_nothing(G, tmp_path, clean_run):
    calls = []

    def interrupted(G, target, degradation, loss=None, seed=0, steps=(1, 1, 1), progress=True):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return restore(G, target, degradation, loss=loss, steps=steps, progress=progress)
    interrupted.run_options = ("steps",)     # takes the run's steps, as restore

    with pytest.raises(KeyboardInterrupt):
        run(G, tmp_path, methods={"rusir": interrupted})
    done = {r["key"]: (Path(r["_dir"]) / "record.json") for r in load_records(tmp_path)}
    assert len(done) == 2
    before = {k: (p.stat().st_mtime_ns, p.read_bytes()) for k, p in done.items()}
    assert not any((tmp_path / ".tmp").glob("*")) if (tmp_path / ".tmp").exists() else True

    calls.clear()

    def counting(G, target, degradation, loss=None, seed=0, steps=(1, 1, 1), progress=True):
        calls.append(1)
        return restore(G, target, degradation, loss=loss, steps=steps, progress=progress)
    counting.run_options = ("steps",)

    summary = run(G, tmp_path, methods={"rusir": counting})
    assert (summary.done, summary.skipped, summary.failed) == (2, 2, 0) and len(calls) == 2
    after = {k: (p.stat().st_mtime_ns, p.read_bytes()) for k, p in done.items()}
    assert after == before
    assert table_rows(tmp_path) == table_rows(clean_run[0])
    # a third run has nothing to do
    summary = run(G, tmp_path, methods={"rusir": counting})
    assert (summary.done, summary.skipped) == (0, 4) and len(calls) == 2


def test_max_items_then_continue(G, tmp_path, naive_run):
    s = run(G, tmp_path, methods={"naive": naive}, max_items=3)
    assert (s.done, s.remaining) == (3, 1) and "left" in s.line()
    s = run(G, tmp_path, methods={"naive": naive})
    assert (s.done, s.skipped) == (1, 3)
    assert table_rows(tmp_path) == table_rows(naive_run)


def test_shard_union_equals_full_run(G, tmp_path, naive_run):
    summaries = [run(G, tmp_path, methods={"naive": naive}, shard=f"{k}/3") for k in range(3)]
    assert sum(s.done for s in summaries) == 4 and all(s.skipped == 0 for s in summaries)
    assert sorted(r["key"] for r in load_records(tmp_path)) == sorted(
        r["key"] for r in load_records(naive_run))
    assert table_rows(tmp_path) == table_rows(naive_run)


def test_leftover_temp_folders_are_ignored_and_cleaned(G, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / ".tmp" / f"{host}-{dead.pid}+naive__denoising__M__0000"
    foreign = tmp_path / ".tmp" / "otherhost-1+naive__denoising__M__0001"
    for d in (stale, foreign):
        d.mkdir(parents=True)
        (d / "prediction.png").write_bytes(b"partial")
        (d / "record.json").write_text("{}")
    half = tmp_path / "naive" / "denoising" / "M" / "0001"   # an unfinished final folder
    half.mkdir(parents=True)
    (half / "prediction.png").write_bytes(b"partial")
    assert load_records(tmp_path) == []
    s = run(G, tmp_path, methods={"naive": naive}, tasks="denoising@M")
    assert (s.done, s.skipped) == (2, 0)
    assert not stale.exists() and foreign.exists()   # other hosts' folders are left alone
    assert (half / "record.json").is_file() and (half / "target.png").is_file()
    assert sorted(r["key"] for r in load_records(tmp_path)) == [
        "naive/denoising/M/0000", "naive/denoising/M/0001"]


def test_failures_are_recorded_and_retried(G, tmp_path):
    def fails_on_inpainting(G, target, degradation, loss=None, seed=0, steps=(1, 1, 1), progress=True):
        if degradation.name == "inpainting":
            raise RuntimeError("boom")
        return naive(G, target, degradation)

    tasks = TASKS + ",inpainting@XL"
    s = run(G, tmp_path, methods={"naive": fails_on_inpainting}, tasks=tasks)
    assert (s.done, s.failed) == (4, 2)
    failed = json.loads((tmp_path / "failed.json").read_text())
    assert [f["key"] for f in failed] == ["naive/inpainting/XL/0000", "naive/inpainting/XL/0001"]
    assert "RuntimeError: boom" in failed[0]["error"]
    with pytest.raises(RuntimeError, match="boom"):
        run(G, tmp_path, methods={"naive": fails_on_inpainting}, tasks=tasks, fail_fast=True)
    s = run(G, tmp_path, methods={"naive": naive}, tasks=tasks)
    assert (s.done, s.skipped, s.failed) == (2, 4, 0) and not (tmp_path / "failed.json").exists()


def test_changed_config_in_same_folder_is_refused(G, tmp_path):
    run(G, tmp_path, methods={"naive": naive}, tasks="denoising@XS")
    with pytest.raises(ValueError, match="another configuration"):
        run_bench(G, "heldout:2", {"naive": naive}, "denoising@XS", tmp_path, steps=(5, 5, 5),
                  loss=mse, metrics=("psnr", "ssim", "lpips"), progress=False)
    # more tasks or methods in the same folder are fine, and bench.json records the union
    s = run(G, tmp_path, methods={"naive": naive}, tasks="denoising@XS,denoising@S")
    assert (s.done, s.skipped) == (2, 2)
    run(G, tmp_path, methods={"naive": naive}, tasks="denoising@XS")
    assert json.loads((tmp_path / "bench.json").read_text())["tasks"] == ["denoising@XS", "denoising@S"]


# --- command line ---------------------------------------------------------------------------------

def _cli_generator(tmp_path) -> str:
    from rusir.model.generators import REGISTRY
    info = REGISTRY.get("toyfaces64")
    if info is not None and info.path is not None and Path(info.path).is_file():
        return "toyfaces64"
    from rusir.model.checkpoint import save_generator
    return str(save_generator(small_generator(resolution=16), tmp_path / "tiny.safetensors"))


def test_cli_bench_and_report_end_to_end(tmp_path, capsys):
    from rusir.cli import main
    gen = _cli_generator(tmp_path)
    out = tmp_path / "bench"
    args = ["bench", "--generator", gen, "--images", "heldout:2", "--tasks", "upsampling@M",
            "--steps", "2,2,2", "--loss", "offline", "--metrics", "psnr,ssim", "--out", str(out),
            "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    assert "2 items: 2 done now, 0 skipped (already finished), 0 failed" in capsys.readouterr().out
    assert main(args) == 0
    assert "2 items: 0 done now, 2 skipped" in capsys.readouterr().out
    assert main(["report", str(out), "--no-set-metrics"]) == 0
    text = capsys.readouterr().out
    assert "| upsampling | M |" in text and "n = 2 images per cell" in text
    assert (out / "report" / "table1.csv").is_file()
    assert main(args + ["--shard", "3/2"]) == 2
    assert "shard" in capsys.readouterr().err
    assert main(["bench", "--generator", gen, "--tasks", "nonesuch@M", "--out", str(out)]) == 2


def test_cli_config_file(tmp_path, capsys):
    from rusir.cli import main
    gen = _cli_generator(tmp_path)
    out = tmp_path / "cfg-out"
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(f"generator: {gen}\nimages: heldout:1\ntasks: [denoising@XS]\nsteps: [1, 1, 1]\n"
                   f"loss: offline\nmetrics: [psnr]\nout: {out}\n")
    assert main(["bench", "--config", str(cfg), "--no-progress", "--device", "cpu"]) == 0
    assert "1 items: 1 done now" in capsys.readouterr().out
    rec = load_records(out)[0]
    assert rec["config"]["steps"] == [1, 1, 1] and set(rec["metrics"]) == {
        "accuracy_psnr", "fidelity_psnr"}
    cfg.write_text("nonsense_option: 1\n")
    assert main(["bench", "--config", str(cfg), "--out", str(out)]) == 2
    assert "unknown option" in capsys.readouterr().err
    for name in ("offline.yaml", "ffhq.yaml"):   # the shipped examples name real options
        import yaml
        keys = set(yaml.safe_load((Path(__file__).parents[1] / "params" / "bench" / name).read_text()))
        assert keys <= {"generator", "images", "methods", "tasks", "steps", "loss", "metrics",
                        "seed", "out", "n_images", "shard", "device", "baseline_steps"}


def test_cli_damaged_files(tmp_path, capsys):
    """A damaged record is redone (and named by the report); a damaged bench.json is one error
    line naming it, and nothing runs."""
    from rusir.cli import main
    gen = _cli_generator(tmp_path)
    out = tmp_path / "bench"
    args = ["bench", "--generator", gen, "--images", "heldout:2", "--tasks", "denoising@XS",
            "--steps", "1,1,1", "--loss", "offline", "--metrics", "psnr", "--out", str(out),
            "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    record = out / "rusir" / "denoising" / "XS" / "0001" / "record.json"
    text = record.read_text()
    record.write_text(text[:text.index('"image"') + 5])
    capsys.readouterr()
    from rusir.engine.records import DamagedFileWarning
    with pytest.warns(DamagedFileWarning, match=str(record)):   # on stderr outside pytest
        assert main(["report", str(out), "--no-set-metrics", "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "| denoising | XS |" in text and "n = 1 image per cell" in text and "skipped 1 damaged record(s)" in text and str(record) in text
    assert main(args) == 0
    assert "2 items: 1 done now, 1 skipped" in capsys.readouterr().out
    config = out / "bench.json"
    config.write_text(config.read_text()[:60])
    stamp = record.stat().st_mtime_ns
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rusir bench: error: ") and str(config) in err and "\n" not in err
    assert record.stat().st_mtime_ns == stamp


def test_only_the_ray_engine_asks_for_ray(G, tmp_path, monkeypatch):
    """A local run works where Ray is not installed; `engine="ray"` says so before any work."""
    def no_ray():
        raise RuntimeError("Ray is not installed")
    monkeypatch.setattr(bench, "require_ray", no_ray)
    run(G, tmp_path / "o", methods={"naive": naive}, tasks="upsampling@M")
    assert list((tmp_path / "o").rglob("record.json"))
    with pytest.raises(RuntimeError, match="Ray is not installed"):
        run(G, tmp_path / "r", methods={"naive": naive}, tasks="upsampling@M", engine="ray")


def test_bench_json_names_a_list_of_image_files_by_their_paths(tmp_path):
    """Images given as a list of files are recorded as that list (so a longer list resumes)."""
    from rusir.engine.records import save_png
    files = []
    for i in range(2):
        files.append(tmp_path / f"face{i}.png")
        save_png(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(i)), files[-1])
    out = tmp_path / "b"
    run_bench(small_generator(resolution=16), files, {"naive": naive}, "upsampling@M", out,
              metrics=("psnr",), progress=False)
    assert json.loads((out / "bench.json").read_text())["images"] == [str(f) for f in files]
