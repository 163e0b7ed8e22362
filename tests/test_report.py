"""rusir.report: the paper's layout (methods side by side per metric group, best in bold), cell
statistics (mean, SE, n, repeat spread), set metrics from the saved PNGs (n/a below their
minimum sample size, Inception features cached by content), Markdown / CSV / LaTeX writers."""
from __future__ import annotations

import csv
import json
import math
import re
import shutil

import pytest
import torch
import torch.nn.functional as F

from conftest import small_generator
from rusir.engine.records import save_png
from rusir.engine.runner import run_bench
from rusir.inversion.restore import RestoreResult
from rusir.report import (build_tables, load_records, set_metrics_for, summarise, to_latex,
                          to_markdown, write_report)


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


def rec(method, task, level, image, repeat=None, category="single", **values):
    """A record as the runner writes it, with only what the tables read."""
    r = {"key": f"{method}/{task}/{level}/{image:04d}", "method": method, "task": task, "level": level,
         "category": category, "image_index": image, "image": f"{image:04d}", "metrics": values}
    if repeat is not None:
        r["repeat"] = repeat
    return r


class FakeInception:
    """A cheap stand-in for the Inception network: 9 statistics per image, counted."""

    def __init__(self):
        self.calls, self.images = 0, 0

    def __call__(self, images, batch_size=32, device=None):
        self.calls += 1
        self.images += images.shape[0]
        x = images.double()
        noise = 1e-3 * torch.randn(images.shape[0], 9, dtype=torch.float64,
                                   generator=torch.Generator().manual_seed(0))
        return torch.cat([x.mean((2, 3)), x.std((2, 3)), x.amax((2, 3))], 1) + noise


@pytest.fixture
def fake_inception(monkeypatch):
    import rusir.metrics as metrics
    fake = FakeInception()
    monkeypatch.setattr(metrics, "inception_features", fake)
    return fake


def distinct_images(folder) -> int:
    """Distinct contents among the predictions and ground truths of a bench folder."""
    files = list(folder.rglob("prediction.png")) + list(folder.rglob("ground_truth.png"))
    return len({f.read_bytes() for f in files})


LOW = {"patch_fid": 2, "fid": 2, "kid": 2}   # thresholds lowered so the tiny bench computes them


# --- layout -----------------------------------------------------------------------------------------

def test_tables_layout(bench_dir):
    records = load_records(bench_dir)
    assert len(records) == 30 and all("_dir" in r for r in records)
    tables = build_tables(records, set_metrics=False)
    t1, t2 = tables["table1"], tables["table2"]
    assert t1.rows == [("upsampling", "XS"), ("upsampling", "M"), ("denoising", "S")]
    assert t2.rows == [("UN", "M"), ("UNAP", "M")] and not tables["table3"].rows
    assert t1.methods == ["bicubic", "nearest"]
    # the paper's three groups first, then the weight-free ones, then the rest
    assert t1.groups[:6] == ["accuracy_lpips", "fidelity_lpips", "patch_fid", "accuracy_psnr",
                             "accuracy_ssim", "fidelity_psnr"]
    assert [g for _, groups in t1.panels() for g in groups] == t1.groups
    cell = [r for r in records if r["key"].startswith("bicubic/upsampling/M/")]
    values = [r["metrics"]["accuracy_psnr"] for r in cell]
    got = t1.cell(("upsampling", "M"), "bicubic", "accuracy_psnr")
    mean = sum(values) / 3
    assert got.mean == pytest.approx(mean) and got.n == 3
    assert got.se == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / 2 / 3))
    # upsampling gets harder with the level
    assert t1.cell(("upsampling", "XS"), "bicubic", "accuracy_psnr").mean > got.mean
    # LPIPS was not computed (no VGG weights): n/a with the reason, not a missing column
    assert t1.cell(("upsampling", "M"), "bicubic", "accuracy_lpips").mean is None
    assert "accuracy_lpips" in t1.notes()


def test_methods_side_by_side_and_best_in_bold():
    records = [rec("rusir", "upsampling", "M", 0, accuracy_lpips=0.40, accuracy_psnr=20.0, fidelity_psnr=30.0),
               rec("pulse", "upsampling", "M", 0, accuracy_lpips=0.50, accuracy_psnr=25.0, fidelity_psnr=31.0),
               rec("lbrgm", "upsampling", "M", 0, accuracy_lpips=0.45, accuracy_psnr=22.0, fidelity_psnr=29.0)]
    table = build_tables(records, set_metrics=False)["table1"]
    assert table.methods == ["pulse", "lbrgm", "rusir"]          # PULSE | L-BRGM | OURS
    row = ("upsampling", "M")
    best = {g: [m for m in table.methods if table.cell(row, m, g).best]
            for g in ("accuracy_lpips", "accuracy_psnr", "fidelity_psnr")}
    assert best == {"accuracy_lpips": ["rusir"],      # lower is better
                    "accuracy_psnr": ["pulse"],       # higher is better
                    "fidelity_psnr": ["pulse"]}       # higher, although its name holds "fid"
    md = to_markdown(table)
    header = next(line for line in md.splitlines() if line.startswith("| task"))
    assert "accuracy LPIPS ↓ PULSE | accuracy LPIPS ↓ L-BRGM | accuracy LPIPS ↓ OURS" in header
    line = next(line for line in md.splitlines() if line.startswith("| upsampling | M |")
                and "0.400" in line)
    assert "| 0.500 | 0.450 | **0.400** |" in line


def test_cells_that_print_alike_are_both_best_and_one_method_is_never_bold():
    records = [rec("a", "denoising", "S", 0, accuracy_psnr=20.001), rec("b", "denoising", "S", 0, accuracy_psnr=20.0),
               rec("a", "denoising", "M", 0, accuracy_psnr=20.0)]
    table = build_tables(records, set_metrics=False)["table1"]
    assert all(table.cell(("denoising", "S"), m, "accuracy_psnr").best for m in ("a", "b"))
    assert not table.cell(("denoising", "M"), "a", "accuracy_psnr").best


def test_a_method_missing_from_a_row_is_an_empty_cell():
    records = [rec("rusir", "upsampling", "M", 0, accuracy_psnr=20.0),
               rec("pulse", "upsampling", "M", 0, accuracy_psnr=21.0),
               rec("rusir", "upsampling", "L", 0, accuracy_psnr=19.0),
               rec("pulse", "UN", "M", 0, category="composed", accuracy_psnr=10.0)]
    tables = build_tables(records, set_metrics=False)
    t1 = tables["table1"]
    assert t1.cell(("upsampling", "L"), "pulse", "accuracy_psnr") is None
    lines = to_markdown(t1).splitlines()
    rows = [line.split(" | ")[2:4] for line in lines if line.startswith("|  | L |")]
    assert rows[0] == ["", "n/a"]        # paper metrics: PULSE empty (did not run), OURS n/a (no LPIPS)
    assert rows[1] == ["", "19.00"]      # weight-free metrics: PULSE empty, OURS 19.00
    assert tables["table2"].methods == ["pulse"] and tables["table2"].rows == [("UN", "M")]


def test_se_and_n_are_a_hand_computation():
    records = [rec("m", "upsampling", "M", i, accuracy_psnr=v) for i, v in enumerate((20.0, 22.0, 27.0))]
    records.append(rec("m", "upsampling", "L", 0, accuracy_psnr=18.0))
    table = build_tables(records, set_metrics=False)["table1"]
    c = table.cell(("upsampling", "M"), "m", "accuracy_psnr")
    assert (c.mean, c.n) == (23.0, 3)
    assert c.se == pytest.approx(math.sqrt(13.0) / math.sqrt(3.0))   # sd (ddof 1) = sqrt(26 / 2)
    one = table.cell(("upsampling", "L"), "m", "accuracy_psnr")
    assert (one.mean, one.se, one.n) == (18.0, None, 1)
    md = to_markdown(table)
    # n differs between cells of the metric: printed in each cell
    assert "23.00 ± 2.08 (n=3)" in md and "18.00 (n=1)" in md
    s = summarise(records)[("m", "upsampling", "M")]
    assert s["metrics"]["accuracy_psnr"]["se"] == pytest.approx(c.se) and s["n"] == 3


def test_a_shared_n_goes_into_a_note():
    records = [rec("m", "upsampling", lv, i, accuracy_psnr=20.0 + i) for lv in ("S", "M") for i in range(2)]
    md = to_markdown(build_tables(records, set_metrics=False)["table1"])
    assert "(n=" not in md and "n = 2 images per cell: accuracy PSNR ↑" in md


def test_repeats_average_per_image_and_report_their_spread(tmp_path):
    values = {(0, 0): 20.0, (0, 1): 22.0, (1, 0): 24.0, (1, 1): 30.0}
    records = [rec("m", "upsampling", "M", i, repeat=r, accuracy_psnr=v) for (i, r), v in values.items()]
    records.append(rec("m", "upsampling", "S", 0, accuracy_psnr=25.0))   # no repeat field: repeat 0
    table = build_tables(records, set_metrics=False)["table1"]
    c = table.cell(("upsampling", "M"), "m", "accuracy_psnr")
    # image means 21 and 27; repeat means 22 and 26
    assert (c.mean, c.n, c.repeats) == (24.0, 2, 2)
    assert c.se == pytest.approx(math.sqrt(18.0) / math.sqrt(2.0))
    assert c.repeat_sd == pytest.approx(math.sqrt(8.0))
    plain = table.cell(("upsampling", "S"), "m", "accuracy_psnr")
    assert (plain.repeats, plain.repeat_sd) == (1, None)
    md = to_markdown(table)
    assert "24.00 ± 3.00 [2.83]" in md and "[s]: standard deviation over the repeats" in md
    from rusir.report import to_csv
    with open(to_csv(table, tmp_path / "t.csv")) as f:
        row = next(r for r in csv.DictReader(f) if r["level"] == "M")
    assert float(row["accuracy_psnr:m:repeat_sd"]) == pytest.approx(math.sqrt(8.0))
    assert summarise(records)[("m", "upsampling", "M")]["records"] == 4


def test_table3_holds_the_ddrm_settings():
    records = [rec("ddrm", "avgpool_upsampling", "XL", 0, accuracy_psnr=20.0),
               rec("rusir", "avgpool_upsampling", "XL", 0, accuracy_psnr=21.0),
               rec("rusir", "inpainting", "XL", 0, accuracy_psnr=15.0),
               rec("ddrm", "uncropping", "M", 0, accuracy_psnr=12.0)]
    tables = build_tables(records, set_metrics=False)
    t3 = tables["table3"]
    assert t3.rows == [("avgpool_upsampling", "XL"), ("inpainting", "XL"), ("uncropping", "M")]
    assert t3.methods == ["ddrm", "rusir"]
    assert t3.labels[("uncropping", "M")] == "uncropping (top-left corner kept)"
    assert tables["table1"].rows == [("inpainting", "XL")]      # a paper task stays in Table 1 too
    only_inpainting = build_tables(records[2:3], set_metrics=False)
    assert not only_inpainting["table3"].rows


# --- writers --------------------------------------------------------------------------------------

def _balanced_braces(text: str) -> bool:
    depth = 0
    for match in re.finditer(r"(?<!\\)[{}]", text):
        depth += 1 if match.group() == "{" else -1
        if depth < 0:
            return False
    return depth == 0


def test_latex_is_well_formed():
    records = [rec(m, t, lv, i, accuracy_psnr=20.0 + i + (m == "rusir"), accuracy_lpips=0.3 + 0.01 * i)
               for m in ("pulse", "rusir", "my_method&co") for t in ("upsampling", "denoising")
               for lv in ("XS", "M") for i in range(2)]
    tex = to_latex(build_tables(records, set_metrics=False)["table1"])
    assert _balanced_braces(tex)
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 2     # two panels
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 2
    for env in tex.split(r"\begin{tabular}")[1:]:
        body = env.split(r"\end{tabular}")[0]
        assert body.index(r"\toprule") < body.index(r"\midrule") < body.index(r"\bottomrule")
        spec = re.match(r"\{([lr ]+)\}", body).group(1).replace(" ", "")
        rows = [line for line in body.splitlines() if line.endswith(r"\\")]
        assert all(line.count(" & ") == len(spec) - 1 for line in rows[1:])   # after the group header
        assert body.count(r"\multicolumn{3}{c}") == 3
    assert r"\textbf{21.000}" not in tex and r"\textbf{" in tex
    assert r"my\_method\&co" in tex and "my_method&co" not in tex
    assert r"\midrule" in tex.split("denoising")[0] or tex.count(r"\midrule") >= 4   # between blocks


def test_write_report_files(bench_dir, tmp_path):
    result = write_report(bench_dir, tmp_path, set_metrics=False)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"table1.md", "table1.csv", "table1.tex", "table2.md", "table2.csv", "table2.tex",
            "cells.csv"} <= names and "table3.md" not in names
    md = (tmp_path / "table1.md").read_text()
    assert "accuracy PSNR ↑ bicubic | accuracy PSNR ↑ nearest" in md
    assert "| upsampling | XS |" in md and "|  | M |" in md
    assert "not computed (--no-set-metrics)" in md
    with open(tmp_path / "table1.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["task"], r["level"]) for r in rows] == [("upsampling", "XS"), ("upsampling", "M"), ("denoising", "S")]
    assert float(rows[0]["accuracy_psnr:bicubic:n"]) == 3
    with open(tmp_path / "cells.csv") as f:
        cells = list(csv.DictReader(f))
    assert len(cells) == 10 and {"accuracy_psnr:mean", "accuracy_psnr:se"} <= set(cells[0])
    assert list(cells[0])[:5] == ["method", "task", "level", "n", "records"]
    assert (cells[0]["method"], cells[0]["task"], cells[0]["level"], cells[0]["n"]) == (
        "bicubic", "upsampling", "XS", "3")
    for metric in ("accuracy_psnr", "fidelity_ssim"):
        assert (tmp_path / f"metric_vs_level_{metric}.png").stat().st_size > 1000
    assert result["markdown"].count("## Table") == 2


# --- set metrics ----------------------------------------------------------------------------------

def test_set_metrics_below_their_minimum_are_na_without_an_inception_call(bench_dir, tmp_path, fake_inception):
    d = tmp_path / "bench"
    shutil.copytree(bench_dir, d, ignore=shutil.ignore_patterns("report", ".cache"))
    result = write_report(d, plots=False, names=("patch_fid", "fid", "kid"))
    assert fake_inception.calls == 0
    t1 = result["tables"]["table1"]
    assert t1.cell(("upsampling", "M"), "bicubic", "patch_fid").note == "n too small: 300 < 2049"
    assert t1.cell(("upsampling", "M"), "bicubic", "kid").note == "n too small: 3 < 100"
    assert "n/a (n too small: 3 < 2049)" in result["markdown"]


def test_set_metrics_from_pngs_and_cache(bench_dir, tmp_path, fake_inception):
    d = tmp_path / "bench"
    shutil.copytree(bench_dir, d, ignore=shutil.ignore_patterns("report", ".cache"))
    records = load_records(d)
    values = set_metrics_for(d, records, names=("patch_fid", "fid", "kid", "is"), crops=4, min_samples=LOW)
    v, reasons = values[("bicubic", "upsampling", "M")]
    assert v["patch_fid"] is not None and v["fid"] is not None and v["kid"] is not None
    assert v["patch_fid_crops"] == [8, 4] and v["patch_fid_n"] == 12   # half the 16-px side; 3 x 4 crops
    assert v["is"] is None and "is" in reasons
    # every distinct image once (identical PNGs share features), cut 2 ways: 4 crops and whole
    assert fake_inception.images == distinct_images(d) * (4 + 1)
    calls = fake_inception.calls
    assert calls <= math.ceil(fake_inception.images / 32) + 1   # batched across cells
    again = set_metrics_for(d, records, names=("patch_fid", "fid", "kid", "is"), crops=4, min_samples=LOW)
    assert fake_inception.calls == calls and again == values
    assert json.loads((d / "report" / "set_metrics.json").read_text())
    tables = build_tables(records, set_metrics=values)
    assert {"patch_fid", "fid", "kid", "is"} <= set(tables["table1"].groups)
    assert "not comparable with the paper" in to_markdown(tables["table1"])   # below the default minimum


def test_a_second_report_reads_every_feature_back_and_a_changed_png_is_recomputed_alone(
        bench_dir, tmp_path, fake_inception):
    d = tmp_path / "bench"
    shutil.copytree(bench_dir, d, ignore=shutil.ignore_patterns("report", ".cache"))
    kwargs = dict(plots=False, names=("patch_fid", "fid"), crops=4, min_samples=LOW)
    write_report(d, **kwargs)
    assert fake_inception.images == distinct_images(d) * (4 + 1)
    (d / "report" / "set_metrics.json").unlink()     # the values too: only the features are cached
    before = fake_inception.images
    first = write_report(d, **kwargs)
    assert fake_inception.images == before           # zero Inception calls
    changed = d / "nearest/UN/M/0001/prediction.png"
    save_png(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5)), changed)
    second = write_report(d, **kwargs)
    assert fake_inception.images == before + 4 + 1   # that image's 4 crops and its whole image
    cell = lambda r, m: r["tables"]["table2"].cell(("UN", "M"), m, "patch_fid").mean
    assert cell(first, "nearest") != cell(second, "nearest")
    assert cell(first, "bicubic") == cell(second, "bicubic")


def test_a_damaged_set_metric_cache_is_recomputed(bench_dir, tmp_path, fake_inception):
    from rusir.engine.records import DamagedFileWarning
    d = tmp_path / "bench"
    shutil.copytree(bench_dir, d, ignore=shutil.ignore_patterns("report", ".cache"))
    records = [r for r in load_records(d) if r["task"] == "UN"]
    first = set_metrics_for(d, records, names=("fid",), min_samples=LOW)
    cache = d / "report" / "set_metrics.json"
    cache.write_text(cache.read_text()[:30])
    with pytest.warns(DamagedFileWarning, match=str(cache)):
        assert set_metrics_for(d, records, names=("fid",), min_samples=LOW) == first
    assert json.loads(cache.read_text())              # rewritten whole


def test_a_reference_folder_is_resized_and_shared_by_every_cell(bench_dir, tmp_path, fake_inception):
    d = tmp_path / "bench"
    shutil.copytree(bench_dir, d, ignore=shutil.ignore_patterns("report", ".cache"))
    ref = tmp_path / "ref"
    ref.mkdir()
    for j in range(3):      # 32 px: resized to the predictions' 16 px
        save_png(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(j)), ref / f"{j}.png")
    records = [r for r in load_records(d) if r["task"] == "UN"]
    values = set_metrics_for(d, records, names=("patch_fid",), crops=4, reference=ref, min_samples=LOW)
    assert all(v["patch_fid"] is not None and v["patch_fid_n"] == 12 for v, _ in values.values())
    # the 6 predictions of the 2 cells and the 3 reference images, 4 crops each
    assert fake_inception.images == (6 + 3) * 4
    other = set_metrics_for(d, records, names=("patch_fid",), crops=4, min_samples=LOW)
    assert other != values                         # the ground truths are another reference


def test_feature_store_keys_by_content(tmp_path, fake_inception):
    from rusir.report import FeatureSpec, FeatureStore
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for name in ("a.png", "b.png"):
        save_png(img, tmp_path / name)
    store = FeatureStore(tmp_path / "cache")
    spec = FeatureSpec(8, 5, 0)
    fa, fb = store.features([(tmp_path / "a.png", spec), (tmp_path / "b.png", spec)])
    assert fake_inception.images == 5 and torch.equal(fa, fb) and fa.shape == (5, 9)
    assert store.computed == 1                            # one content, computed once
    fresh = FeatureStore(tmp_path / "cache")              # another report: read from disk
    assert torch.allclose(fresh.features([(tmp_path / "a.png", spec)])[0], fa.float().double())
    assert fake_inception.images == 5 and fresh.computed == 0
    fresh.features([(tmp_path / "a.png", FeatureSpec(8, 5, 1))])   # other crops: other key
    assert fake_inception.images == 10 and fresh.computed == 1


def test_crop_positions_are_drawn_per_image(tmp_path, monkeypatch):
    """Each image's crops come from a seed of its own content: two images differing in one pixel
    are cut at other places (with one shared seed nearly every crop would be the same)."""
    import rusir.metrics as metrics
    from rusir.report import FeatureSpec, FeatureStore
    monkeypatch.setattr(metrics, "inception_features", lambda x, batch_size=32, device=None: x.double().flatten(1))
    a = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    b = a.clone()
    b[0, :, 0, 0] = 1 - b[0, :, 0, 0]
    save_png(a, tmp_path / "a.png")
    save_png(b, tmp_path / "b.png")
    fa, fb = FeatureStore().features([(tmp_path / n, FeatureSpec(4, 20, 0)) for n in ("a.png", "b.png")])
    assert sum(torch.equal(x, y) for x, y in zip(fa, fb)) < 5


def test_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_records(tmp_path / "missing")
    with pytest.raises(ValueError, match="no finished items"):
        write_report(tmp_path)
    with pytest.raises(ValueError, match="set metric"):
        set_metrics_for(None, [], names=("bogus",))
    with pytest.raises(ValueError, match="min_samples"):
        set_metrics_for(None, [], min_samples={"lpips": 3})
    with pytest.raises(ValueError, match="min_samples"):
        set_metrics_for(None, [], min_samples={"fid": 1})


def test_cli_min_samples_is_checked(tmp_path, capsys):
    from rusir.cli import main
    assert main(["report", str(tmp_path), "--min-samples", "bogus=3"]) == 2
    assert "METRIC=N" in capsys.readouterr().err


def test_cli_crops_and_min_samples_reach_the_set_metrics(bench_dir, tmp_path, capsys, fake_inception):
    from rusir.cli import main
    d = tmp_path / "bench"
    shutil.copytree(bench_dir, d, ignore=shutil.ignore_patterns("report", ".cache"))
    args = ["report", str(d), "--no-plots", "--set-metrics", "patch_fid", "--crops", "4", "--crop-size", "4"]
    assert main(args) == 0
    assert "n/a (n too small: 12 < 2049)" in capsys.readouterr().out and fake_inception.calls == 0
    assert main(args + ["--min-samples", "patch_fid=12", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "n too small" not in out and "n = 12 crops per cell: realism pFID ↓" in out
    assert fake_inception.images == distinct_images(d) * 4 and not (d / ".cache").exists()


# --- damaged files and old folders ------------------------------------------------------------------

def _truncated(path):
    """record.json cut inside a string, as a killed writer without atomic writes left it."""
    text = path.read_text()
    path.write_text(text[:text.index('"image"') + 5])


def test_damaged_records_and_bench_json_are_skipped_with_a_warning_naming_them(bench_dir, tmp_path):
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
    t1, t2 = result["tables"]["table1"], result["tables"]["table2"]
    assert t1.cell(("upsampling", "M"), "bicubic", "accuracy_psnr").n == 2
    assert t2.cell(("UN", "M"), "nearest", "accuracy_psnr") is None
    assert len(t1.flat) + len(t2.flat) == 9 and "skipped 4 damaged record" in result["markdown"]
    # the command line (a process of its own: pytest would catch the warnings): the report is
    # written, each damaged file named once on stderr, no traceback
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "rusir", "report", str(d), "--no-set-metrics",
                           "--no-plots"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "(n=2)" in done.stdout and "## Table 1: single tasks" in done.stdout
    assert all(done.stderr.count(str(p)) == 1 for p in damaged + [config]), done.stderr
    assert "Traceback" not in done.stderr


def test_old_folders_are_still_read(tmp_path):
    """Records as the first runner (rusir/bench.py) and the first IQA study wrote them."""
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
    for r in (first_runner, first_iqa):
        folder = tmp_path / r["key"]
        folder.mkdir(parents=True)
        for name in ("ground_truth", "target", "prediction", "degraded_prediction"):
            save_png(img, folder / f"{name}.png")
        (folder / "record.json").write_text(json.dumps(r, indent=1))
    (tmp_path / "bench.json").write_text(json.dumps({"generator": "g", "images": "heldout:1", "steps": [1, 1, 1]}))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # nothing about an old folder is "damaged"
        result = write_report(tmp_path, set_metrics=False, plots=False)
    rows = result["tables"]["table1"].flat
    assert [(r["method"], r["accuracy_psnr"]) for r in rows] == [("rusir[loss=ssim]", 22.0), ("rusir", 20.0)]
    assert "generator `g`" in result["markdown"]


def test_the_header_names_the_generators_own_defaults_and_a_mixed_folder():
    """bench.json's None loss / tau mean "the generator's own": the header says which, and says
    when a folder mixes configurations (--force-mixed)."""
    from rusir.report.document import _settings
    c = {"generator": "toyfaces64", "generator_sha256": "ab" * 32, "images": "heldout:0-1",
         "steps": [2, 2, 2], "seed": 0, "loss": None, "discrepancy": None,
         "generator_defaults": {"loss": "offline", "discrepancy": 1.05}}
    line = _settings(c)
    assert "loss `offline (the generator's)`" in line and "τ 1.05 (the generator's)" in line
    assert "sha256 abababababab" in line and "mixed" not in line
    line = _settings({**c, "loss": "paper", "discrepancy": 0.0, "mixed": [{}, {}]})
    assert "loss `paper`" in line and "τ 0.0" in line and "mixed folder**: 2 configurations" in line


def test_set_metrics_of_two_repeats_have_a_spread(tmp_path, fake_inception):
    """Two repeats give a repeat SD (0 for a method that restores the same image twice), not
    None: the spread needs only two values."""
    out = tmp_path / "b"
    run_bench(small_generator(resolution=16), "heldout:3", {"bicubic": bicubic}, "upsampling@M", out,
              metrics=("psnr",), progress=False, repeats=2)
    values = set_metrics_for(out, load_records(out), names=("patch_fid",), crops=4, min_samples=LOW)
    v, _ = values[("bicubic", "upsampling", "M")]
    assert v["patch_fid_repeats"] == 2 and v["patch_fid_repeat_sd"] == pytest.approx(0.0, abs=1e-9)
