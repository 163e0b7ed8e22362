"""The main job's plumbing (figures, table) and the naive baselines it is compared with."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from conftest import fixture_path
from rusir.demo import run_demo
from rusir.studies.experiment import mean, naive_restoration


def test_naive_restoration_upsamples_small_targets_and_keeps_full_size_ones():
    ramp = torch.linspace(0, 1, 8)
    small = torch.stack([ramp.view(1, 8) * ramp.view(8, 1)] * 3)[None].repeat(2, 1, 1, 1)  # smooth
    up = naive_restoration(small, 32)
    assert up.shape == (2, 3, 32, 32) and 0 <= up.min() and up.max() <= 1
    assert torch.allclose(torch.nn.functional.avg_pool2d(up, 4), small, atol=0.08)
    full = torch.rand(1, 3, 32, 32)
    assert torch.equal(naive_restoration(full, 32), full)


def markdown_rows(table: str) -> list[dict[str, str]]:
    """The rows of a Markdown table as {header: cell} dicts (the separator line skipped)."""
    lines = [line.strip() for line in table.strip().splitlines()]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, separator, body = cells[0], cells[1], cells[2:]
    assert all(set(c) <= set("-:") for c in separator), separator
    assert all(len(row) == len(header) for row in body), (header, body)
    return [dict(zip(header, row)) for row in body]


def test_demo_writes_figures_and_a_consistent_table(tmp_path):
    runs = run_demo(str(fixture_path("tiny32.pkl")), n_images=2, tasks=("upsampling", "NP"),
                    steps=(2, 2, 2), out=tmp_path, progress=False, loss="offline")
    for task in ("upsampling", "NP"):
        assert (tmp_path / f"demo_{task}.png").stat().st_size > 0
    record = json.loads((tmp_path / "demo_metrics.json").read_text())
    rows = markdown_rows((tmp_path / "demo_metrics.md").read_text())
    assert [(row["task"], row["level"]) for row in rows] == [("upsampling", "M"), ("NP", "M")]
    for run, row in zip(runs, rows):
        scores = record[run.task]
        for which in ("restored", "naive"):
            assert scores[which] == run.scores[which] and len(scores[which]["psnr"]) == 2
        # every cell under its own header: naive and RUSIR, PSNR and SSIM, are not interchangeable
        expected = {"PSNR naive": f"{mean(scores['naive']['psnr']):.2f}",
                    "PSNR RUSIR": f"{mean(scores['restored']['psnr']):.2f}",
                    "SSIM naive": f"{mean(scores['naive']['ssim']):.3f}",
                    "SSIM RUSIR": f"{mean(scores['restored']['ssim']):.3f}",
                    "PSNR after W / W+ / W++": " / ".join(
                        f"{mean(scores['phases'][space]['psnr']):.2f}" for space in ("W", "W+", "W++")),
                    "s": f"{scores['seconds']:.1f}"}
        assert {k: row[k] for k in expected} == expected, run.task
        compared = [expected[k] for k in ("PSNR naive", "PSNR RUSIR", "SSIM naive", "SSIM RUSIR")]
        assert len(set(compared)) == 4  # distinct values, so a swap of columns would show
        # the restored images are the last phase's
        assert expected["PSNR RUSIR"] == expected["PSNR after W / W+ / W++"].split(" / ")[-1]
        assert run.target.shape[-1] == (32 // 8 if run.task == "upsampling" else 32)  # level M: x8


def test_rusir_demo_writes_into_the_untracked_run_folder_and_says_where(tmp_path, monkeypatch, capsys):
    """A first `make demo` leaves the clone clean: its default folder is runs/demo, which git ignores."""
    from rusir.cli import main
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--generator", str(fixture_path("tiny32.pkl")), "--n-images", "1",
                 "--steps", "1,1,1", "--loss", "offline"]) == 0
    assert (tmp_path / "runs" / "demo" / "demo_metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert capsys.readouterr().out.strip().splitlines()[-1] == "done: the figures and the metrics are in runs/demo/"
    root = Path(__file__).resolve().parents[1]
    assert "runs/" in (root / ".gitignore").read_text().split()
    makefile = (root / "Makefile").read_text()
    assert "-m rusir demo --out runs/demo\n" in makefile and "-m rusir demo --out figures\n" in makefile
