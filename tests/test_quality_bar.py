"""benchmarks/quality_bar.py: summary arithmetic and resuming without redoing finished batches."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality_bar.py"


@pytest.fixture(scope="module")
def qb():
    spec = importlib.util.spec_from_file_location("quality_bar", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_means_and_wins(qb):
    per_image = {"restored": {"psnr": [20.0, 18.0, 25.0], "ssim": [0.5, 0.6, 0.7]},
                 "naive": {"psnr": [19.0, 18.5, 22.0], "ssim": [0.4, 0.4, 0.4]}}
    s = qb.summarize(per_image)
    assert s == {"psnr_rusir": 21.0, "psnr_naive": 19.833, "ssim_rusir": 0.6, "ssim_naive": 0.4,
                 "psnr_wins": 2, "n_images": 3}


def test_batches_are_kept_and_a_rerun_resumes(qb, tmp_path, monkeypatch):
    calls = []
    real = qb.run_task
    monkeypatch.setattr(qb, "run_task", lambda *a, **k: calls.append(k["seed"]) or real(*a, **k))
    args = ["--n-images", "2", "--batch", "1", "--tasks", "denoising", "--steps", "1,1,1",
            "--out", str(tmp_path)]
    path = qb.main(args)
    record = json.loads(path.read_text())
    assert calls == [0, 1]                       # one batch per image, global per-image seeds
    assert record["denoising"]["summary"]["n_images"] == 2
    assert record["_meta"]["steps"] == [1, 1, 1]
    qb.main(args[:1] + ["3"] + args[2:])         # one more image: only it is run
    assert calls == [0, 1, 2]
    assert len(json.loads(path.read_text())["denoising"]["per_image"]["restored"]["psnr"]) == 3
    qb.main(args[:-2] + ["--steps", "2,1,1", "--out", str(tmp_path)])  # other steps: start over
    assert calls == [0, 1, 2, 0, 1]
