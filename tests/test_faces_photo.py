"""Photos end to end: aligned restoration beats the unaligned centre crop on the embedded generator,
and `rusir restore --align` writes the photo and each face's files, or refuses in one line.

The end-to-end check runs benchmarks/align.py's pipeline on 2 faces with a short schedule
(5/5/20 steps); its full run (8 faces, the generator's schedule) is the JSON record quoted in the
docs/photos.md. The CLI tests use landmarks from the renderer's geometry, so no detector is needed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rusir.cli import main
from rusir.data import avatars, heldout
from rusir.degradations import Upsampling
from rusir.degradations.base import to_pil
from rusir.faces.scenes import place_faces

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "rusir" / "assets" / "toyfaces64.safetensors"
needs_shipped = pytest.mark.skipif(not SHIPPED.is_file(), reason="toyfaces64 is not shipped here")


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/align.py", "align_bench")


@needs_shipped
def test_aligned_restoration_beats_the_unaligned_centre_crop(bench):
    """Faces at random scale, angle and position in 256 px photos, degraded x8: the aligned
    restoration's PSNR over the face region beats the unaligned one's on every face
    (measured with this short schedule: 17.0 vs 13.0 and 17.4 vs 10.8 dB)."""
    torch.set_num_threads(1)
    record = bench.run(2, steps=(5, 5, 20), render=False)
    for row in record["per_face"]:
        assert row["psnr_aligned"] > row["psnr_unaligned"] + 1.0, row
        assert 7 < row["native_px"] < 11
        assert row["factor"] == pytest.approx(64 / round(row["native_px"]), abs=1e-3)


def test_face_region_is_the_frame_quad(bench):
    lm = avatars.landmarks(64) * 2 + [10, 20]            # the frame: 128 px square at (10, 20)
    region = bench.face_region(lm, 200)
    assert int(region.sum()) == 128 * 128
    assert bool(region[20, 10]) and bool(region[147, 137]) and not bool(region[19, 10])


def degraded_photo(tmp_path: Path, n: int = 1) -> tuple[Path, list]:
    """A photo of n faces (cells of 256 px) degraded x8, and its landmarks (photo pixels)."""
    s = place_faces(heldout(n), avatars.landmarks(64), np.random.default_rng(1), cell=256,
                    side=(0.5, 0.7))
    low = Upsampling("M", seed=0, factor=8).degrade_ground_truth(s.photo)
    path = tmp_path / "photo.png"
    to_pil(low[0], "round").save(path)
    return path, [(lm / 8).tolist() for lm in s.landmarks]


@needs_shipped
def test_restore_align_writes_the_photo_and_each_face(tmp_path):
    photo, lms = degraded_photo(tmp_path, 2)
    (tmp_path / "lm.json").write_text(json.dumps(lms))
    out = tmp_path / "out"
    rc = main(["restore", str(photo), "--align", "--landmarks", str(tmp_path / "lm.json"),
               "--task", "upsampling", "--steps", "1,1,1", "--out", str(out)])
    assert rc == 0
    whole = Image.open(out / "photo_restored.png")
    natives = [np.hypot(*(np.subtract(lm[1], lm[0]))) * 64 / 15.127 for lm in lms]  # eye gap 15.1
    scale = 64 / round(max(natives))                      # the largest face keeps its pixels
    assert abs(whole.width - 64 * scale) <= 1 and abs(whole.height - 32 * scale) <= 1  # 64 x 32 px
    for i in (0, 1):
        assert Image.open(out / f"photo_face{i}_restored.png").size == (64, 64)
        assert Image.open(out / f"photo_face{i}_target.png").size[0] < 32
        assert (out / f"photo_face{i}_phases.png").is_file()
        assert set(torch.load(out / f"photo_face{i}_latent.pt")) == {"W", "W+", "W++"}
    # the same again is refused (outputs exist), and --face picks one face
    assert main(["restore", str(photo), "--align", "--landmarks", str(tmp_path / "lm.json"),
                 "--task", "upsampling", "--steps", "1,1,1", "--out", str(out)]) == 2
    rc = main(["restore", str(photo), "--align", "--landmarks", str(tmp_path / "lm.json"),
               "--face", "1", "--task", "upsampling", "--factor", "4", "--steps", "1,1,1",
               "--out", str(tmp_path / "one")])
    assert rc == 0 and sorted(p.name for p in (tmp_path / "one").glob("*_restored.png")) == [
        "photo_face1_restored.png", "photo_restored.png"]
    assert Image.open(tmp_path / "one" / "photo_face1_target.png").size == (16, 16)   # 64 / 4
    assert Image.open(tmp_path / "one" / "photo_restored.png").size == (64 * 4, 32 * 4)


def one_line(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for w in words:
        assert w in err[0], (w, err[0])


@pytest.mark.parametrize("landmarks,extra,words", [
    ([], [], ["no face found in", "photo.png"]),
    (None, ["--face", "3"], ["--face 3", "has 1 face"]),
    (None, ["--generator", "afhqcat"], ["afhqcat draws no human faces"]),
    (None, ["--task", "denoising", "--factor", "2"], ["--factor"]),
    ("bad", [], ["--landmarks", "5 (x, y) points"]),
])
def test_align_refusals_are_one_line_before_the_generator(tmp_path, capsys, monkeypatch,
                                                          landmarks, extra, words):
    from rusir.model import generators
    monkeypatch.setattr(generators, "load_generator", lambda *a, **k: pytest.fail("loaded"))
    photo, lms = degraded_photo(tmp_path)
    data = lms if landmarks is None else ([[[0, 0]] * 3] if landmarks == "bad" else landmarks)
    (tmp_path / "lm.json").write_text(json.dumps(data))
    argv = ["restore", str(photo), "--align", "--landmarks", str(tmp_path / "lm.json"),
            "--task", "upsampling", "--out", str(tmp_path / "out"), *extra]
    assert main(argv) == 2
    one_line(capsys, *words)


def test_align_options_need_align(tmp_path, capsys):
    photo, _ = degraded_photo(tmp_path)
    assert main(["restore", str(photo), "--task", "upsampling", "--face", "0",
                 "--out", str(tmp_path / "o")]) == 2
    one_line(capsys, "need --align")


def test_docs_quote_the_committed_alignment_record():
    """docs/photos.md's offline check equals benchmarks/results/align_toyfaces64.json."""
    import re
    text = " ".join((ROOT / "docs" / "photos.md").read_text().split())
    m = re.search(r"(?i)over (\d+) faces, PSNR in the face region: aligned ([\d.]+) dB, unaligned "
                  r"centre crop ([\d.]+) dB, bicubic ([\d.]+) dB; aligned beats the unaligned "
                  r"crop on (\d+) of \d+ faces and bicubic on (\d+)", text)
    assert m, "docs/photos.md's alignment sentence is missing or reworded"
    s = json.loads((ROOT / "benchmarks/results/align_toyfaces64.json").read_text())["summary"]
    assert [int(m[1]), int(m[5]), int(m[6])] == [s["n_faces"], s["aligned_wins_over_unaligned"],
                                                 s["aligned_wins_over_bicubic"]]
    for printed, key in zip(m.groups()[1:4], ("psnr_aligned", "psnr_unaligned", "psnr_bicubic")):
        assert abs(float(printed) - s[key]) <= 0.005 + 1e-9, (printed, key, s[key])
