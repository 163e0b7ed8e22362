"""rusir.studies.results: the one aggregation (rusir.report.summarise over the runner's
records) shown as rows, a text table and a CSV file -- nothing averaged a second time."""
from __future__ import annotations

import csv
import math

import pytest

from rusir.report import summarise
from rusir.studies.results import SUMMARY_COLUMNS, summary_rows, summary_table, write_summary


def _record(task: str, level: str, image: int, psnr: float, naive: float, ssim: float = 0.5) -> dict:
    return {"method": "rusir", "task": task, "level": level, "image_index": image,
            "metrics": {"accuracy_psnr": psnr, "accuracy_ssim": ssim},
            "naive": {"psnr": naive, "ssim": 0.4}, "restore_seconds": 2.0}


RECORDS = [_record("upsampling", "M", 0, 20.0, 18.0), _record("upsampling", "M", 1, 22.0, 23.0, 0.7),
           _record("denoising", "M", 0, 30.0, 25.0)]


def test_rows_show_summarise_means():
    summary = summarise(RECORDS, by=("task", "level"))
    rows = summary_rows(summary, ("task", "level"))
    assert [(r["task"], r["level"], r["n"]) for r in rows] == [("upsampling", "M", 2), ("denoising", "M", 1)]
    up = rows[0]
    assert (up["psnr"], up["naive_psnr"], up["ssim"]) == (21.0, 20.5, pytest.approx(0.6))
    assert up["psnr_gain"] == pytest.approx(0.5) and up["psnr_wins"] == 1 and up["seconds"] == 2.0
    assert list(up) == ["task", "level"] + list(SUMMARY_COLUMNS)
    no_naive = summarise([{**RECORDS[0], "naive": None}], by=("task",))
    assert summary_rows(no_naive, ("task",))[0]["psnr_gain"] is None
    with pytest.raises(ValueError, match="2 keys"):
        summary_rows(summary, ("task",))


def test_table_and_csv(tmp_path):
    summary = summarise(RECORDS, by=("task",))
    table = summary_table(summary, by=("task",))
    lines = table.splitlines()
    assert lines[0].split() == ["task", "n", "naive_psnr", "psnr", "psnr_gain", "ssim"]
    assert lines[1].split() == ["upsampling", "2", "20.500", "21.000", "0.500", "0.600"]
    assert len({len(line) for line in lines}) == 1                 # fixed width
    assert summary_table(summarise([{**RECORDS[0], "naive": None}], by=("task",)), ("task",),
                         ("psnr_gain",)).splitlines()[1].split() == ["upsampling", "n/a"]
    with pytest.raises(ValueError, match="unknown summary column"):
        summary_table(summary, ("task",), ("lpips",))
    path = write_summary(summary, ("task",), tmp_path / "sub" / "s.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["task"] for r in rows] == ["upsampling", "denoising"]
    assert math.isclose(float(rows[1]["psnr_gain"]), 5.0) and rows[1]["n"] == "1"
