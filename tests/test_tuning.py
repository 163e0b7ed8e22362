"""`rusir tune` (rusir.studies.tuning): a grid search per (method, task, level) run as methods of
the benchmark runner -- picks the known best on a synthetic objective, resumes, writes the table
with its provenance, which the benchmark then uses for that generator."""
from __future__ import annotations

import warnings

import pytest
import torch

from conftest import small_generator
from rusir.baselines import METHODS, config as tables
from rusir.engine.plan import Item
from rusir.engine.records import load_records
from rusir.engine.unit import method_kwargs
from rusir.inversion.method import RestoreResult
from rusir.studies import tuning

pytestmark = pytest.mark.usefixtures("one_thread")

BEST_LR = 0.3


FACE = (0.3 + 0.4 * torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
FACE = (FACE * 255).floor() / 255                         # 8-bit, as the runner stores it


def synthetic_pulse(calls):
    """A stand-in for PULSE returning the ground truth (every tuning image is FACE) shifted by
    |lr - 0.3|: the grid's best is known (lr 0.3), every other candidate strictly worse."""
    def method(G, target, degradation=None, *, loss=None, seed=0, progress=True, **options):
        calls.append(options)
        shift = abs(options["lr"] - BEST_LR) * 0.2
        images = FACE.expand(target.shape[0], -1, -1, -1) + shift
        # reports a fallen-back term, as L-BRGM offline: the tuned cells must bind it
        return RestoreResult(images, {}, 0.0, dict(options, seed=seed, perceptual="loss"), {})
    method.table = "pulse"
    method.wants_true_mask = True
    return method


@pytest.fixture
def search(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text("pulse:\n  fixed: {steps: 7}\n  grid:\n    lr: [0.9, 0.1, 0.3, 0.6]\n")
    return path


def tune(tmp_path, search, calls, monkeypatch, **kw):
    monkeypatch.setattr(tuning, "get_method", lambda name: synthetic_pulse(calls))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuning.run_tuning(small_generator(), "pulse", "denoising@XS,inpainting@M",
                                 tmp_path / "run", search=search, test_images="heldout:60-61",
                                 tuning={"0000.png": FACE, "0001.png": FACE}, tables_dir=tmp_path / "tables",
                                 progress=False, fail_fast=True, **kw)


def test_the_grid_search_picks_the_known_best_and_writes_its_provenance(tmp_path, search, monkeypatch):
    calls = []
    summary, written = tune(tmp_path, search, calls, monkeypatch)
    assert summary.done == 4 * 2 * 2                       # candidates x cells x images
    assert {c["steps"] for c in calls} == {7}               # fixed options bound in every candidate
    assert {c["lr"] for c in calls} == {0.9, 0.1, 0.3, 0.6}
    assert all(c["l2_weight"] == 100.0 for c in calls)    # the rest from the untuned table
    path = written["pulse"]
    assert path == tmp_path / "tables" / "Generator" / "pulse.yaml"
    table = tables.load_table("pulse", path)
    for task, level in (("denoising", "XS"), ("inpainting", "M")):
        assert tables.baseline_config("pulse", task, level, path=path)["lr"] == BEST_LR
        assert tables.baseline_config("pulse", task, level, path=path)["perceptual"] == "loss"
        cell = table["provenance"]["cells"][f"{task}@{level}"]
        assert cell["chosen"] == 2 and cell["n_images"] == 2
        assert max(cell["scores"], key=cell["scores"].get) == 2 and len(cell["scores"]) == 4
    assert tables.baseline_config("pulse", "upsampling", "M", path=path)["lr"] == 0.4   # untuned cell
    prov = table["provenance"]
    assert prov["split"] == "tuning" and prov["tuning_images"] == ["0000.png", "0001.png"]
    assert prov["test_images"] == "heldout:60-61" and prov["metric"] == "accuracy_psnr"
    assert prov["record_folder"] == str(tmp_path / "run") and prov["true_mask"] is True
    assert prov["candidates"][2] == {"steps": 7, "lr": 0.3}
    assert (tmp_path / "run" / "tuned" / "pulse.yaml").read_text() == path.read_text()
    scores = (tmp_path / "run" / "tuned" / "scores.md").read_text()
    assert "| denoising@XS |" in scores and scores.count("**") == 2 * 2     # one winner per cell
    rows = [line for line in scores.splitlines() if line.startswith("| denoising@") or line.startswith("| inpainting@")]
    for row in rows:                                   # each cell a score, the winner in bold
        cells = [c.strip().strip("*") for c in row.strip("|").split("|")[1:]]
        assert len(cells) == 4 and all(c == "n/a" or float(c) > 0 for c in cells), row


def test_write_false_selects_without_writing_tables(tmp_path, search, monkeypatch):
    _, written = tune(tmp_path, search, [], monkeypatch, write=False)
    assert written == {} and not (tmp_path / "tables").exists()
    assert not (tmp_path / "run" / "tuned").exists()


def test_a_resumed_tuning_skips_finished_trials(tmp_path, search, monkeypatch):
    calls = []
    tune(tmp_path, search, calls, monkeypatch, max_items=5)
    assert len(calls) == 5
    summary, _ = tune(tmp_path, search, calls, monkeypatch)
    assert (summary.skipped, summary.done) == (5, 11) and len(calls) == 16
    summary, _ = tune(tmp_path, search, calls, monkeypatch)
    assert (summary.skipped, summary.done) == (16, 0) and len(calls) == 16


def test_the_test_split_tunes_on_the_test_images_and_says_so(tmp_path, search, monkeypatch):
    calls = []
    _, written = tune(tmp_path, search, calls, monkeypatch, split="test")
    assert {r["image"] for r in load_records(tmp_path / "run")} == {"0060.png", "0061.png"}
    assert tables.load_table("pulse", written["pulse"])["provenance"]["split"] == "test"


def test_a_tuning_split_must_be_disjoint_from_the_test_images():
    with pytest.raises(ValueError, match="disjoint"):
        tuning.tuning_images("tuning", "heldout:0-3", "heldout:2-5")
    assert tuning.tuning_images("test", "heldout:0-3", "heldout:2-5") == "heldout:0-3"
    with pytest.raises(ValueError, match="split"):
        tuning.tuning_images("train", "heldout:0-3")


def test_select_takes_complete_candidates_only_and_breaks_ties_by_grid_order():
    cands = tuning.candidates("pulse", {"grid": {"lr": [1, 2, 3]}})
    rec = lambda k, img, v: {"method": f"pulse[tune={k}]", "task": "denoising", "level": "M",   # noqa: E731
                             "image": img, "metrics": {"accuracy_psnr": v}}
    records = [rec(0, "a", 20), rec(0, "b", 22), rec(1, "a", 21), rec(1, "b", 21),
               rec(2, "a", 30)]                                     # candidate 2: one image only
    pick = tuning.select(records, cands)[("pulse", "denoising", "M")]
    assert pick["chosen"] == 0 and pick["scores"] == {0: 21.0, 1: 21.0} and pick["options"] == {"lr": 1}
    lpips = [dict(r, metrics={"accuracy_lpips": r["metrics"]["accuracy_psnr"]}) for r in records]
    assert tuning.select(lpips, cands, "lpips", n_images=1)[("pulse", "denoising", "M")]["chosen"] == 0
    with pytest.raises(ValueError, match="metric"):
        tuning.select(records, cands, "fid")
    # ignored: other methods, repeats (the second run of an item), missing or NaN scores
    noise = [dict(rec(1, "a", 99), repeat=1), rec(1, "b", float("nan")), rec(1, "c", None),
             dict(rec(1, "d", 99), method="naive")]
    assert tuning.select(records + noise, cands)[("pulse", "denoising", "M")] == pick


def test_the_benchmark_uses_a_generators_tuned_table_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "TABLES_DIR", tmp_path)
    (tmp_path / "pulse.yaml").write_text("defaults: {steps: 100, lr: 0.4}\ntasks: {}\n")
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "pulse.yaml").write_text(
        "defaults: {steps: 100, lr: 0.4}\ntasks: {denoising: {M: {lr: 0.3}}}\n"
        "provenance: {split: tuning}\n")
    item = Item("pulse", "denoising", "M", 0, "0000")
    assert method_kwargs(METHODS["pulse"], item, (1, 1, 1), None, generator="gen")["lr"] == 0.3
    assert method_kwargs(METHODS["pulse"], item, (1, 1, 1), None, generator="other")["lr"] == 0.4
    assert method_kwargs(METHODS["pulse"], item, (1, 1, 1), None)["lr"] == 0.4
    assert tables.table_source("pulse", "gen") == {"path": "gen/pulse.yaml", "tuned": True, "split": "tuning"}
    assert tables.table_source("pulse", "other") == {"path": "pulse.yaml", "tuned": False}
    assert tables.table_source("pulse", "/a/path.pkl") == {"path": "pulse.yaml", "tuned": False}
    with pytest.raises(ValueError, match="registry name"):
        tables.table_path("pulse", "../x")


def test_search_spaces_ship_for_every_table_and_name_real_options():
    import inspect
    for method in tables.TABLES:
        space = tuning.search_space(method)
        params = inspect.signature(METHODS[method]).parameters
        assert set(space["grid"]) | set(space["fixed"]) <= set(params), method
        assert len(tuning.candidates(method, space)) >= 3
    with pytest.raises(ValueError, match="no search space"):
        tuning.search_space("rusir")


def test_the_cli_refuses_bad_input_in_one_line(tmp_path, capsys):
    from rusir.cli import main
    assert main(["tune", "--methods", "rusir", "--out", str(tmp_path / "t"), "--no-progress"]) == 2
    assert "tunes the baselines" in capsys.readouterr().err
    assert main(["tune", "--tuning-images", "heldout:61-62", "--out", str(tmp_path / "t")]) == 2
    assert "disjoint" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["pulse", "lbrgm"])
def test_the_committed_toyfaces64_tables_are_valid_and_say_how_they_were_made(method):
    import inspect
    from rusir.degradations import LEVELS, TASKS
    path = tables.table_path(method, "toyfaces64")
    table = tables.load_table(method, path)
    params = inspect.signature(METHODS[method]).parameters
    for task in TASKS:
        for level in LEVELS:
            assert set(tables.baseline_config(method, task, level, generator="toyfaces64")) <= set(params)
    prov = table["provenance"]
    assert prov["generator"] == "toyfaces64" and prov["split"] in tuning.SPLITS
    assert not set(prov["tuning_images"]) & {"0060.png", "0061.png", "0062.png", "0063.png"}
    assert prov["cells"]
    for cell, pick in prov["cells"].items():
        task, level = cell.split("@")
        assert max(pick["scores"], key=pick["scores"].get) == pick["chosen"], cell
        chosen = prov["candidates"][pick["chosen"]]
        config = tables.baseline_config(method, task, level, generator="toyfaces64")
        assert {k: config[k] for k in chosen} == chosen, cell
