"""The restored photo: face-mask paste, output size under control, per-face results written when
done and resumed, transparency kept, EXIF rotation, the generator's template, warnings."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import small_generator
from rusir.cli import main
from rusir.data import avatars, heldout
from rusir.degradations import Upsampling
from rusir.faces import align as A
from rusir.faces import photo as P
from rusir.faces.paste import face_mask, paste_all
from rusir.faces.scenes import place_faces
from rusir.degradations.base import to_pil



def l2(x, y, mask=None):
    return (x - y).pow(2).flatten(1).mean(1)


def upright_face(size: int = 200) -> tuple[np.ndarray, A.AlignedFace]:
    lm = np.array([[80, 100], [120, 100], [100, 120], [85, 136], [115, 136]], float)
    return lm, A.align(Image.new("RGB", (size, size)), lm, 32)


# ---------------------------------------------------------------------------- face-mask paste
def test_mask_paste_keeps_the_background_the_square_paste_replaces():
    """A white restoration pasted on a black photo: the crop's corners (background, hair)
    stay black with the mask, turn white with the square; the face's centre is white in both."""
    lm, face = upright_face()
    photo, white = torch.zeros(1, 3, 200, 200), torch.ones(1, 3, 32, 32)
    square = paste_all(photo, [(face, white)], how="square")
    masked = paste_all(photo, [(face, white)], how="mask")
    corner = face.to_photo([[5, 5]], size=32)[0].astype(int)             # inside the crop
    centre = lm[[0, 1, 3, 4]].mean(0).astype(int)
    assert float(square[0, 0, corner[1], corner[0]]) > 0.9
    assert float(masked[0, 0, corner[1], corner[0]]) < 0.05
    assert float(masked[0, 0, centre[1], centre[0]]) > 0.99
    for x, y in lm.astype(int):                                          # eyes, nose, mouth
        assert float(masked[0, 0, y, x]) > 0.95


def test_the_mask_edge_is_feathered_in_proportion_to_its_size():
    """The blur is MASK_FEATHER of the side: about a fifth of the frame is the soft edge (neither
    face nor background) at every size; a hard edge would show a seam in the photo."""
    _, face = upright_face()
    bands = []
    for size in (64, 128):
        m = face_mask(face, size)[0, 0]
        bands.append(float(((m > 0.05) & (m < 0.95)).float().mean()))
    assert 0.15 < bands[0] < 0.27 and abs(bands[0] - bands[1]) < 0.02, bands


def test_the_68_point_mask_follows_the_jaw_and_the_forehead():
    """With 68 points: inside the jaw line weight ~1, below the chin 0, above the brows (the
    forehead) still ~1; the five-point ellipse is a different, smaller region."""
    from test_faces_landmarks import face68
    lm5 = np.array([[80, 100], [120, 100], [100, 120], [85, 136], [115, 136]], float)
    lm68 = face68(lm5)
    photo = Image.new("RGB", (200, 200))
    f68, f5 = A.align(photo, lm68, 64), A.align(photo, lm5, 64)
    m68, m5 = face_mask(f68, 64)[0, 0], face_mask(f5, 64)[0, 0]             # [64, 64]

    def at(face, mask, x, y):
        u, v = face.to_aligned([[x, y]], size=64)[0].astype(int)
        return float(mask[v, u])
    chin_y = lm68[8, 1]
    assert at(f68, m68, 100, 125) > 0.95 and at(f68, m68, 100, 82) > 0.9    # face, forehead
    assert at(f68, m68, 100, chin_y + 12) < 0.1 and at(f68, m68, 45, 110) < 0.1
    assert float((m68 - m5).abs().mean()) > 0.02


def test_overlapping_faces_never_overwrite_each_others_masked_region():
    """Two faces 50 px apart (each mask still 0.23 at the other's centre): each face's centre
    shows its own restoration whatever the order they are pasted in (the square paste lets the
    later one win)."""
    photo = Image.new("RGB", (300, 200))
    lm_a = np.array([[80, 100], [120, 100], [100, 120], [85, 136], [115, 136]], float)
    lm_b = lm_a + [50, 0]
    a, b = A.align(photo, lm_a, 32), A.align(photo, lm_b, 32)
    black = torch.zeros(1, 3, 200, 300)
    red, green = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)
    red[:, 0], green[:, 1] = 1, 1
    ca = lm_a[[0, 1, 3, 4]].mean(0).astype(int)
    cb = lm_b[[0, 1, 3, 4]].mean(0).astype(int)
    for order in ([(a, red), (b, green)], [(b, green), (a, red)]):
        out = paste_all(black, order, how="mask")
        assert float(out[0, 0, ca[1], ca[0]]) > 0.97 and float(out[0, 1, ca[1], ca[0]]) < 0.03
        assert float(out[0, 1, cb[1], cb[0]]) > 0.97 and float(out[0, 0, cb[1], cb[0]]) < 0.03
    later = paste_all(black, [(a, red), (b, green)], how="square")
    assert float(later[0, 1, ca[1], ca[0]]) > 0.5          # the square paste overwrites face a


def test_paste_mode_is_checked():
    with pytest.raises(ValueError, match="--paste 'blur': choose one of mask, square"):
        P.PhotoOutput(paste="blur")


# ---------------------------------------------------------------------------- output size
def test_the_default_scale_keeps_a_small_face_photo_within_the_budget():
    """One 18 px face in a 3000x2000 photo and a 64 px generator: the face's factor (3.6) would
    make 10667x7111; the default stays within DEFAULT_MEGAPIXELS (16 MP: 1.63x); --scale wins."""
    out = P.PhotoOutput()
    scale = P.output_scale((3000, 2000), [64 / 18], out)
    assert scale == pytest.approx((16e6 / 6e6) ** 0.5)
    assert 3000 * 2000 * scale ** 2 <= P.DEFAULT_MEGAPIXELS * 1e6 * 1.0001
    assert P.output_scale((300, 200), [64 / 18], out) == pytest.approx(64 / 18)   # fits: as before
    assert P.output_scale((6000, 4000), [4.0], out) == 1.0                      # never shrunk
    assert P.output_scale((3000, 2000), [4.0], P.PhotoOutput(scale=0.5)) == 0.5
    assert P.output_scale((3000, 2000), [], out) == 1.0


def test_a_photo_that_cannot_fit_in_memory_is_refused_before_any_face(monkeypatch):
    monkeypatch.setattr(P, "available_memory", lambda: 10 * 2**20)              # 10 MiB
    G = small_generator(resolution=16)
    monkeypatch.setattr(P, "restore", lambda *a, **k: pytest.fail("restored"))
    lm, _ = upright_face()
    with pytest.raises(ValueError, match=r"needs about 0\.\d GiB of memory and 0\.0 GiB are "
                                         r"available: give a smaller --scale"):
        P.restore_photo(G, Image.new("RGB", (1000, 1000)), "denoising", landmarks=[lm],
                        template="toyfaces64", loss=l2, progress=False)
    assert P.memory_needed((1000, 1000), 2.0) == 4_000_000 * P.BYTES_PER_OUTPUT_PIXEL


# ---------------------------------------------------------------------------- resumable faces
def scene_photo(n: int = 2):
    s = place_faces(heldout(n), avatars.landmarks(64), np.random.default_rng(3), cell=64,
                    side=(0.5, 0.6))
    return to_pil(s.photo[0], "round"), s.landmarks


def test_each_face_is_saved_when_done_and_reused_by_a_rerun(tmp_path, monkeypatch):
    photo, lms = scene_photo(2)
    G = small_generator(resolution=16)
    out = P.PhotoOutput(faces_dir=tmp_path / "faces")
    seen = []
    first = P.restore_photo(G, photo, "denoising", landmarks=lms, template="toyfaces64",
                            loss=l2, steps=(1, 0, 0), progress=False, output=out,
                            on_face=lambda f: seen.append(sorted(p.name for p in
                                                                 (tmp_path / "faces").iterdir())))
    assert seen[0] == ["face_0.json", "face_0.png"]          # written before face 1 began
    record = json.loads((tmp_path / "faces" / "face_1.json").read_text())
    assert record["key"]["face"] == 1 and len(record["landmarks"]) == 5
    monkeypatch.setattr(P, "restore", lambda *a, **k: pytest.fail("restored again"))
    again = P.restore_photo(G, photo, "denoising", landmarks=lms, template="toyfaces64",
                            loss=l2, steps=(1, 0, 0), progress=False, output=out)
    assert all(f.result is None for f in again.faces)
    assert float((again.photo - first.photo).abs().max()) <= 1 / 255 + 1e-6   # 8-bit saved faces
    with pytest.raises(ValueError, match="restored with other settings .*steps.* delete"):
        P.restore_photo(G, photo, "denoising", landmarks=lms, template="toyfaces64",
                        loss=l2, steps=(2, 0, 0), progress=False, output=out)


def degraded_photo(tmp_path: Path) -> tuple[Path, Path]:
    s = place_faces(heldout(2), avatars.landmarks(64), np.random.default_rng(1), cell=256,
                    side=(0.5, 0.7))
    low = Upsampling("M", seed=0, factor=8).degrade_ground_truth(s.photo)
    path = tmp_path / "photo.png"
    to_pil(low[0], "round").save(path)
    (tmp_path / "lm.json").write_text(json.dumps([(lm / 8).tolist() for lm in s.landmarks]))
    return path, tmp_path / "lm.json"


def test_cli_resumes_a_stopped_run(tmp_path, monkeypatch):
    """A run stopped after face 0 keeps face 0's files; the same command again restores only
    face 1 and writes the photo."""
    photo, lm = degraded_photo(tmp_path)
    out = tmp_path / "out"
    argv = ["restore", str(photo), "--align", "--landmarks", str(lm), "--task", "upsampling",
            "--steps", "1,1,1", "--out", str(out)]
    real, calls = P.restore, []

    def stop_after_one(*a, **k):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(P, "restore", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    assert (out / "photo_face0_restored.png").is_file() and not (out / "photo_restored.png").exists()
    assert (out / "photo.faces" / "face_0.json").is_file()
    calls.clear()
    monkeypatch.setattr(P, "restore", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    assert main(argv) == 0
    assert len(calls) == 1 and (out / "photo_restored.png").is_file()
    assert (out / "photo_face1_restored.png").is_file()
    assert main(argv) == 2                     # finished: refused as before (outputs exist)


# ---------------------------------------------------------------------------- small fixes
def test_transparency_is_white_under_align_and_the_alpha_is_kept(tmp_path):
    photo, lms = scene_photo(1)
    rgba = photo.convert("RGBA")
    a = np.full((64, 64), 255, np.uint8)
    a[:, :6] = 0                                              # a transparent strip, left
    arr = np.asarray(rgba).copy()
    arr[:, :6, :3] = 0                                        # black under the transparency
    arr[..., 3] = a
    G = small_generator(resolution=16)
    out = P.restore_photo(G, Image.fromarray(arr, "RGBA"), "denoising", landmarks=lms,
                          template="toyfaces64", loss=l2, steps=(1, 0, 0), progress=False)
    img = out.to_pil()
    assert img.mode == "RGBA" and np.array_equal(np.asarray(img)[..., 3], a)
    assert np.asarray(img)[:, :3, :3].min() == 255           # composited over white, not black
    plain = P.restore_photo(G, photo, "denoising", landmarks=lms, template="toyfaces64",
                            loss=l2, steps=(1, 0, 0), progress=False)
    assert plain.alpha is None and plain.to_pil().mode == "RGB"


def test_restore_photo_opens_a_path_upright_and_takes_the_generators_template(tmp_path):
    """A path is opened with its EXIF rotation applied (landmarks of the upright photo fit);
    without `template`, the generator's own (toyfaces64 here) is used, as the CLI does."""
    from rusir.model.generators import load_generator
    photo, lms = scene_photo(1)
    stored = photo.transpose(Image.Transpose.ROTATE_90)       # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6                                          # "rotate 90 CW to display"
    path = tmp_path / "camera.jpg"
    stored.save(path, exif=exif, quality=95)
    G = load_generator("toyfaces64")
    out = P.restore_photo(G, path, "denoising", landmarks=lms, loss=l2, steps=(1, 0, 0),
                          progress=False)
    assert out.photo.shape[-2:] == (64, 64)
    np.testing.assert_allclose(out.faces[0].face.quad, A.TOYFACES64.frame(lms[0]))
    err = (out.faces[0].face.image - A.align(photo, lms[0], 64, "toyfaces64").image).abs()
    assert float(err.mean()) < 0.03                           # the upright face, not a side view


def test_a_face_larger_than_the_generator_is_one_warning():
    photo, lms = scene_photo(1)
    G = small_generator(resolution=16)
    with pytest.warns(UserWarning, match=r"face 0: \d+ px across, larger than the generator's "
                                         r"16 px"):
        P.restore_photo(G, photo, "denoising", landmarks=lms, template="toyfaces64", loss=l2,
                        steps=(1, 0, 0), progress=False)


def test_face_numbering_follows_the_given_order():
    photo, lms = scene_photo(2)
    faces = P.find_faces(photo, lms[::-1])
    np.testing.assert_array_equal(faces[0][1], lms[1])        # not re-sorted from the left
    with pytest.raises(ValueError, match="numbered 0..1 in the order given"):
        P.find_faces(photo, lms, face=5)


def test_the_offline_error_names_rusir_cache(monkeypatch, tmp_path):
    import dataclasses
    from rusir.model import weights
    entry = dataclasses.replace(weights.get("yunet"), cache_dir=str(tmp_path))
    monkeypatch.setitem(weights.WEIGHTS, "yunet", entry)
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    with pytest.raises(weights.MissingWeightsError) as err:
        weights.fetch("yunet")
    assert "$RUSIR_CACHE" in str(err.value) and "TORCH_HOME" not in str(err.value)


def test_align_options_need_align_and_bad_values_are_one_line(tmp_path, capsys):
    photo, _ = degraded_photo(tmp_path)
    for extra in (["--scale", "2"], ["--paste", "square"], ["--detector", "dlib"]):
        assert main(["restore", str(photo), "--task", "upsampling", *extra,
                     "--out", str(tmp_path / "o")]) == 2
        assert "need --align" in capsys.readouterr().err
    lm = tmp_path / "lm.json"
    lm.write_text("[]")
    assert main(["restore", str(photo), "--align", "--task", "upsampling", "--detector", "yunet",
                 "--landmarks", str(lm), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--detector and --landmarks exclude each other" in err[0]


def test_docs_quote_the_committed_photos_record():
    """docs/photos.md's "Measured" numbers equal benchmarks/results/photos_toyfaces64.json."""
    import re
    root = Path(__file__).resolve().parents[1]
    text = " ".join((root / "docs" / "photos.md").read_text().split()).replace("**", "")
    d = json.loads((root / "benchmarks/results/photos_toyfaces64.json").read_text())
    L, s, B, a = d["landmarks"], d["paste"]["summary"], d["large_photo"], d["astronaut"]

    def grab(pattern: str) -> list[float]:
        m = re.search(pattern, text)
        assert m, f"docs/photos.md: no sentence matches {pattern!r}"
        return [float(g) for g in m.groups()]
    num = r"([\d.]+)"
    got = grab(rf"found in (\d+) of (\d+) photos; where found, the eye centres lie {num} px from "
               rf"the truth \({num} eye distances\) and the mouth corners {num} px")
    assert got == pytest.approx([L["detected"], L["n_photos"], L["mean_eye_error_px"],
                                 L["mean_eye_error_per_eye_distance"], L["mean_mouth_error_px"]],
                                abs=0.006)
    got = grab(rf"PSNR in the face's frame: mask {num} dB, square {num} dB, unaligned centre crop "
               rf"{num} dB, bicubic {num} dB; inside the ellipse: mask {num} dB, square {num} dB, "
               rf"unaligned {num} dB, bicubic {num} dB")
    keys = [f"psnr_{w}_{k}" for w in ("frame", "ellipse")
            for k in ("mask", "square", "unaligned", "bicubic")]
    assert got == pytest.approx([s[k] for k in keys], abs=0.006)
    run = B["default_run"]
    got = grab(rf"makes (\d+)x(\d+) px in {num} s with a peak RSS of {num} GiB")
    assert got == pytest.approx(run["output_px"] + [run["seconds"], run["peak_rss_bytes"] / 2**30],
                                abs=0.06)
    got = grab(rf"together took {num} bytes per output pixel")
    assert got == pytest.approx([B["measured_bytes_per_output_pixel"]], abs=0.06)
    assert got[0] <= P.BYTES_PER_OUTPUT_PIXEL            # the estimate covers the measurement
    got = grab(rf"(\d+) face found by dlib .*? its eyes are level within {num} degrees")
    assert got == pytest.approx([a["faces_found"], abs(a["eyes_angle_deg_in_ffhq_frame"])],
                                abs=0.006)
    assert a["network_connections_attempted"] == 0 and a["faces_found"] == 1
