"""benchmarks/quality_bar.py: summary arithmetic and resuming without redoing finished batches."""
import json
from pathlib import Path

import pytest

from conftest import load_script



@pytest.fixture(scope="module")
def qb():
    return load_script("benchmarks/quality_bar.py", "quality_bar")


def test_summary_means_and_wins(qb):
    per_image = {"restored": {"psnr": [20.0, 18.0, 25.0], "ssim": [0.5, 0.6, 0.7]},
                 "naive": {"psnr": [19.0, 18.5, 22.0], "ssim": [0.4, 0.4, 0.4]}}
    s = qb.summarize(per_image)
    assert s == {"psnr_rusir": 21.0, "psnr_naive": 19.833, "ssim_rusir": 0.6, "ssim_naive": 0.4,
                 "psnr_wins": 2, "n_images": 3}


def test_records_summary_equals_a_hand_computation(qb):
    """The JSON entry of a task is computed from its records: per-image lists in image order,
    means, wins over the naive baseline (from the records' `naive` field), restore seconds."""
    def rec(j, p, s, np_, ns, sec):
        return {"method": "rusir", "task": "denoising", "level": "M", "image_index": j,
                "metrics": {"accuracy_psnr": p, "accuracy_ssim": s, "fidelity_psnr": 40.0},
                "naive": {"psnr": np_, "ssim": ns}, "restore_seconds": sec}
    records = [rec(2, 25.0, 0.7, 22.0, 0.4, 1.5), rec(0, 20.0, 0.5, 19.0, 0.4, 2.0),
               rec(1, 18.0, 0.6, 18.5, 0.4, 0.25)]
    entry = qb.task_entry(records)
    assert entry["per_image"] == {"restored": {"psnr": [20.0, 18.0, 25.0], "ssim": [0.5, 0.6, 0.7]},
                                  "naive": {"psnr": [19.0, 18.5, 22.0], "ssim": [0.4, 0.4, 0.4]}}
    assert entry["seconds"] == 3.75
    assert entry["summary"] == {"psnr_rusir": 21.0, "psnr_naive": 19.833, "ssim_rusir": 0.6,
                                "ssim_naive": 0.4, "psnr_wins": 2, "n_images": 3}


def test_batches_are_kept_and_a_rerun_resumes(qb, tmp_path, monkeypatch):
    import functools
    from rusir.engine.records import load_records
    calls = []
    real = qb.restore

    @functools.wraps(real)
    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(qb, "restore", counting)
    args = ["--n-images", "2", "--batch", "1", "--tasks", "denoising", "--steps", "1,1,1",
            "--out", str(tmp_path), "--records", str(tmp_path / "records")]
    path = qb.main(args)
    record = json.loads(path.read_text())
    assert len(calls) == 2                       # one item per image
    store = Path(record["_meta"]["records"])
    recs = load_records(store)
    assert [r["degradation_seed"] for r in recs] == [0, 1]   # global per-image seeds (face index)
    assert record["denoising"] == qb.task_entry(recs)        # the JSON is the records' summary
    assert record["denoising"]["summary"]["n_images"] == 2
    assert record["_meta"]["steps"] == [1, 1, 1]
    qb.main(args[:1] + ["3"] + args[2:])         # one more image: only it is run
    assert len(calls) == 3
    assert len(json.loads(path.read_text())["denoising"]["per_image"]["restored"]["psnr"]) == 3
    qb.main(args[:1] + ["2"] + args[2:])         # fewer images: nothing runs, the first two count
    assert len(calls) == 3 and json.loads(path.read_text())["denoising"] == record["denoising"]
    qb.main(args[:6] + ["--steps", "2,1,1"] + args[8:])  # other steps: start over
    assert len(calls) == 5


def test_image_seeds_give_the_demo_targets(tmp_path):
    """`degradation_seeds="image"` draws the targets one batch run_task(..., seed) draws."""
    import torch
    from conftest import small_generator
    from rusir.data import heldout, heldout_paths
    from rusir.studies.experiment import run_task
    from rusir.engine.records import load_records, read_png
    from rusir.engine.runner import run_bench
    G = small_generator(resolution=16)
    run_bench(G, heldout_paths()[3:6], {"naive": lambda G, target, degradation, **k: qb_naive(G, target)},
              [("UNAP", "M")], tmp_path, seed=3, degradation_seeds="image", metrics=("psnr",),
              progress=False)
    batch = run_task(G, heldout(6, size=16)[3:], "UNAP", "M", seed=3,
                     method=lambda G, target, degradation, **k: qb_naive(G, target))
    targets = torch.cat([read_png(f"{r['_dir']}/target.png") for r in load_records(tmp_path)])
    assert torch.equal(targets, batch.target)


def qb_naive(G, target):
    import torch.nn.functional as F
    from rusir.inversion.restore import RestoreResult
    s = G.img_resolution
    return RestoreResult(F.interpolate(target, size=(s, s), mode="bicubic", align_corners=False), {})
