"""Batched work units of `rusir bench` (`--batch N`): planning, partial units, and a batch of N
equal to its N items run alone (float64, so that rounding does not hide a coupling).

In float32 a batch is not bit-equal to single images (batched kernels round differently and NGD
amplifies it: docs/python-api.md), so the equality check runs the whole runner in float64.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from conftest import small_generator
from rusir.engine.records import load_records
from rusir.engine.runner import (Item, Unit, image_info, method_seed, plan_items, plan_units,
                                     run_bench, shard_items)
from rusir.inversion.restore import RestoreResult

# every random draw of the runner: the degradations' true noise and masks (UNAP, inpainting),
# their approximation's fresh noise, the consistency term's own noise, PULSE's and L-BRGM's starts
LOSS = {"terms": {"l2": 1.0, "consistency": 0.1}}
TASKS = "UNAP@M,inpainting@M,denoising@S"
METHODS = "rusir,pulse,lbrgm,adam_wplus"


def run(out, batch, G=None, **kw):
    kw.setdefault("methods", METHODS)
    return run_bench(G if G is not None else small_generator(resolution=16), "heldout:3", out=out,
                     tasks=kw.pop("tasks", TASKS), steps=(2, 2, 2), baseline_steps=3, loss=LOSS,
                     metrics=("psnr", "ssim"), progress=False, batch=batch, **kw)


# --- planning -----------------------------------------------------------------------------------

def test_units_group_one_cell_in_batches():
    items = plan_items(["rusir", "pulse"], "upsampling@M,UNAP@M", 5)
    units = plan_units(items, 2)
    assert [len(u.items) for u in units] == [2, 2, 1] * 4
    for u in units:
        assert len({(i.method, i.task, i.level) for i in u.items}) == 1
    assert [i for u in units for i in u.items] == items
    assert units[0].key == "rusir/upsampling/M/0000-0001" and units[2].key == "rusir/upsampling/M/0004"
    assert plan_units(items, 1) == [Unit((i,)) for i in items]
    for n in (1, 2, 5):   # shards of units: disjoint, cover the plan
        parts = [shard_items(units, k, n) for k in range(n)]
        keys = [i.key for p in parts for u in p for i in u.items]
        assert sorted(keys) == sorted(i.key for i in items) and len(set(keys)) == len(keys)
    for bad in (0, -1, 1.5, "x"):
        with pytest.raises(ValueError, match="batch"):
            plan_units(items, bad)


def test_batch_seeds_and_info_per_image():
    from rusir.baselines import adam_wplus, lbrgm, pulse
    from rusir.inversion.restore import restore
    assert method_seed(restore, 7, 3) == 7 and method_seed(adam_wplus, 7, 3) == 7
    assert method_seed(pulse, 7, 3) == [7, 7, 7] and method_seed(lbrgm, 7, 1) == 7
    assert method_seed(pulse, 7, 2) == [7, 7]                 # any batch of more than one
    info = {"best": [1.0, 2.0, 3.0], "v": torch.arange(6).reshape(3, 2), "note": "x", "k": [1, 2],
            "per_image": torch.tensor([0.5, 1.5, 2.5])}
    one = image_info(info, 1, 3)
    assert one["best"] == [2.0] and one["v"].tolist() == [[2, 3]] and one["note"] == "x"
    assert one["per_image"].tolist() == [1.5]                  # a vector of n values: image 1's
    assert one["k"] == [1, 2] and image_info(info, 0, 1) is info


# --- running ----------------------------------------------------------------------------------

class Counting:
    """A fast stand-in method that remembers the batch sizes it was called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, G, target, degradation, loss=None, seed=0, progress=True, **kw):
        self.calls.append(target.shape[0])
        size = G.img_resolution
        return RestoreResult(F.interpolate(target, size=(size, size), mode="bicubic",
                                           align_corners=False), {})


def test_a_unit_restores_only_its_unfinished_items(tmp_path):
    G = small_generator(resolution=16)
    method = Counting()
    s = run(tmp_path, 3, G, methods={"naive": method}, tasks="UNAP@M", max_items=1)
    assert (s.done, s.remaining) == (1, 2) and method.calls == [1]
    s = run(tmp_path, 3, G, methods={"naive": method}, tasks="UNAP@M")
    assert (s.done, s.skipped) == (2, 1) and method.calls == [1, 2]
    s = run(tmp_path, 3, G, methods={"naive": method}, tasks="UNAP@M")
    assert (s.done, s.skipped) == (0, 3) and method.calls == [1, 2]
    recs = load_records(tmp_path)
    assert [r["batch"] for r in recs] == [1, 2, 2]
    assert not (tmp_path / ".tmp").exists()


def test_shards_split_units(tmp_path):
    G = small_generator(resolution=16)
    calls = []
    for k in range(2):
        method = Counting()
        s = run(tmp_path, 2, G, methods={"naive": method}, tasks="UNAP@M,upsampling@M", shard=f"{k}/2")
        calls.append(method.calls)
        assert s.failed == 0 and s.done == sum(method.calls)
    # units of UNAP: [0, 1], [2]; of upsampling: [0, 1], [2] -> shard 0 gets 1st and 3rd
    assert calls == [[2, 2], [1, 1]]
    assert sorted(r["key"] for r in load_records(tmp_path)) == sorted(
        f"naive/{t}/M/000{j}" for t in ("UNAP", "upsampling") for j in range(3))


def test_a_failing_unit_fails_each_of_its_items(tmp_path):
    def boom(G, target, degradation, **kw):
        raise RuntimeError("boom")

    s = run(tmp_path, 2, methods={"boom": boom}, tasks="UNAP@M")
    assert (s.done, s.failed) == (0, 3)
    failed = json.loads((tmp_path / "failed.json").read_text())
    assert [f["key"] for f in failed] == [f"boom/UNAP/M/000{j}" for j in range(3)]


def test_a_unit_shares_its_seconds_among_its_items(tmp_path, monkeypatch):
    """An item's `seconds` and `restore_seconds` are its unit's divided by the unit's batch
    (a clock that moves only while the method runs: no wall-clock dependence)."""
    from rusir.engine import unit
    now = [1000.0]
    monkeypatch.setattr(unit, "time", SimpleNamespace(time=lambda: now[0]))

    def timed(G, target, degradation, **kw):
        now[0] += 6.0
        size = G.img_resolution
        images = F.interpolate(target, size=(size, size), mode="bicubic", align_corners=False)
        return RestoreResult(images, {}, seconds=4.5)

    s = run(tmp_path, 3, methods={"timed": timed}, tasks="denoising@S")
    assert (s.done, s.failed) == (3, 0), s.failures
    recs = load_records(tmp_path)
    assert [r["batch"] for r in recs] == [3, 3, 3]
    assert [(r["seconds"], r["restore_seconds"]) for r in recs] == [(2.0, 1.5)] * 3


@pytest.fixture(scope="module")
def singles(tmp_path_factory):
    out = tmp_path_factory.mktemp("singles")
    s = run(out, 1, dtype="float64")
    assert (s.done, s.failed) == (36, 0), s.failures
    return out


def test_a_batch_equals_its_items_alone_float64(singles, tmp_path):
    """Every method, on tasks with every kind of draw: batch 3 (and a 2 + 1 split) against
    batch 1, records equal (8-bit images byte for byte, metrics and latents to 1e-9). Fails
    when a batch gives image i another seed (e.g. PULSE's start seed + i) or couples images."""
    s = run(tmp_path / "b3", 3, dtype="float64")
    assert (s.done, s.failed) == (36, 0), s.failures
    assert json.loads((tmp_path / "b3" / "bench.json").read_text())["dtype"] == "float64"
    ref = {r["key"]: r for r in load_records(singles)}
    got = {r["key"]: r for r in load_records(tmp_path / "b3")}
    assert set(ref) == set(got) and len(ref) == 36
    for key, r in ref.items():
        g = got[key]
        assert g["batch"] == 3 and r["batch"] == 1
        for field in ("degradation_seed", "degradation", "naive", "target_size"):
            assert g[field] == r[field], (key, field)
        # what ran, image by image: the same but for RUSIR's chunk (3 images at a time, not 1)
        assert {**g["config"], "chunk": None} == {**r["config"], "chunk": None}, key
        for name, value in r["metrics"].items():
            assert abs(g["metrics"][name] - value) <= 1e-9, (key, name)
        assert set(g["phases"]) == set(r["phases"]), key            # each item's own phases
        for phase, scores in r["phases"].items():
            for name, value in scores.items():
                assert abs(g["phases"][phase][name] - value) <= 1e-9, (key, phase, name)
        a, b = Path(r["_dir"]), Path(g["_dir"])
        for png in ("ground_truth", "target", "prediction", "degraded_prediction"):
            assert (a / f"{png}.png").read_bytes() == (b / f"{png}.png").read_bytes(), (key, png)
        la, lb = torch.load(a / "latent.pt"), torch.load(b / "latent.pt")
        assert la["latent"].shape == lb["latent"].shape, key
        # the whole method in float64 (PULSE ran in float32, and a batch then differed by 1 ulp)
        assert la["latent"].dtype == lb["latent"].dtype == torch.float64, key
        assert (la["latent"] - lb["latent"]).abs().max() <= 1e-9, key
        stored = lb["latent"].untyped_storage().nbytes()     # its own latent, not the batch's
        assert stored == lb["latent"].numel() * lb["latent"].element_size(), key


def test_a_unit_in_chunks_equals_its_items_alone_float64(singles, tmp_path):
    """`--batch 3 --batch-size 2`: RUSIR restores each unit as chunks of 2 + 1 (restore's
    batch_size) and each item still equals its run alone; the chunk is recorded in its config."""
    s = run(tmp_path / "c", 3, dtype="float64", methods="rusir", batch_size=2)
    assert (s.done, s.failed) == (9, 0), s.failures
    ref = {r["key"]: r for r in load_records(singles)}
    for g in load_records(tmp_path / "c"):
        r = ref[g["key"]]
        assert g["config"] == {**r["config"], "batch_size": 2, "chunk": 2}
        for name, value in r["metrics"].items():
            assert abs(g["metrics"][name] - value) <= 1e-9, (g["key"], name)
        a, b = Path(r["_dir"]), Path(g["_dir"])
        assert (a / "prediction.png").read_bytes() == (b / "prediction.png").read_bytes(), g["key"]
    with pytest.raises(ValueError, match="batch_size"):
        run(tmp_path / "bad", 3, methods="rusir", batch_size=0)
