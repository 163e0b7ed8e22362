"""rusir.engine.records: the item store (atomic items and JSON, bench.json checks, 8-bit images,
the one metric-availability cache) and rusir.report.summarise over known records."""
from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import small_generator, smooth_images
from rusir.degradations import cycle_8bit
from rusir.data import claims
from rusir.engine import records
from rusir.report import summarise
from rusir.engine.runner import bind_method, run_bench
from rusir.inversion.losses import LossConfig
from rusir.inversion.restore import RestoreResult
from rusir.model.weights import MissingWeightsError

KEY = "m/denoising/M/0003"


def rec(key=KEY, **extra):
    """A minimal finished record of item `key` (the fields records.RECORD_FIELDS requires)."""
    method, task, level, j = key.split("/")
    return {"key": key, "method": method, "task": task, "level": level, "image_index": int(j),
            "image": f"{j}.png", "metrics": {}, **extra}


def images(seed=0):
    img = smooth_images(b=1, side=8, seed=seed)
    return {name: img for name in records.IMAGE_FILES}


# --- items and JSON are atomic ----------------------------------------------------------------------

def test_write_item_is_all_or_nothing(tmp_path, monkeypatch):
    final = records.write_item(tmp_path, KEY, images(), rec(x=1), {"latent": torch.zeros(2)})
    assert final == tmp_path / KEY and records.is_finished(tmp_path, KEY)
    assert {p.name for p in final.iterdir()} == {f"{n}.png" for n in records.IMAGE_FILES} | {
        "latent.pt", "record.json"}
    assert not any((tmp_path / records.TMP).iterdir())
    # a failure half-way (after some PNGs) leaves neither a final folder nor a temporary one
    other = "m/denoising/M/0004"
    real, calls = records.save_png, []

    def failing(img, path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real(img, path)

    monkeypatch.setattr(records, "save_png", failing)
    with pytest.raises(OSError, match="disk full"):
        records.write_item(tmp_path, other, images(), rec(other))
    assert not (tmp_path / other).exists() and not records.is_finished(tmp_path, other)
    assert not any((tmp_path / records.TMP).iterdir())
    monkeypatch.setattr(records, "save_png", real)
    # an unfinished folder at the place (no record.json) is replaced as a whole
    (tmp_path / other).mkdir(parents=True)
    (tmp_path / other / "junk.png").write_bytes(b"partial")
    assert not records.is_finished(tmp_path, other)
    records.write_item(tmp_path, other, images(), rec(other))
    assert records.is_finished(tmp_path, other) and not (tmp_path / other / "junk.png").exists()
    assert [r["key"] for r in records.load_records(tmp_path)] == [KEY, other]


def test_write_json_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "a" / "b.json"
    records.write_json(path, {"t": torch.tensor([1.5, 2.0]), "cfg": LossConfig({"l1": 1.0})})
    data = json.loads(path.read_text())
    assert data["t"] == [1.5, 2.0] and data["cfg"]["terms"] == {"l1": 1.0}
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):
        records.write_json(path, {"new": 1})
    assert json.loads(path.read_text()) == data        # the old file is untouched


def test_load_records_ignores_temporary_and_report_folders(tmp_path):
    records.write_item(tmp_path, KEY, images(), rec())
    for hidden in (tmp_path / records.TMP / "host-1+x", tmp_path / "report" / "x"):
        hidden.mkdir(parents=True)
        (hidden / "record.json").write_text("{}")
    (loaded,) = records.load_records(tmp_path)
    assert loaded["key"] == KEY and loaded["_dir"] == str(tmp_path / KEY)


# --- bench.json ------------------------------------------------------------------------------------------

def test_config_checks_growth_and_conflicts(tmp_path):
    base = {"generator": "g", "images": ["a.png", "b.png"], "steps": [1, 1, 1], "seed": 0,
            "loss": None, "metrics": ["psnr"], "baseline_steps": None, "methods": ["rusir"],
            "tasks": ["denoising@M"], "image_names": ["a.png", "b.png"], "degradation_seeds": "derived"}
    records.write_config(tmp_path, base)
    grown = records.write_config(tmp_path, {**base, "images": ["a.png"], "image_names": ["a.png"],
                                            "methods": ["pulse"], "tasks": ["UN@M"]})
    assert grown["methods"] == ["rusir", "pulse"] and grown["tasks"] == ["denoising@M", "UN@M"]
    assert grown["images"] == ["a.png", "b.png"]         # a prefix: the longer list is kept
    records.write_config(tmp_path, {**base, "images": ["a.png", "b.png", "c.png"]})
    assert records.read_config(tmp_path)["images"] == ["a.png", "b.png", "c.png"]
    for change in ({"steps": [2, 1, 1]}, {"images": ["b.png"]}, {"seed": 1},
                   {"degradation_seeds": "image"}):
        with pytest.raises(ValueError, match="another configuration"):
            records.write_config(tmp_path, {**base, **change})
    # an older folder without degradation_seeds accepts either
    older = {k: v for k, v in base.items() if k != "degradation_seeds"}
    assert records.config_conflicts(older, {**base, "degradation_seeds": "image"}) == []
    a = records.config_folder(tmp_path, {"steps": [1, 2], "x": "y"})
    assert a == records.config_folder(tmp_path, {"x": "y", "steps": (1, 2)}) and a.parent == tmp_path
    assert a != records.config_folder(tmp_path, {"steps": [1, 3], "x": "y"})


def test_failures_file(tmp_path):
    records.write_failures(tmp_path, (1, 3), [{"key": KEY, "error": "E"}])
    assert json.loads((tmp_path / "failed-1of3.json").read_text())[0]["key"] == KEY
    records.write_failures(tmp_path, (1, 3), [])
    assert not (tmp_path / "failed-1of3.json").exists()


# --- 8 bits and metrics --------------------------------------------------------------------------------------

def test_8bit_images_round_trip_exactly(tmp_path):
    x = torch.rand(1, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    assert torch.equal(records.as_8bit(x), cycle_8bit(x, "round"))
    records.save_png(x, tmp_path / "x.png")
    assert torch.equal(records.read_png(tmp_path / "x.png"), records.as_8bit(x))


def test_metric_cache_remembers_only_unavailability(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))   # no LPIPS weights here
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    cache, calls = records.MetricCache(), []

    def missing():
        calls.append("missing")
        raise MissingWeightsError("no vgg16 here")

    def too_small():
        calls.append("small")
        raise ValueError("image too small")

    assert cache.compute("lpips", missing) == (None, "MissingWeightsError: no vgg16 here")
    assert cache.compute("lpips", missing) == (None, "MissingWeightsError: no vgg16 here")
    assert cache.compute("ms_ssim", too_small) == (None, "ValueError: image too small")
    assert cache.compute("ms_ssim", too_small)[1] == "ValueError: image too small"
    assert calls == ["missing", "small", "small"]     # unavailable: tried once; ValueError: each time
    assert cache.compute("psnr", lambda: 3.0) == (3.0, None)
    x = smooth_images(b=1, side=16)
    values, why = cache.item_metrics(["psnr", "lpips"], x, x * 0.9, x, x)
    assert values["accuracy_psnr"] > 20 and values["fidelity_psnr"] > 90
    assert values["accuracy_lpips"] is None and why["fidelity_lpips"].startswith("MissingWeightsError")


# --- the runner writes through the store ----------------------------------------------------------------------

def _naive(G, target, degradation=None, **kwargs):
    s = G.img_resolution
    return RestoreResult(torch.nn.functional.interpolate(target, size=(s, s), mode="bicubic",
                                                         align_corners=False), {})


def test_rerun_skips_finished_items_and_records_the_naive_baseline(tmp_path):
    from rusir.studies.experiment import naive_restoration
    from rusir.metrics import psnr, ssim
    G = small_generator(resolution=16)
    calls = []

    def counting(G, target, degradation=None, **kwargs):
        calls.append(1)
        return _naive(G, target)

    run = lambda: run_bench(G, "heldout:2", {"naive": counting}, "upsampling@M", tmp_path,  # noqa: E731
                            metrics=("psnr",), progress=False)
    assert run().done == 2 and len(calls) == 2
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("record.json")}
    s = run()
    assert (s.done, s.skipped, len(calls)) == (0, 2, 2)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    for r in records.load_records(tmp_path):   # `naive` is the naive restoration of the saved target
        gt, target = (records.read_png(f"{r['_dir']}/{n}.png") for n in ("ground_truth", "target"))
        naive = naive_restoration(target, 16)
        assert r["naive"]["psnr"] == pytest.approx(float(psnr(naive, gt)[0]), abs=1e-4)
        assert r["naive"]["ssim"] == pytest.approx(float(ssim(naive, gt)[0]), abs=1e-4)


def test_bound_method_keeps_its_keywords_over_the_runners():
    seen = {}

    def method(G, target, degradation=None, loss=None, steps=None, progress=True):
        seen.update(loss=loss, steps=steps)
        return "done"

    bound = bind_method(method, loss="mine")
    assert bound(None, None, None, loss=None, steps=3, progress=False) == "done"
    assert seen == {"loss": "mine", "steps": 3}
    import inspect
    assert "loss" not in inspect.signature(bound).parameters and bound.fixed == {"loss": "mine"}


# --- summaries of known records ------------------------------------------------------------------------------

def test_summarise_is_a_hand_computation():
    def rec(m, j, p, s, n_p, sec):
        return {"method": m, "task": "t", "level": "M", "image_index": j,
                "metrics": {"accuracy_psnr": p, "accuracy_ssim": s}, "naive": {"psnr": n_p, "ssim": 0.2},
                "restore_seconds": sec}
    out = summarise([rec("a", 1, 20.0, 0.5, 20.0, 1.0), rec("a", 0, 24.0, 0.7, 21.0, 3.0),
                     rec("b", 0, 10.0, 0.1, 21.0, 5.0), {**rec("a", 2, None, None, 15.0, None),
                                                         "naive": None}])
    a, b = out[("a", "t", "M")], out[("b", "t", "M")]
    assert a["images"] == [0, 1, 2] and a["psnr"] == [24.0, 20.0, None]
    assert (a["mean_psnr"], a["mean_ssim"], a["mean_naive_psnr"], a["mean_seconds"]) == (22.0, 0.6, 20.5, 2.0)
    assert a["psnr_wins"] == 1 and a["n"] == 3          # a tie is no win; missing values are none
    assert (b["n"], b["psnr_wins"], b["mean_naive_ssim"]) == (1, 0, 0.2)
    assert list(summarise([rec("a", 0, 1.0, 1.0, 1.0, 1.0)], by=("task",))) == [("t",)]


# --- damaged records: unfinished for bench, skipped with a warning by the report -------------------------------

def _naive_run(out, **kw):
    G = small_generator(resolution=16)
    kw.setdefault("methods", {"naive": _naive})
    return run_bench(G, "heldout:2", kw.pop("methods"), "upsampling@M", out, metrics=("psnr",),
                     progress=False, **kw)


def _damage(text: str) -> dict:
    """Damaged contents of a real record.json (`text`): truncated, empty, not a record."""
    return {"truncated": text[:text.index('"image"') + 5], "empty": "", "list": "[]",
            "key only": '{"key": "x"}', "no metrics": json.dumps({k: v for k, v in json.loads(text).items()
                                                                  if k != "metrics"}),
            "metrics not a mapping": json.dumps({**json.loads(text), "metrics": [1, 2]}),
            "another item's key": json.dumps({**json.loads(text), "key": "naive/upsampling/M/0009"})}


def test_required_fields_are_defined_once_and_checked(tmp_path):
    assert set(records.RECORD_FIELDS) >= {"key", "method", "task", "level", "image_index", "metrics"}
    good = rec()
    assert records.record_problem(good) is None
    for bad, why in (([], "not a JSON object"), ({"key": "x"}, "missing"),
                     ({**good, "image_index": "3"}, "image_index"), ({**good, "metrics": None}, "metrics")):
        assert why in records.record_problem(bad)
    with pytest.raises(ValueError, match="missing"):   # the store never writes an unfinished record
        records.write_item(tmp_path, KEY, images(), {"key": KEY})
    assert not (tmp_path / KEY).exists()


@pytest.mark.parametrize("case", ["truncated", "empty", "list", "key only", "no metrics",
                                  "metrics not a mapping", "another item's key"])
def test_a_damaged_record_is_redone_by_bench_and_skipped_by_the_report(tmp_path, case):
    assert _naive_run(tmp_path).done == 2
    path = tmp_path / "naive" / "upsampling" / "M" / "0000" / records.RECORD
    path.write_text(_damage(path.read_text())[case])
    assert not records.is_finished(tmp_path, "naive/upsampling/M/0000")
    with pytest.warns(records.DamagedFileWarning, match=str(path)):
        loaded = records.load_records(tmp_path)
    assert [r["key"] for r in loaded] == ["naive/upsampling/M/0001"]
    s = _naive_run(tmp_path)                       # redone, the other item kept
    assert (s.done, s.skipped) == (1, 1)
    assert records.record_problem(json.loads(path.read_text())) is None
    assert len(records.load_records(tmp_path)) == 2
    assert not (tmp_path / records.TMP).exists()   # nothing left aside


@pytest.mark.parametrize("text", ['{"generator": "g", "images": "heldout:2", "steps": [1, 1,', "", "[]"])
def test_a_damaged_bench_json_is_one_error_naming_the_file(tmp_path, text):
    assert _naive_run(tmp_path).done == 2
    (tmp_path / records.CONFIG).write_text(text)
    with pytest.raises(ValueError) as err:
        records.read_config(tmp_path)
    message = str(err.value)
    assert str(tmp_path / records.CONFIG) in message and "\n" not in message
    with pytest.raises(ValueError, match=str(tmp_path / records.CONFIG)):
        _naive_run(tmp_path)                      # bench refuses it: it guards the configuration
    assert len(records.load_records(tmp_path)) == 2   # the finished items are untouched


# --- two runs into one folder: finalising never deletes a finished item ------------------------------------------

def _stamp(out):
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
            and records.TMP not in p.parts}


def test_finishing_into_a_finished_place_keeps_the_first_writer(tmp_path):
    other = {**rec(), "writer": "first"}
    assert records.write_item(tmp_path, KEY, images(1), other) == tmp_path / KEY   # no latent
    before = _stamp(tmp_path)
    assert records.write_item(tmp_path, KEY, images(2), {**other, "writer": "second"},
                              {"latent": torch.zeros(2)}) is None
    assert _stamp(tmp_path) == before                    # kept as it was, nothing mixed in
    assert not (tmp_path / records.TMP).exists() or not any((tmp_path / records.TMP).iterdir())


def test_an_item_finished_by_another_run_while_this_one_works_is_kept(tmp_path):
    """Run A plans both items; while A restores item 0, run B finishes item 0 and item 1 into the
    same folder (between A's plan and A's writes): A keeps B's folders, runs item 1 not at all."""
    calls = []

    def run_b(G, target, degradation=None, **kwargs):
        calls.append("A")
        if len(calls) == 1:                             # B runs the whole plan meanwhile
            s = _naive_run(tmp_path, methods={"naive": counting_b})
            assert (s.done, s.busy) == (1, 1)           # item 0 is A's (claimed): B leaves it
            records.write_item(tmp_path, "naive/upsampling/M/0000", images(5),
                               {**rec("naive/upsampling/M/0000"), "writer": "B"})
        return _naive(G, target)

    def counting_b(G, target, degradation=None, **kwargs):
        calls.append("B")
        return _naive(G, target)

    s = _naive_run(tmp_path, methods={"naive": run_b})
    assert calls == ["A", "B"]                          # nobody redid anybody's item
    assert (s.done, s.skipped, s.failed) == (0, 2, 0)   # both finished by B first: kept
    first = json.loads((tmp_path / "naive/upsampling/M/0000/record.json").read_text())
    assert first["writer"] == "B"
    assert {p.name for p in (tmp_path / "naive/upsampling/M/0000").iterdir()} == {
        f"{n}.png" for n in records.IMAGE_FILES} | {"record.json"}   # B's files only (no latent.pt)
    assert len(records.load_records(tmp_path)) == 2 and not (tmp_path / records.TMP).exists()


def test_a_claim_of_a_live_run_is_left_to_it_and_a_dead_ones_is_taken_over(tmp_path):
    import socket
    import subprocess
    import sys
    # alive until the test closes its stdin (a fixed sleep could end first on a busy machine)
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert claims.claim_item(tmp_path, "naive/upsampling/M/0000", f"{socket.gethostname()}-{live.pid}+x")
        s = _naive_run(tmp_path)
        assert (s.done, s.busy) == (1, 1) and "1 busy" in s.line()
        assert not records.is_finished(tmp_path, "naive/upsampling/M/0000")
    finally:
        live.kill()
        live.wait()
        live.stdin.close()
    s = _naive_run(tmp_path)                           # its owner is dead: the claim is stale
    assert (s.done, s.skipped, s.busy) == (1, 1, 0)
    assert claims.claim_item(tmp_path, "naive/upsampling/M/0000", "otherhost-1+x")
    (tmp_path / "naive/upsampling/M/0000/record.json").write_text("")
    s = _naive_run(tmp_path)          # another host's claim cannot be checked: run last, anyway
    assert (s.done, s.busy) == (1, 0) and records.is_finished(tmp_path, "naive/upsampling/M/0000")


def test_claims_of_dead_or_malformed_owners_are_cleaned_and_a_run_keeps_its_own(tmp_path):
    import socket
    import subprocess
    import sys
    token = claims.claim_token()
    assert claims.claim_item(tmp_path, "a/b", token) is True
    assert claims.claim_item(tmp_path, "a/b", token) is True          # its own claim: still its
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert claims.claim_item(tmp_path, "dead/x", f"{socket.gethostname()}-{dead.pid}+x")
    assert claims.claim_item(tmp_path, "bad/x", "not a token")
    assert claims.claim_item(tmp_path, "far/x", "otherhost-1+x")
    claims.clean_stale_claims(tmp_path)
    assert claims.claim_holder(tmp_path, "dead/x") is None             # dead owner of this host
    assert claims.claim_holder(tmp_path, "bad/x") is None              # not a token
    assert claims.claim_holder(tmp_path, "far/x") == "otherhost-1+x"   # cannot be checked: kept
    assert claims.claim_holder(tmp_path, "a/b") == token


def test_discard_item_tmp_removes_only_that_items_folders(tmp_path):
    """A Ray worker that died a moment ago may still be exiting (alive to clean_stale_tmp): the
    run holding the item's claim discards its half-written folder by key, and nothing else."""
    from rusir.engine.records import TMP, discard_item_tmp, owner_tag
    root = tmp_path / TMP
    mine = root / f"{owner_tag()}+rusir__upsampling__M__0001-abcd1234"
    other = root / f"{owner_tag()}+rusir__upsampling__M__0011-abcd1234"
    for folder in (mine, other):
        folder.mkdir(parents=True)
        (folder / "record.json").write_text("{}")
    discard_item_tmp(tmp_path, "rusir/upsampling/M/0001")
    assert not mine.exists() and other.exists()
    discard_item_tmp(tmp_path / "nothing-here", "rusir/upsampling/M/0001")   # no .tmp: nothing to do


def test_records_say_which_code_made_them(tmp_path):
    """Every item record carries `code`: rusir's version and the checkout's commit (None outside
    a checkout), so items restored before and after a change of the method can be told apart."""
    import subprocess
    from rusir import __version__
    from rusir.engine.provenance import code_version
    from rusir.engine.runner import run_bench
    run_bench("toyfaces64", "heldout:0-0", ["rusir"], ["upsampling@XL"], tmp_path / "run",
              steps=(1, 0, 0), progress=False)
    rec = records.read_record(tmp_path / "run" / "rusir/upsampling/XL/0000" / records.RECORD)
    assert rec["code"] == code_version()
    assert rec["code"]["rusir"] == __version__
    root = __import__('pathlib').Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert rec["code"]["commit"] == head.stdout.strip()
    assert rec["code"]["dirty"] in (True, False)


def test_code_version_reads_the_checkout_the_package_runs_from(tmp_path, monkeypatch):
    """In a git checkout: its HEAD, and dirty once a tracked file under rusir/ changes; a package
    outside any checkout (an installed wheel): commit and dirty None."""
    import subprocess
    from importlib import metadata
    from rusir.engine import provenance
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path / "repo"), *a], check=True,  # noqa: E731
                                    capture_output=True, text=True).stdout.strip()
    package = tmp_path / "repo" / "rusir"
    package.mkdir(parents=True)
    (package / "x.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "rusir")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    monkeypatch.setattr(provenance, "PACKAGE", package)
    provenance.code_version.cache_clear()
    try:
        first = provenance.code_version()
        assert first == {"rusir": metadata.version("rusir"), "commit": git("rev-parse", "HEAD"), "dirty": False}
        (package / "x.py").write_text("x = 2\n")
        provenance.code_version.cache_clear()
        assert provenance.code_version()["dirty"] is True
        (tmp_path / "wheel" / "rusir").mkdir(parents=True)
        monkeypatch.setattr(provenance, "PACKAGE", tmp_path / "wheel" / "rusir")
        provenance.code_version.cache_clear()
        assert provenance.code_version() == {"rusir": metadata.version("rusir"), "commit": None, "dirty": None}
    finally:
        provenance.code_version.cache_clear()
