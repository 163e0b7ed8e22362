"""rusir.studies.iqa: the IQA-loss study's variants as data, the consistency term end to end, the runner's
records (bench layout, unavailable variants), and the study's table layout."""
from __future__ import annotations

import csv
import io

import pytest
import torch
import torch.nn.functional as F

from conftest import small_generator
from rusir.model.generators import GeneratorInfo, set_info
from rusir.studies import iqa
from rusir.inversion.losses import L1Term, LossConfig, MultiResolutionLoss, make_term
from rusir.inversion.presets import load_preset
from rusir.model.weights import MissingWeightsError

WEIGHT_FREE = ["baseline", "ms_ssim", "grad", "ssim", "consistency", "composite_free"]


def smooth_images(b=2, side=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(b, 3, 8, 8, generator=g), size=side, mode="bicubic",
                         align_corners=False).clamp(0, 1)


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def paper_generator():
    """A generator whose recorded loss preset is the paper's (as for official pickles)."""
    G = small_generator()
    return set_info(G, GeneratorInfo("official-like", "test", G.img_resolution, "paper"))


def test_variants_are_the_study_and_build(offline_home):
    configs = iqa.variant_configs(baseline="offline")
    assert list(configs) == list(iqa.IQA_VARIANTS)
    offline = load_preset("offline").terms
    assert configs["baseline"].terms == offline
    assert configs["ssim"].terms == {**offline, "ssim": 0.2}
    assert configs["consistency"].terms == {**offline, "consistency": 0.3}
    assert configs["composite"].terms == {"lpips_vgg": 1.0, "ms_ssim": 0.5, "grad": 0.1}
    for name in ("lpips_alex", "lpips_vgg", "ms_ssim", "grad"):
        assert configs[name].terms == {name: 1.0}
        assert configs[name].multiresolution and configs[name].l1_weight == 0.1
    assert configs["lpips_vgg"].weight_files() == ["vgg16"]
    assert configs["lpips_alex"].weight_files() == ["alexnet"]
    for name in WEIGHT_FREE:                       # the weight-free ones run on this machine
        assert iqa.check_variant(configs[name]) is None, name
        assert configs[name].name == name
    # the baseline is the generator's preset: the paper's loss for official generators
    assert iqa.variant_config("baseline", G=paper_generator()).terms == {"lpips_vgg": 1.0}
    assert iqa.variant_config("ssim", G=paper_generator()).terms == {"lpips_vgg": 1.0, "ssim": 0.2}
    # user variants: flat dicts, term names, on-baseline additions
    mine = iqa.variant_configs(["baseline", {"mine": {"l1": 1, "grad": 0.5}}, {"g": "grad"},
                                {"plus": {"on_baseline": True, "terms": {"l2": 1.0}}}],
                               baseline="offline")
    assert mine["mine"].terms == {"l1": 1.0, "grad": 0.5} and mine["g"].terms == {"grad": 1.0}
    assert mine["plus"].terms == {**offline, "l2": offline.get("l2", 0.0) + 1.0}  # weights add up
    with pytest.raises(ValueError, match="unknown IQA variant"):
        iqa.variant_config("nope")
    with pytest.raises(ValueError, match="valid terms"):
        iqa.variant_config("bad", {"sharpness": 1.0})


def test_consistency_has_the_documented_value():
    """baseline + 0.3 * L1(f(x), f(x + 0.01 n)), n ~ N(0, 1), x = the clean prediction."""
    f = lambda t: F.avg_pool2d(t, 4)  # noqa: E731 - a deterministic approximation
    base = LossConfig({"l1": 1.0})
    cfg = iqa.variant_config("consistency", baseline=base)
    assert cfg.terms == {"l1": 1.0, "consistency": 0.3} and cfg.consistency_sigma == 0.01
    loss = cfg.build(degradation_fn=f)
    x = smooth_images()
    y = f(smooth_images(seed=3))
    # one image's draw, shared by the batch (each image sees the noise it would see alone)
    n = torch.randn(x[:1].shape, generator=torch.Generator().manual_seed(cfg.seed + 1)).expand_as(x)
    expected = base.build()(f(x), y) + 0.3 * (f(x) - f(x + 0.01 * n)).abs().flatten(1).mean(1)
    assert torch.allclose(loss(f(x), y, prediction=x), expected, atol=1e-7)
    assert (expected > base.build()(f(x), y)).all()
    with pytest.raises(ValueError, match="degradation"):
        cfg.build()


def test_restore_builds_a_loss_spec_with_the_degradation():
    """`restore(loss=<config with consistency>)` builds it around the task's degradation: the same
    result as building it by hand with degrade_prediction."""
    import rusir
    from rusir.degradations import make
    G = small_generator(resolution=32)
    deg = make("upsampling", "XS", seed=0)
    target = deg.degrade_ground_truth(smooth_images(b=1, side=32))
    cfg = iqa.variant_config("consistency", baseline=LossConfig({"l1": 1.0, "grad": 0.5}))
    a = rusir.restore(G, target, deg, loss=cfg, steps=(2, 2, 2), progress=False)
    b = rusir.restore(G, target, deg, loss=cfg.build(degradation_fn=deg.degrade_prediction),
                      steps=(2, 2, 2), progress=False)
    assert torch.equal(a.images, b.images)
    assert all(torch.isfinite(torch.stack(p.losses)).all() for p in a.phases.values())


def test_study_composite_is_the_weighted_sum_of_its_parts():
    y = smooth_images(b=3)
    x = (y + 0.1 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    m = torch.ones(3, 1, 64, 64)
    m[:, :, 10:30, 20:50] = 0
    cfg = iqa.variant_config("composite_free")
    parts = sum(w * MultiResolutionLoss(make_term(k), l1_weight=0.0)(x, y, m)
                for k, w in {"l1": 1.0, "ms_ssim": 0.5, "grad": 0.1}.items())
    coarse = MultiResolutionLoss(L1Term(), l1_weight=0.1)(x, y, m) \
        - MultiResolutionLoss(L1Term(), l1_weight=0.0)(x, y, m)
    assert torch.allclose(cfg.build()(x, y, m), parts + coarse, atol=1e-5)
    # every study variant is zero for identical inputs (weight-free ones, with a degradation)
    for name in WEIGHT_FREE:
        loss = iqa.variant_config(name, baseline="offline").build(degradation_fn=lambda t: t)
        assert torch.allclose(loss(y, y, prediction=y)
                              - (0.3 * 0.01 * (2 / torch.pi) ** 0.5 if name == "consistency" else 0),
                              torch.zeros(3), atol=2e-3), name


def test_missing_lpips_weights_are_skipped_and_recorded(offline_home, capsys):
    cfg = iqa.variant_config("lpips_vgg")
    with pytest.raises(MissingWeightsError):
        cfg.build()
    reason = iqa.check_variant(cfg)
    assert reason.startswith("MissingWeightsError") and "vgg16-397923af.pth" in reason
    assert str(offline_home) in reason
    G = small_generator(resolution=32)
    records = iqa.run_iqa_study(G, smooth_images(b=1, side=32), ["lpips_alex", "grad"],
                                tasks=["denoising"], levels=["S", "L"], steps=(1, 1, 1),
                                baseline="offline", set_metrics=("is",))
    printed = capsys.readouterr().out
    assert "skipping variant 'lpips_alex'" in printed and "alexnet-owt-7be5be79.pth" in printed
    skipped = [r for r in records if r["variant"] == "lpips_alex"]
    assert [(r["level"], r["status"]) for r in skipped] == [("S", "unavailable"), ("L", "unavailable")]
    assert all("alexnet" in r["reason"] for r in skipped)
    done = [r for r in records if r["variant"] == "grad"]
    assert len(done) == 2 and all(r["status"] == "done" for r in done)
    for r in done:   # LPIPS metrics unavailable with their reason, never another network
        assert r["metrics"]["accuracy_lpips"] is None and "vgg16" in r["unavailable"]["accuracy_lpips"]
        assert r["metrics"]["accuracy_psnr"] > 0 and r["method"] == "rusir[loss=grad]"
        assert r["set_metrics"].get("is") is None or r["set_metrics"]["is"] > 0
    table = iqa.iqa_table(records)
    assert "| denoising | S | lpips_alex | 0 | n/a |" in table
    assert "`loss lpips_alex`: skipped, MissingWeightsError" in table
    assert "`accuracy_lpips`: MissingWeightsError" in table


def test_records_feed_rusir_report(tmp_path, offline_home):
    from rusir.report import build_tables, load_records
    G = small_generator(resolution=32)
    examples = {}
    records = iqa.run_iqa_study(G, smooth_images(b=2, side=32), ["baseline", "consistency"],
                                tasks=["inpainting"], levels=["M"], steps=(1, 1, 1),
                                baseline="offline", metrics=("psnr", "ssim"), set_metrics=(),
                                out=tmp_path, examples=examples, log=None)
    loaded = load_records(tmp_path)
    assert len(loaded) == len(records) == 4
    item = tmp_path / "rusir[loss=consistency]" / "inpainting" / "M" / "0001"
    assert {p.name for p in item.iterdir()} >= {"ground_truth.png", "target.png", "prediction.png",
                                               "degraded_prediction.png", "record.json"}
    tables = build_tables(loaded, set_metrics=False)
    rows = tables["table1"].flat
    assert [(r["method"], r["n"]) for r in rows] == [("rusir[loss=baseline]", 2),
                                                     ("rusir[loss=consistency]", 2)]
    assert all(r["accuracy_psnr"] is not None for r in rows)
    # the table built from the files equals the one from the returned records
    assert iqa.iqa_table(loaded) == iqa.iqa_table(records)
    # one example figure: a row per (task, level), columns truth, target and each loss
    path = iqa.example_grid(examples, tmp_path / "examples.png")
    assert path.is_file() and set(examples) == {("baseline", "inpainting", "M"),
                                                ("consistency", "inpainting", "M")}
    rows = iqa.iqa_rows(records, generator="small")
    assert len(rows) == 4 and all(r["psnr_gain"] == r["psnr"] - r["naive_psnr"] for r in rows)


def test_study_records_equal_a_direct_runner_call(tmp_path, offline_home):
    """The study is a configuration of the runner: its records on disk equal those of run_bench
    with the same methods (`variant_methods`), and `rusir report` reads them."""
    from rusir.engine.records import load_records
    from rusir.report import write_report
    from rusir.engine.runner import run_bench
    G = small_generator(resolution=32)
    images = smooth_images(b=2, side=32)
    kw = dict(steps=(1, 1, 1), metrics=("psnr", "ssim"))
    iqa.run_iqa_study(G, images, ["baseline", "grad"], tasks=["denoising"], levels=["S", "M"],
                      baseline="offline", set_metrics=(), out=tmp_path / "study", log=None, **kw)
    configs = iqa.variant_configs(["baseline", "grad"], baseline="offline", G=G)
    run_bench(G, images, iqa.variant_methods(configs), "denoising@S,denoising@M", tmp_path / "direct",
              progress=False, **kw)
    volatile = ("_dir", "seconds", "restore_seconds")
    study, direct = ([{k: v for k, v in r.items() if k not in volatile} for r in load_records(tmp_path / d)]
                     for d in ("study", "direct"))
    assert len(study) == 8 and study == direct
    assert {r["config"]["loss"]["terms"]["grad"] for r in study if r["method"] == "rusir[loss=grad]"} == {1.0}
    report = write_report(tmp_path / "study", set_metrics=False, plots=False)
    md = report["markdown"]
    assert "accuracy PSNR ↑ rusir[loss=grad]" in md and "|  | M |" in md and "n = 2 images per cell" in md
    # a re-run of the study finds every item finished: no record is written again
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "study").rglob("record.json")}
    again = iqa.run_iqa_study(G, images, ["baseline", "grad"], tasks=["denoising"], levels=["S", "M"],
                              baseline="offline", set_metrics=(), out=tmp_path / "study", log=None,
                              **kw)
    assert len(again) == 8 and {p: p.stat().st_mtime_ns for p in stamps} == stamps


def _record(variant, task, level, j, psnr, lpips=None, fid=None):
    return {"method": iqa.method_name(variant), "variant": variant, "task": task, "level": level,
            "image_index": j, "status": "done",
            "metrics": {"accuracy_psnr": psnr, "accuracy_ssim": 0.5, "accuracy_lpips": lpips,
                        "accuracy_lpips_alex": None},
            "unavailable": {"accuracy_lpips_alex": "MissingWeightsError: alexnet"},
            "naive": {"psnr": 10.0, "ssim": 0.1},
            "set_metrics": {"fid": fid, "kid": None}, "set_unavailable": {"kid": "ValueError: 1 image"}}


def test_table_layout():
    records = [_record("ssim", "inpainting", "M", 0, 21.0),
               _record("baseline", "inpainting", "M", 0, 20.0, 0.2, 50.0),
               _record("ssim", "upsampling", "XL", 0, 15.0), _record("ssim", "upsampling", "XS", 0, 30.0),
               _record("baseline", "upsampling", "XS", 0, 28.0), _record("baseline", "upsampling", "XS", 1, 30.0)]
    rows, notes = iqa.iqa_table_rows(records)
    assert [(r["task"], r["level"], r["loss"]) for r in rows] == [
        ("inpainting", "M", "baseline"), ("inpainting", "M", "ssim"), ("upsampling", "XS", "baseline"),
        ("upsampling", "XS", "ssim"), ("upsampling", "XL", "ssim")]
    assert rows[2]["accuracy_psnr"] == 29.0 and rows[2]["n"] == 2
    assert rows[3]["dpsnr"] == 1.0 and rows[1]["dpsnr"] == 1.0 and rows[4]["dpsnr"] is None
    assert notes["accuracy_lpips_alex"].startswith("MissingWeightsError") and "kid" in notes
    md = iqa.iqa_table(records).splitlines()
    assert md[0] == ("| task | level | loss | n | PSNR ↑ | SSIM ↑ | LPIPS ↓ | LPIPS-vgg ↓ | FID ↓ | IS ↑ "
                     "| KID ↓ | patch-FID ↓ | ΔPSNR vs baseline |")
    assert md[2] == "| inpainting | M | baseline | 1 | 20.00 | 0.500 | n/a | 0.200 | 50.00 | n/a | n/a | n/a | +0.00 |"
    assert "- `kid`: ValueError: 1 image" in md
    table = list(csv.DictReader(io.StringIO(iqa.iqa_table(records, "csv"))))
    assert len(table) == 5 and table[0]["loss"] == "baseline" and table[0]["accuracy_lpips_alex"] == ""
    assert float(table[3]["dpsnr"]) == 1.0
    with pytest.raises(ValueError, match="fmt"):
        iqa.iqa_table(records, "html")


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_study_variants_ignore_holes_and_have_finite_gradients(name):
    """With the inpainting degradation, changing the prediction inside the holes changes no
    variant's value (consistency included: f_hat masks both of its images); gradients are finite."""
    from rusir.degradations import make
    deg = make("inpainting", "L", seed=0)
    truth = smooth_images(b=2)
    y = deg.degrade_ground_truth(truth)
    hole = deg.mask == 0
    assert hole.any()
    x = smooth_images(b=2, seed=5).requires_grad_(True)
    x2 = torch.where(hole, torch.rand(x.shape, generator=torch.Generator().manual_seed(9)), x.detach())
    cfg = iqa.variant_config(name, baseline="offline")
    values = []
    for pred in (x, x2):   # a fresh loss per call: same noise draws
        loss = cfg.build(degradation_fn=deg.degrade_prediction)
        values.append(loss(deg.degrade_prediction(pred), y, mask=deg.mask, prediction=pred))
    assert torch.allclose(values[0], values[1], atol=1e-6), name
    values[0].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.all(x.grad[hole.expand_as(x)] == 0)


def test_study_variants_grow_with_distortion():
    y = smooth_images(b=2)
    noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    for name in WEIGHT_FREE:
        cfg = iqa.variant_config(name, baseline="offline")
        vals = [cfg.build(degradation_fn=lambda t: t)(y + s * noise, y, prediction=y + s * noise)
                for s in (0.0, 0.02, 0.1, 0.3)]
        assert all(bool((a < b).all()) for a, b in zip(vals, vals[1:])), (name, vals)
