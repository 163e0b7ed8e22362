"""Fidelity is the TRUE degradation of the prediction against the target (spec 6), never the
differentiable approximation the loss uses, in every place that computes it: the experiment
helper (demo, notebooks, quality bar), the benchmark and the IQA-loss study.

JPEG (deartifacting) is the clearest case: the true operator is libjpeg, deterministic and
8-bit, and the test recomputes it here with Pillow directly. Denoising checks the item's seed:
the true Poisson draw of the prediction must use the same seed as its target.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import mse, small_generator, smooth_images
from rusir import degradations
from rusir.engine.runner import run_bench
from rusir.studies.experiment import run_task
from rusir.metrics import ssim
from rusir.inversion.restore import RestoreResult

QUALITY_M = 12  # deartifacting level M


def pillow_jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """[H, W, 3] uint8 -> its libjpeg encode + decode at `quality` (Pillow's defaults)."""
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two 8-bit images, in dB."""
    err = (a.astype(np.float64) - b.astype(np.float64)) / 255
    return float(10 * np.log10(1 / np.mean(err ** 2)))


def hwc(img: torch.Tensor) -> np.ndarray:
    """[3, H, W] float holding exact multiples of 1/255 -> [H, W, 3] uint8."""
    return np.round(img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def true_degradation(task: str, rgb: np.ndarray, seed: int) -> np.ndarray:
    """The true level-M degradation of one 8-bit image degraded with `seed`."""
    if task == "deartifacting":
        return pillow_jpeg(rgb, QUALITY_M)
    fresh = degradations.make(task, "M", seed=seed)
    return hwc(fresh.degrade_ground_truth(chw(rgb)[None])[0])


def check_item_folder(folder, task: str, seed: int) -> dict:
    """An item folder of `rusir bench`'s layout: its degraded prediction is the true degradation
    of its prediction, its target that of its ground truth (same seed), and its fidelity metrics
    compare the two. Returns the record."""
    record = json.loads((folder / "record.json").read_text())
    prediction, degraded = png(folder / "prediction.png"), png(folder / "degraded_prediction.png")
    target = png(folder / "target.png")
    assert np.array_equal(target, true_degradation(task, png(folder / "ground_truth.png"), seed))
    assert np.array_equal(degraded, true_degradation(task, prediction, seed)), folder
    metrics = record["metrics"]
    assert metrics["fidelity_psnr"] == pytest.approx(psnr_db(degraded, target), abs=1e-4)
    assert metrics["fidelity_ssim"] == pytest.approx(
        float(ssim(chw(degraded)[None], chw(target)[None])), abs=1e-5)
    return record


def test_approximation_and_truth_differ_for_the_tasks_used_here():
    """Otherwise the tests below could not tell the approximation from the truth."""
    x = smooth_images(b=1, side=32)
    for task in ("deartifacting", "denoising"):
        deg = degradations.make(task, "M", seed=3)
        gap = (deg.degrade_ground_truth(x) - deg.degrade_prediction(x)).abs().mean()
        assert gap > 0.005, (task, float(gap))


@pytest.mark.parametrize("task", ["deartifacting", "denoising"])
def test_run_task_fidelity_is_the_true_degradation_of_the_clamped_prediction(task):
    G = small_generator(resolution=32)
    truth = torch.round(smooth_images(b=2, side=32, seed=4) * 255) / 255
    # an 8-bit prediction that overshoots [0, 1] (a generator's output is never clamped)
    levels = torch.round((truth.flip(-1) * 1.3 - 0.15) * 255)
    prediction = levels / 255

    def stand_in(G, target, degradation, loss=None, **kw):
        return RestoreResult(prediction.clone(), {})

    run = run_task(G, truth, task, "M", seed=9, method=stand_in)
    clamped = levels.clamp(0, 255)
    for i in range(2):
        target = hwc(run.target[i])
        assert np.array_equal(target, true_degradation(task, hwc(truth[i]), seed=9 + i))
        expected = psnr_db(true_degradation(task, hwc(clamped[i] / 255), seed=9 + i), target)
        assert run.scores["fidelity_psnr"][i] == pytest.approx(expected, abs=1e-4), (task, i)


def test_bench_fidelity_is_the_true_degradation_with_the_items_seed(tmp_path):
    G = small_generator(resolution=32)

    def stand_in(G, target, degradation, *, loss=None, seed=0, progress=True, **config):
        """A fixed, visibly different prediction: the upside-down target."""
        return RestoreResult(target.flip(-2).clamp(0, 1), {})

    run_bench(G, "heldout:2", out=tmp_path, methods={"stand_in": stand_in},
              tasks="deartifacting@M,denoising@M", metrics=("psnr", "ssim"), steps=(1, 1, 1),
              loss=mse, progress=False)
    folders = sorted(tmp_path.glob("stand_in/*/M/*"))
    assert len(folders) == 4
    for folder in folders:
        task = folder.parent.parent.name
        record = json.loads((folder / "record.json").read_text())
        check_item_folder(folder, task, record["degradation_seed"])


def test_iqa_study_fidelity_is_the_true_degradation(tmp_path, monkeypatch):
    from rusir.studies import iqa
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    G = small_generator(resolution=32)
    records = iqa.run_iqa_study(G, smooth_images(b=2, side=32), ["baseline"],
                                tasks=["deartifacting"], levels=["M"], steps=(1, 1, 1),
                                baseline="offline", metrics=("psnr", "ssim"), set_metrics=(),
                                out=tmp_path / "study", log=None)
    folders = sorted((tmp_path / "study").glob("*/deartifacting/M/*"))
    assert len(folders) == len(records) == 2
    for folder, rec in zip(folders, records):
        assert check_item_folder(folder, "deartifacting", seed=0)["metrics"] == rec["metrics"]
