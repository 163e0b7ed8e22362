"""`rusir data build | verify`: a test set of aligned faces from synthetic photos with known landmarks
(no detector): size filter, deduplication, EXIF date exclusion, manifest, verification, bench hash."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import mse, small_generator
from rusir.cli import main
from rusir.data import avatars, heldout
from rusir.data.manifest import (MANIFEST, dhash, exif_date, hamming, manifest_hash, sha256_file,
                                 verify)
from rusir.engine.runner import run_bench
from rusir.faces.align import align
from rusir.faces.scenes import place_faces
from rusir.faces.testset import BuildConfig, build_testset, rebuild_differences

pytestmark = pytest.mark.usefixtures("one_thread")


def save(scene, path: Path, taken: str | None = None) -> list:
    """Write a scene's photo (JPEG when dated: cameras' EXIF) and return its landmarks as JSON data."""
    arr = (scene.photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    if taken is None:
        im.save(path)
    else:
        exif = Image.Exif()
        exif.get_ifd(0x8769)[36867] = taken
        im.save(path, exif=exif, quality=95)
    return [lm.tolist() for lm in scene.landmarks]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """a.png: faces 0, 1, 2 large; b.png: face 0 again (elsewhere, another angle) and face 3;
    c.png: face 4 too small (frame ~30 px < 64)."""
    root = tmp_path_factory.mktemp("photos")
    faces, lms = heldout(5), avatars.landmarks(64)
    given = {"a.png": save(place_faces(faces[:3], lms, np.random.default_rng(0), cell=200,
                                       side=(0.7, 0.9)), root / "a.png"),
             "b.png": save(place_faces(faces[[0, 3]], lms, np.random.default_rng(1), cell=200,
                                       side=(0.7, 0.9)), root / "b.png"),
             "c.png": save(place_faces(faces[4:5], lms, np.random.default_rng(2), cell=60,
                                       side=(0.45, 0.5)), root / "c.png")}
    (root / "landmarks.json").write_text(json.dumps(given))
    return root


def build(photos: Path, out: Path, **kw) -> dict:
    return build_testset(BuildConfig(photos, out, landmarks=photos / "landmarks.json", **kw),
                         progress=False)


def test_build_aligns_filters_and_deduplicates(photos, tmp_path):
    out = tmp_path / "set"
    m = build(photos, out)
    kept = [(f["source"], f["face"]) for f in m["faces"]]
    assert kept == [("a.png", 0), ("a.png", 1), ("a.png", 2), ("b.png", 1)]
    reasons = {(s["source"], s["face"]): s["reason"] for s in m["skipped"]}
    assert reasons[("b.png", 0)].startswith("duplicate of 0000.png")
    assert "--min-face 64" in reasons[("c.png", 0)]
    assert sorted(p.name for p in out.glob("*.png")) == ["0000.png", "0001.png", "0002.png", "0003.png"]
    assert m["template"] == "toyfaces64" and m["resolution"] == 64
    assert m["detector"].startswith("landmarks file landmarks.json")
    for f in m["faces"]:
        assert sha256_file(out / f["file"]) == f["sha256"]
        assert np.array(f["landmarks"]).shape == (5, 2) and np.array(f["quad"]).shape == (4, 2)
    # the PNG is the face aligned by the template from its recorded landmarks
    photo = Image.open(photos / "a.png").convert("RGB")
    face = align(photo, m["faces"][1]["landmarks"], 64, "toyfaces64")
    written = np.asarray(Image.open(out / "0001.png"), dtype=np.float32) / 255
    assert np.abs(face.image[0].permute(1, 2, 0).numpy() - written).max() <= 0.5 / 255 + 1e-6
    # and it is that held-out face: close to the truth it was placed from
    truth = heldout(2)[1].permute(1, 2, 0).numpy()
    assert np.abs(written - truth).mean() < 0.06
    # without deduplication and the size filter every face is kept
    m = build(photos, tmp_path / "all", dedup_bits=0, min_face=0)
    assert len(m["faces"]) == 6 and m["skipped"] == []


def test_every_photo_extension_is_found_in_any_case_and_the_manifest_text_is_sorted(tmp_path):
    from rusir.data.manifest import dumps
    from rusir.faces.testset import PHOTO_EXTENSIONS, _photos
    names = ["a.jpg", "b.JPEG", "c.png", "d.Tif", "e.tiff", "f.webp", "g.bmp"]
    for name in names + ["notes.txt", "h.gif"]:
        (tmp_path / "sub" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "sub" / name).write_bytes(b"")
    assert [p.name for p in _photos(tmp_path, tmp_path / "out")] == names and len(PHOTO_EXTENSIONS) == 7
    assert dumps({"b": 1, "a": {"d": 0, "c": 1}}) == '{\n "a": {\n  "c": 1,\n  "d": 0\n },\n "b": 1\n}\n'


def test_a_photo_without_a_face_is_recorded_as_skipped_not_fatal(photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes((photos / "a.png").read_bytes())
    Image.new("RGB", (64, 64)).save(folder / "d.png")
    given = json.loads((photos / "landmarks.json").read_text())
    (folder / "landmarks.json").write_text(json.dumps({"a.png": given["a.png"], "d.png": []}))
    m = build(folder, tmp_path / "set")
    assert len(m["faces"]) == 3
    assert [(s["source"], s["face"]) for s in m["skipped"]] == [("d.png", None)]
    assert "no face found in d.png" in m["skipped"][0]["reason"]


def test_dhash_separates_faces_and_survives_resizing():
    faces = heldout(3)
    ims = [Image.fromarray((f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for f in faces]
    h = [dhash(im) for im in ims]
    assert len(h[0]) == 64                                     # 256 bits in hex
    assert hamming(h[0], dhash(ims[0].resize((48, 48)).resize((64, 64)))) <= 16
    assert min(hamming(h[0], h[1]), hamming(h[0], h[2]), hamming(h[1], h[2])) > 48
    assert hamming("ff", "0f") == 4


def test_verify_finds_altered_missing_and_stray_files(photos, tmp_path):
    out = tmp_path / "set"
    build(photos, out)
    assert verify(out) == [] and rebuild_differences(out, photos) == []
    digest = manifest_hash(out)
    assert digest == sha256_file(out / MANIFEST)
    im = Image.open(out / "0002.png").convert("RGB")
    im.putpixel((10, 10), tuple(255 - v for v in im.getpixel((10, 10))))   # one pixel altered
    im.save(out / "0002.png")
    (out / "0001.png").unlink()
    Image.new("RGB", (64, 64)).save(out / "stray.png")
    problems = verify(out)
    assert problems == ["0001.png: missing", "0002.png: altered (its sha256 is not the manifest's)",
                        "stray.png: not in the manifest"]
    with pytest.raises(ValueError, match="does not match its manifest.json: 0001.png: missing"):
        manifest_hash(out)
    assert main(["data", "verify", str(out)]) == 1


def test_rebuild_notices_a_changed_source(photos, tmp_path):
    out, copy = tmp_path / "set", tmp_path / "photos"
    copy.mkdir()
    for p in photos.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    build(copy, out)
    Image.open(copy / "b.png").transpose(Image.FLIP_LEFT_RIGHT).save(copy / "b.png")
    assert rebuild_differences(out, copy) == ["0003.png: source b.png changed (sha256)"]


def test_exclude_before_reads_exif_and_drops_undated_unless_kept(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    lms = avatars.landmarks(64)
    given = {}
    for name, taken, i in (("old.jpg", "2015:06:01 10:00:00", 0), ("new.jpg", "2021:03:04 10:00:00", 1),
                           ("undated.png", None, 2)):
        scene = place_faces(heldout(3)[i:i + 1], lms, np.random.default_rng(i), cell=200, side=(0.7, 0.9))
        given[name] = save(scene, photos / name, taken)
    (photos / "landmarks.json").write_text(json.dumps(given))
    assert exif_date(photos / "old.jpg").year == 2015 and exif_date(photos / "undated.png") is None
    m = build(photos, tmp_path / "a", exclude_before="2019-01-01")
    assert [f["source"] for f in m["faces"]] == ["new.jpg"]
    assert m["faces"][0]["date"] == "2021-03-04T10:00:00" and m["exclude_before"] == "2019-01-01"
    reasons = {s["source"]: s["reason"] for s in m["skipped"]}
    assert reasons == {"old.jpg": "taken 2015-06-01 before 2019-01-01",
                       "undated.png": "no EXIF DateTimeOriginal (--keep-undated keeps it)"}
    m = build(photos, tmp_path / "b", exclude_before="2019-01-01", keep_undated=True)
    assert [f["source"] for f in m["faces"]] == ["new.jpg", "undated.png"]
    (photos / "broken.jpg").write_bytes(b"not a photo")
    m = build(photos, tmp_path / "c")                        # no date filter: all three
    assert len(m["faces"]) == 3
    assert m["skipped"][0]["source"] == "broken.jpg" and "cannot read" in m["skipped"][0]["reason"]


def test_cli_build_and_one_line_errors(photos, tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["data", "build", "--photos", str(photos), "--out", str(out),
                 "--landmarks", str(photos / "landmarks.json")]) == 0
    assert "4 faces written" in capsys.readouterr().out
    assert main(["data", "verify", str(out), "--photos", str(photos)]) == 0
    assert main(["data", "build", "--photos", str(photos), "--out", str(out),
                 "--landmarks", str(photos / "landmarks.json")]) == 2      # exists: refused
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err
    assert main(["data", "build", "--photos", str(photos), "--out", str(tmp_path / "x"),
                 "--exclude-before", "2019-13-45"]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err
    assert main(["data", "build", "--photos", str(tmp_path / "none"), "--out", str(tmp_path / "y")]) == 2
    assert "not a folder" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a.png": [[[0, 0]] * 5]}))
    assert main(["data", "build", "--photos", str(photos), "--out", str(tmp_path / "z"),
                 "--landmarks", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_bench_records_the_manifest_hash_and_refuses_an_altered_set(photos, tmp_path):
    out = tmp_path / "set"
    build(photos, out)
    G = small_generator(resolution=16)
    kw = dict(methods={"rusir": lambda G, target, degradation, **k: _naive(G, target)},
              tasks="denoising@M", steps=(1, 1, 1), loss=mse, progress=False, metrics=("psnr",),
              n_images=1, save_latent=False)
    run_bench(G, str(out), out=tmp_path / "b", **kw)
    config = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert config["images_manifest"] == sha256_file(out / MANIFEST)
    run_bench(G, "heldout:1", out=tmp_path / "h", **kw)
    assert json.loads((tmp_path / "h" / "bench.json").read_text())["images_manifest"] is None
    (out / "0000.png").write_bytes(b"not the face")
    with pytest.raises(ValueError, match="0000.png: altered"):
        run_bench(G, str(out), out=tmp_path / "c", **kw)


def _naive(G, target):
    from rusir.inversion.restore import RestoreResult
    size = G.img_resolution
    return RestoreResult(torch.nn.functional.interpolate(target, size=(size, size)), {})


def test_detected_faces_record_the_detector(photos, tmp_path, monkeypatch):
    """Without --landmarks the detector finds the faces (a stand-in here) and is named."""
    from rusir.faces import detect
    given = json.loads((photos / "landmarks.json").read_text())
    calls = []

    def stand_in(photo, name=None):
        calls.append(name)
        return [np.array(lm) for lm in given[f"{'abc'[len(calls) - 1]}.png"]]
    monkeypatch.setattr(detect, "detect_faces", stand_in)
    m = build_testset(BuildConfig(photos, tmp_path / "set", detector="yunet"), progress=False)
    assert calls == ["yunet"] * 3 and m["detector"] == "yunet" and len(m["faces"]) == 4
    with pytest.raises(ValueError, match="--detector 'haar'"):
        BuildConfig(photos, tmp_path / "x", detector="haar").check()


def test_a_real_photo_with_dlib_offline(tmp_path, monkeypatch):
    """skimage's astronaut (public domain) and a 0.6x re-encoded copy: dlib finds the face in
    both (68 points), the copy is a duplicate, the set verifies and rebuilds from its manifest."""
    import importlib.util
    if not all(importlib.util.find_spec(m) for m in ("dlib", "face_recognition_models")):
        pytest.skip("dlib-bin / face_recognition_models absent (pip install 'rusir[photos]')")
    skdata = pytest.importorskip("skimage.data", reason="scikit-image absent (test extra)")
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = Image.fromarray(skdata.astronaut())
    photo.save(photos / "a.png")
    photo.resize((300, 300), Image.LANCZOS).save(photos / "b.jpg", quality=90)
    m = build_testset(BuildConfig(photos, tmp_path / "set", generator="ffhq", size=96,
                                  detector="dlib"), progress=False)
    assert m["detector"] == "dlib" and [f["source"] for f in m["faces"]] == ["a.png"]
    assert m["skipped"][0]["source"] == "b.jpg" and "duplicate of 0000.png" in m["skipped"][0]["reason"]
    assert verify(tmp_path / "set") == [] and rebuild_differences(tmp_path / "set", photos) == []


def test_an_output_folder_inside_the_photos_is_not_read_as_photos(photos, tmp_path):
    copy = tmp_path / "photos"
    copy.mkdir()
    for p in photos.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    first = build(copy, copy / "set")
    again = build(copy, copy / "set", overwrite=True)       # its own PNGs are not new photos
    assert [f["sha256"] for f in again["faces"]] == [f["sha256"] for f in first["faces"]]
    assert [s["source"] for s in again["skipped"]] == [s["source"] for s in first["skipped"]]
    assert rebuild_differences(copy / "set", copy) == []
