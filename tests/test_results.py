"""rusir.studies.results: per-image rows, JSON/CSV files, summaries and plots."""
from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import pytest

from rusir.studies.results import (plot_metric, read_results, select, summarize, summary_table, task_rows,
                           write_results)


def _run(task="upsampling", level="M"):
    scores = {"restored": {"psnr": [20.0, 22.0], "ssim": [0.5, 0.6]},
              "naive": {"psnr": [18.0, 23.0], "ssim": [0.4, 0.7]},
              "fidelity_psnr": [30.0, 31.0],
              "phases": {"W": {"psnr": [15.0, 16.0], "ssim": [0.1, 0.2]},
                         "W+": {"psnr": [20.0, 22.0], "ssim": [0.5, 0.6]}},
              "seconds": 3.5}
    return SimpleNamespace(task=task, level=level, scores=scores)


def test_task_rows():
    rows = task_rows(_run(), first_image=4, generator="g", config="c")
    assert len(rows) == 2
    r = rows[1]
    assert list(r)[:2] == ["generator", "config"]
    assert (r["task"], r["level"], r["image"], r["psnr"], r["naive_psnr"]) == ("upsampling", "M", 5, 22.0, 23.0)
    assert r["psnr_gain"] == -1.0 and rows[0]["psnr_gain"] == 2.0
    assert (r["psnr_W"], r["psnr_W+"], r["fidelity_psnr"], r["seconds"]) == (16.0, 22.0, 31.0, 3.5)
    assert "psnr_W++" not in r


def test_write_and_read(tmp_path):
    rows = task_rows(_run()) + [{"task": "x", "level": "S", "psnr": 1.5, "extra": "only here"}]
    paths = write_results(rows, tmp_path / "sub" / "task_upsampling_M")
    assert paths["json"].name == "task_upsampling_M.json" and paths["csv"].name == "task_upsampling_M.csv"
    assert read_results(paths["json"]) == rows
    with paths["csv"].open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 and table[2]["extra"] == "only here" and table[0]["extra"] == ""
    assert float(table[1]["psnr"]) == 22.0


def test_summaries():
    rows = task_rows(_run("upsampling", "XS")) + task_rows(_run("upsampling", "M")) + task_rows(_run("denoising", "M"))
    assert len(select(rows, {"level": "M"})) == 4 and select(rows) == rows
    s = summarize(rows)
    assert [(r["task"], r["level"], r["n"]) for r in s] == [("upsampling", "XS", 2), ("upsampling", "M", 2), ("denoising", "M", 2)]
    assert s[0]["psnr"] == 21.0 and s[0]["psnr_gain"] == 0.5 and s[0]["naive_psnr"] == 20.5
    assert [r["image"] for r in task_rows(_run())] == [0, 1]
    s = summarize(rows, by=("task",), where={"level": "M"})
    assert [(r["task"], r["n"]) for r in s] == [("upsampling", 2), ("denoising", 2)]
    assert math.isnan(summarize(rows, by=("task",), metrics=("nope",))[0]["nope"])
    table = summary_table(rows)
    assert table.splitlines()[0].split() == ["task", "level", "n", "naive_psnr", "psnr", "psnr_gain", "ssim"]
    assert "21.000" in table and len(table.splitlines()) == 4


def test_plot_metric(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    rows = [dict(r, config=c) for c in ("a", "b") for lv in ("XS", "S", "M") for r in task_rows(_run(level=lv))]
    fig = plot_metric(rows, series="config", path=tmp_path / "new" / "p.png", where={"config": "a"})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["XS", "S", "M"]   # x: level by default
    assert len(ax.lines) == 1 and list(ax.lines[0].get_ydata()) == [21.0] * 3
    assert (tmp_path / "new" / "p.png").stat().st_size > 1000
    assert ax.get_ylabel() == "psnr" and ax.get_legend_handles_labels()[1] == ["a"]
    fig = plot_metric(rows, x="level", metrics=("naive_psnr", "psnr"))
    assert len(fig.axes[0].lines) == 2 and fig.axes[0].get_ylabel() == "value"
    assert fig.axes[0].get_legend_handles_labels()[1] == ["naive_psnr", "psnr"]
