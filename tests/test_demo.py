"""The main job's plumbing (figures, table) and the naive baselines it is compared with."""
from __future__ import annotations

import json

import torch

from conftest import fixture_path
from rusir.demo import run_demo
from rusir.evaluation.experiment import naive_restoration


def test_naive_restoration_upsamples_small_targets_and_keeps_full_size_ones():
    ramp = torch.linspace(0, 1, 8)
    small = torch.stack([ramp.view(1, 8) * ramp.view(8, 1)] * 3)[None].repeat(2, 1, 1, 1)  # smooth
    up = naive_restoration(small, 32)
    assert up.shape == (2, 3, 32, 32) and 0 <= up.min() and up.max() <= 1
    assert torch.allclose(torch.nn.functional.avg_pool2d(up, 4), small, atol=0.08)
    full = torch.rand(1, 3, 32, 32)
    assert torch.equal(naive_restoration(full, 32), full)


def test_demo_writes_figures_and_a_consistent_table(tmp_path):
    runs = run_demo(str(fixture_path("tiny32.pkl")), n_images=2, tasks=("upsampling", "NP"),
                    steps=(2, 2, 2), out=tmp_path, progress=False, loss="offline")
    for task in ("upsampling", "NP"):
        assert (tmp_path / f"demo_{task}.png").stat().st_size > 0
    record = json.loads((tmp_path / "demo_metrics.json").read_text())
    table = (tmp_path / "demo_metrics.md").read_text()
    assert table.count("\n") == 2 + 2
    for run in runs:
        psnrs = record[run.task]["restored"]["psnr"]
        assert len(psnrs) == 2 and psnrs == run.scores["restored"]["psnr"]
        assert f"{sum(psnrs) / 2:.2f}" in table
        assert run.target.shape[-1] == (32 // 8 if run.task == "upsampling" else 32)  # level M: x8
