"""`rusir bench --repeats K`: every item restored K times, so that tables can say how far
rounding luck moves a cell (rusir.engine.unit: `repeat_seed`, `REPEAT_JITTER`).

Repeat 0 is the run without repeats, bit for bit; repeat r >= 1 restores the same target with a
seed derived from (seed, r) -- PULSE another start -- and RUSIR, which draws nothing random,
from its start perturbed at float32 rounding level (`restore(jitter=...)`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import small_generator
from rusir import degradations
from rusir.engine.plan import TASK_GROUPS, parse_tasks, plan_items, plan_units
from rusir.engine.records import load_records
from rusir.engine.runner import run_bench
from rusir.engine.unit import REPEAT_JITTER, repeat_seed
from rusir.inversion.restore import jittered, restore

LOSS = {"terms": {"l2": 1.0}}     # no noise of its own: RUSIR's repeats differ by the jitter only


@pytest.fixture(scope="module")
def G():
    return small_generator(resolution=16)


def bench(G, out, **kw):
    kw.setdefault("methods", "rusir,pulse")
    return run_bench(G, "heldout:2", out=out, tasks=kw.pop("tasks", "upsampling@M"),
                     steps=(2, 2, 2), baseline_steps=3, loss=LOSS, metrics=("psnr",),
                     progress=False, batch=2, **kw)


def by_key(out: Path) -> dict:
    return {r["key"]: r for r in load_records(out)}


@pytest.fixture(scope="module")
def plain_and_two(G, tmp_path_factory):
    """A run without repeats and the same run with --repeats 2."""
    plain, two = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("two")
    assert bench(G, plain).done == 4
    s = bench(G, two, repeats=2)
    assert (s.items, s.done, s.failed) == (8, 8, 0), s.failures
    return plain, two


# --- planning ---------------------------------------------------------------------------------

def test_repeats_plan_suffixed_keys_in_units_of_one_repeat():
    items = plan_items(["rusir"], "upsampling@M", 3, repeats=2)
    assert [i.key for i in items] == [
        "rusir/upsampling/M/0000", "rusir/upsampling/M/0001", "rusir/upsampling/M/0002",
        "rusir/upsampling/M/0000-r1", "rusir/upsampling/M/0001-r1", "rusir/upsampling/M/0002-r1"]
    assert plan_items(["rusir"], "upsampling@M", 3, repeats=1) == items[:3]
    units = plan_units(items, 4)
    assert [[i.repeat for i in u.items] for u in units] == [[0, 0, 0], [1, 1, 1]]
    assert units[1].key == "rusir/upsampling/M/0000-0002-r1"
    for bad in (0, -1, 1.5, "x", 101):
        with pytest.raises(ValueError, match="repeats"):
            plan_items(["rusir"], "upsampling@M", 1, repeats=bad)


def test_repeat_seeds():
    assert repeat_seed(7, 0) == 7                       # repeat 0: the run's own seed
    seeds = {repeat_seed(7, r) for r in range(1, 6)}
    assert len(seeds) == 5 and 7 not in seeds and all(0 <= s < 2 ** 31 for s in seeds)
    assert repeat_seed(7, 1) != repeat_seed(8, 1)


# --- restore's jitter -------------------------------------------------------------------------

def test_jitter_moves_the_start_at_rounding_level_alike_for_every_image():
    w = (torch.randn(1, 16, dtype=torch.float64) + 2.0).repeat(3, 1)     # w_avg for 3 images
    moved = jittered(w, REPEAT_JITTER, seed=5)
    rel = ((moved - w) / w).abs()
    assert 0 < rel.max() < 1e-5 and rel.mean() > 1e-8        # ~1.2e-7 relative per coordinate
    assert torch.equal(moved[0], moved[2])                   # the same draw for every image
    assert torch.equal(jittered(w, REPEAT_JITTER, seed=5), moved)
    assert not torch.equal(jittered(w, REPEAT_JITTER, seed=6), moved)
    assert jittered(w, 0.0, seed=5) is w


def test_jitter_is_checked_and_recorded(G):
    deg = degradations.make("upsampling", "M", seed=0)
    target = deg.degrade_ground_truth(torch.rand(1, 3, 16, 16))
    for bad in (-1e-7, math.nan, math.inf, "x", 2.0):
        with pytest.raises(ValueError, match="jitter"):
            restore(G, target, deg, steps=(1, 1, 1), jitter=bad, progress=False)
    result = restore(G, target, deg, steps=(1, 1, 1), loss=LOSS, jitter=REPEAT_JITTER, progress=False)
    assert result.config["jitter"] == REPEAT_JITTER == result.config.as_dict()["jitter"]
    assert "jitter" in restore.run_options


def test_a_jittered_batch_equals_its_images_alone_float64():
    G = small_generator(resolution=16).double()
    deg = degradations.make("upsampling", "M", seed=[0, 1])
    target = deg.degrade_ground_truth(torch.rand(2, 3, 16, 16, dtype=torch.float64))
    kw = dict(steps=(2, 2, 2), loss=LOSS, jitter=1e-3, seed=3, progress=False)
    both = restore(G, target, deg, **kw).images
    for i in range(2):
        one = degradations.make("upsampling", "M", seed=i)
        alone = restore(G, target[i:i + 1], one, **kw).images
        assert (both[i:i + 1] - alone).abs().max() < 1e-9


# --- the benchmark ------------------------------------------------------------------------------

def test_repeat_zero_is_the_run_without_repeats_bit_for_bit(plain_and_two):
    plain, two = plain_and_two
    a, b = by_key(plain), by_key(two)
    assert set(a) == {k for k in b if not k.endswith("-r1")} and len(b) == 2 * len(a)
    for key, rec in a.items():
        assert b[key]["repeat"] == 0 and b[key]["metrics"] == rec["metrics"]
        assert b[key]["config"] == rec["config"] and rec["config"].get("jitter", 0.0) == 0.0
        for png in ("target", "prediction"):
            assert (Path(rec["_dir"]) / f"{png}.png").read_bytes() == \
                (Path(b[key]["_dir"]) / f"{png}.png").read_bytes(), (key, png)
    config = json.loads((two / "bench.json").read_text())
    assert config["repeats"] == 2 and json.loads((plain / "bench.json").read_text())["repeats"] == 1


def test_rusir_repeat_one_starts_a_rounding_step_away(plain_and_two):
    recs = by_key(plain_and_two[1])
    for j in ("0000", "0001"):
        r0, r1 = recs[f"rusir/upsampling/M/{j}"], recs[f"rusir/upsampling/M/{j}-r1"]
        assert r1["repeat"] == 1
        assert r1["config"]["jitter"] == REPEAT_JITTER and r1["config"]["seed"] == repeat_seed(0, 1)
        assert r1["degradation_seed"] == r0["degradation_seed"]      # the same target
        assert (Path(r0["_dir"]) / "target.png").read_bytes() == (Path(r1["_dir"]) / "target.png").read_bytes()
        l0 = torch.load(Path(r0["_dir"]) / "latent.pt")["latent"]
        l1 = torch.load(Path(r1["_dir"]) / "latent.pt")["latent"]
        rel = ((l1 - l0).abs().max() / l0.abs().max()).item()
        assert 0 < rel < 1e-4, rel                   # differs, but only by rounding's amount


def test_pulse_repeat_one_gets_another_seed(plain_and_two):
    recs = by_key(plain_and_two[1])
    r0, r1 = recs["pulse/upsampling/M/0001"], recs["pulse/upsampling/M/0001-r1"]
    assert r0["config"]["seed"] == 0 and r1["config"]["seed"] == repeat_seed(0, 1)
    assert "jitter" not in r1["config"]                            # PULSE takes no jitter
    assert (Path(r0["_dir"]) / "prediction.png").read_bytes() != \
        (Path(r1["_dir"]) / "prediction.png").read_bytes()


def test_more_repeats_on_resume_run_only_the_new_repeat(G, plain_and_two, tmp_path):
    import shutil
    out = tmp_path / "grow"
    shutil.copytree(plain_and_two[1], out)
    s = bench(G, out, repeats=3)
    assert (s.items, s.done, s.skipped) == (12, 4, 8)
    assert {r["key"] for r in load_records(out) if r["repeat"] == 2} == {
        f"{m}/upsampling/M/{j}-r2" for m in ("rusir", "pulse") for j in ("0000", "0001")}
    s = bench(G, out, repeats=2)                  # fewer: nothing runs, the third stays valid
    assert (s.items, s.done, s.skipped) == (8, 0, 8)
    assert json.loads((out / "bench.json").read_text())["repeats"] == 3
    assert len(load_records(out)) == 12


# --- the command line and the task group -------------------------------------------------------

def test_cli_repeats(tmp_path, capsys):
    from rusir.cli import main
    from rusir.model.checkpoint import save_generator
    gen = str(save_generator(small_generator(resolution=16), tmp_path / "tiny.safetensors"))
    out = tmp_path / "o"
    args = ["bench", "--generator", gen, "--images", "heldout:1", "--tasks", "denoising@XS",
            "--steps", "1,1,1", "--loss", "offline", "--metrics", "psnr", "--out", str(out),
            "--no-progress", "--device", "cpu"]
    assert main(args + ["--repeats", "2"]) == 0
    assert "2 items: 2 done now" in capsys.readouterr().out
    assert sorted(r["key"] for r in load_records(out)) == ["rusir/denoising/XS/0000",
                                                           "rusir/denoising/XS/0000-r1"]
    for bad, words in (("0", "repeats"), ("101", "MAX_REPEATS"), ("two", "repeats")):
        assert main(args + ["--repeats", bad]) == 2
        assert words in capsys.readouterr().err
    cfg = tmp_path / "bench.yaml"
    cfg.write_text("repeats: 3\n")
    assert main(args + ["--config", str(cfg)]) == 0
    assert "3 items: 1 done now, 2 skipped" in capsys.readouterr().out


def test_table3_group_is_the_papers_table_3():
    table3 = [("avgpool_upsampling", "XL"), ("nearest_upsampling", "XL"), ("gaussian_noise", "XL"),
              ("clamped_gaussian_noise", "XL"), ("inpainting", "XL"), ("uncropping", "XL")]
    assert parse_tasks("table3") == parse_tasks("ddrm") == parse_tasks("TABLE3") == table3
    both = parse_tasks("all,table3")
    assert both[:len(parse_tasks("all"))] == parse_tasks("all")
    assert set(both) == set(parse_tasks("all")) | set(table3) and len(both) == len(set(both))
    assert parse_tasks("upsampling@XS,ddrm")[0] == ("upsampling", "XS")
    for task, level in TASK_GROUPS["table3"]:       # each one a runnable degradation
        deg = degradations.make(task, level, seed=0)
        assert deg.degrade_ground_truth(torch.rand(1, 3, 64, 64)).shape[0] == 1
    with pytest.raises(ValueError, match="table3"):
        parse_tasks("tabel3")
