"""rusir.faces: FFHQ-style alignment, paste-back, several faces, the detector, any upsampling
factor.

Tolerances are measured (comments give the values seen) with room for platform differences,
and each is far below what a misplaced crop gives (a quarter-pixel shift of the landmarks in the
64 px frame already doubles the alignment error).
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import small_generator
from rusir import degradations
from rusir.data import avatars, heldout
from rusir.faces import align as A
from rusir.faces.paste import paste
from rusir.faces.photo import (PhotoOutput, find_faces, photo_degradation, pil_to_tensor,
                               restore_photo)
from rusir.faces.scenes import place_faces
from rusir.model import weights


def to_pil(x: torch.Tensor) -> Image.Image:
    return Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def scene(n: int, seed: int, cell: int = 200):
    rng = np.random.default_rng(seed)
    return place_faces(heldout(n), avatars.landmarks(64), rng, cell=cell, side=(0.6, 0.9))


def test_ffhq_quad_of_an_upright_face_by_hand():
    # eyes 40 apart at y=100, mouth 36 below: x = (40 + 36, 0) normalised, half side
    # max(2 * 40, 1.8 * 36) = 80; centre = eye midpoint + 0.1 * (0, 36)
    lm = [[80, 100], [120, 100], [100, 120], [85, 136], [115, 136]]
    quad = A.ffhq_quad(lm)
    np.testing.assert_allclose(quad, [[20, 23.6], [20, 183.6], [180, 183.6], [180, 23.6]])
    # a mouth line tilted by the same angle as the eyes turns the quad with the head
    t = np.deg2rad(20)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    turned = A.ffhq_quad(np.asarray(lm, float) @ rot.T)
    np.testing.assert_allclose(turned, quad @ rot.T, atol=1e-9)


def test_ffhq_quad_keeps_a_long_face_and_a_turned_head_upright():
    """Real faces have eye-to-mouth > eye-to-eye, where a wrong sign of the turned eye-to-mouth
    vector flips the quad upside down (avatar proportions hide it)."""
    # eyes 40 apart at y=100, mouth 50 below: x = (40 + 50, 0) normalised, half side
    # max(2 * 40, 1.8 * 50) = 90; centre = eye midpoint + 0.1 * (0, 50)
    lm = np.array([[80, 100], [120, 100], [100, 125], [88, 150], [112, 150]], float)
    np.testing.assert_allclose(A.ffhq_quad(lm), [[10, 15], [10, 195], [190, 195], [190, 15]])
    # long faces at any angle, and heads turned aside (mouth off the eyes' perpendicular):
    # the crop's x axis runs from the left eye to the right one, its y axis down to the mouth
    for angle in (0, 30, 130, -100):
        for aside in (0.0, 15.0, -25.0):
            t = np.deg2rad(angle)
            rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
            face = (lm + np.array([[0, 0]] * 3 + [[aside, 0]] * 2)) @ rot.T
            _, ex, ey = A._axes(A.ffhq_quad(face))
            eye_to_eye = face[1] - face[0]
            eye_to_mouth = face[3:].mean(0) - face[:2].mean(0)
            cos = ex @ eye_to_eye / np.hypot(*ex) / np.hypot(*eye_to_eye)
            assert cos > np.cos(np.deg2rad(35)) and ey @ eye_to_mouth > 0, (angle, aside, cos)


def test_toyfaces_template_puts_the_avatar_frame_on_the_64px_square():
    frame = A.TOYFACES64.frame(avatars.landmarks(64))
    np.testing.assert_allclose(frame, [[0, 0], [0, 64], [64, 64], [64, 0]], atol=1e-9)
    assert A.template_for("ffhq").side == 1 and A.template_for("some/net.pkl").name == "ffhq"
    with pytest.raises(ValueError, match="afhqdog draws no human faces"):
        A.template_for("afhqdog")
    with pytest.raises(ValueError, match="5 \\(x, y\\) points"):
        A.check_landmarks([[0, 0], [1, 1]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alignment_undoes_a_random_similarity(seed):
    """A face placed at a random scale (x2.2 .. x3.2), angle (+-29 degrees) and position comes
    back as the canonical 64 px crop: mean |error| 0.0046-0.0049 measured (a landmark shift of
    a quarter pixel gives 0.012)."""
    s = scene(1, seed, cell=240)
    photo = to_pil(s.photo)
    face = heldout(1)
    aligned = A.align(photo, s.landmarks[0], 64, "toyfaces64")
    err = (aligned.image - face).abs()
    assert float(err.mean()) < 0.008, float(err.mean())
    assert aligned.native_size == pytest.approx(float(np.hypot(*s.maps[0][:2, 0])) * 64, rel=1e-6)
    shifted = A.align(photo, s.landmarks[0] + 0.25 * aligned.native_size / 64, 64, "toyfaces64")
    assert float((shifted.image - face).abs().mean()) > 0.01
    # the transform back maps the crop's corners to the quad and the landmarks home
    np.testing.assert_allclose(aligned.to_photo([[0, 0], [64, 64]]), aligned.quad[[0, 2]])
    np.testing.assert_allclose(aligned.to_aligned(s.landmarks[0]), avatars.landmarks(64), atol=1e-9)


def test_a_face_cut_by_the_photo_border_is_padded_not_refused():
    s = scene(1, 3, cell=240)
    photo = to_pil(s.photo[..., :, 60:])                 # the face loses its left part
    aligned = A.align(photo, s.landmarks[0] - [60, 0], 64, "toyfaces64")
    inside = aligned.to_photo(np.stack(np.meshgrid(np.arange(64) + .5, np.arange(64) + .5), -1)
                              .reshape(-1, 2))[:, 0].reshape(64, 64) > 8
    err = (aligned.image - heldout(1)).abs()[0].mean(0)
    assert float(err[torch.from_numpy(inside)].mean()) < 0.01   # 0.005 measured


def test_soft_padding_blurs_the_invented_border_towards_the_median():
    """Padding is smoothed (blur, then the median colour), never sharpened: it stays within the
    photo's values, is smoother than the reflection near the border, and leaves the middle."""
    a = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    out = A._soft_pad(a, np.array([10, 10, 10, 10]), qsize=100)
    assert out.min() >= a.min() - 1e-6 and out.max() <= a.max() + 1e-6
    rough = lambda x: float(np.abs(np.diff(x, axis=1)).mean())   # noqa: E731
    assert rough(out[:3]) < 0.5 * rough(a[:3])
    assert np.ptp(out[0], axis=0).max() < 1e-6            # the outermost row: the median colour
    np.testing.assert_array_equal(out[15:25, 15:25], a[15:25, 15:25])


def test_a_face_entirely_outside_the_photo_is_one_clear_error():
    photo = Image.new("RGB", (100, 80))
    lm = np.array([[80, 100], [120, 100], [100, 120], [85, 136], [115, 136]], float) / 4
    for shift in ([400, 0], [-400, 0], [0, 400], [0, -400]):   # right, left, below, above
        with pytest.raises(ValueError, match="outside the .*photo"):
            A.align(photo, lm + shift, 64, "toyfaces64")
    assert A.align(photo, lm, 64, "toyfaces64").size == 64


def test_align_then_paste_back_reproduces_the_photo():
    """An unchanged face, aligned at its native size and pasted back: mean |error| over the
    face's quad 0.002 measured (0.04 when pasted 3 px off); outside the quad the photo is
    untouched (exactly)."""
    s = scene(1, 4, cell=240)
    photo = to_pil(s.photo)
    corners = A.TOYFACES64.frame(s.landmarks[0])
    native = int(round(np.hypot(*(corners[3] - corners[0]))))
    aligned = A.align(photo, s.landmarks[0], native, "toyfaces64")
    base = pil_to_tensor(photo)
    out = paste(base, aligned.image, aligned)
    changed = (out - base).abs().amax(1)[0] > 0
    ys, xs = torch.nonzero(changed, as_tuple=True)
    quad = aligned.quad
    assert xs.min() >= np.floor(quad[:, 0].min()) and xs.max() <= np.ceil(quad[:, 0].max())
    assert ys.min() >= np.floor(quad[:, 1].min()) and ys.max() <= np.ceil(quad[:, 1].max())
    inv = np.linalg.inv(aligned.matrix(1))
    pts = np.stack(np.meshgrid(np.arange(base.shape[-1]) + .5, np.arange(base.shape[-2]) + .5), -1)
    uv = pts @ inv[:2, :2].T + inv[:2, 2]
    region = torch.from_numpy(((uv > 0) & (uv < 1)).all(-1))
    err = (out - base).abs()[0].mean(0)[region]
    assert float(err.mean()) < 0.006, float(err.mean())
    # a wrong paste (the face shifted by 3 px) is far off
    moved = A.AlignedFace(aligned.image, aligned.quad + 3, aligned.landmarks)
    assert float((paste(base, aligned.image, moved) - base).abs()[0].mean(0)[region].mean()) > 0.03


def test_paste_fills_the_quad_with_the_restoration_and_scales_with_the_photo():
    s = scene(1, 5, cell=240)
    face = A.align(to_pil(s.photo), s.landmarks[0], 64, "toyfaces64")
    red = torch.zeros(1, 3, 64, 64)
    red[:, 0] = 1
    big = torch.zeros(1, 3, 480, 480)                     # the photo enlarged 2x
    out = paste(big, red, face, scale=2.0)
    centre = face.to_photo([[32, 32]])[0] * 2
    assert out[0, :, int(centre[1]), int(centre[0])].tolist() == [1, 0, 0]
    corner = face.quad[0] * 2 + 1                          # at the corner: feathered to ~0
    assert float(out[0, 0, int(corner[1]), int(corner[0])]) < 0.05


def test_paste_reaches_the_photos_first_and_last_pixels():
    """A quad larger than the photo pastes over every pixel, the first row and column too."""
    quad = np.array([[-10, -10], [-10, 74], [74, 74], [74, -10]], float)
    face = A.AlignedFace(torch.ones(1, 3, 64, 64), quad, np.zeros((5, 2)))
    out = paste(torch.zeros(1, 3, 64, 64), face.image, face, feather=0)
    assert float((out - 1).abs().max()) < 1e-5


def test_several_faces_from_a_landmark_provider_are_each_pasted_back_where_they_were():
    """Three faces found by a stub provider, restored (a tiny generator, a few steps) and pasted:
    re-aligning the result at each face's landmarks gives back that face's restoration (mean
    |error| <= 0.02; 0.008 measured, 0.04 when re-aligned 4 px off), and nothing outside the
    faces' quads changes."""
    s = scene(3, 6, cell=160)
    photo = to_pil(s.photo)
    G = small_generator(resolution=16)
    calls = []

    def provider(img):
        calls.append(img.size)
        return list(reversed(s.landmarks))             # any order: indices follow the provider
    l2 = lambda x, y, mask=None: (x - y).pow(2).flatten(1).mean(1)
    out = restore_photo(G, photo, "denoising", "M", landmarks=provider, template="toyfaces64",
                        loss=l2, steps=(2, 0, 0), progress=False,
                        output=PhotoOutput(paste="square"))
    assert calls == [photo.size] and out.scale == 1 and len(out.faces) == 3
    base = pil_to_tensor(photo)
    union = torch.zeros(base.shape[-2:], dtype=torch.bool)
    for f in out.faces:
        again = A.align(to_pil(out.photo), f.face.landmarks, 16, "toyfaces64")
        err = (again.image - f.result.images.clamp(0, 1)).abs()[..., 3:-3, 3:-3]
        assert float(err.mean()) < 0.02, (f.index, float(err.mean()))
        x0, y0 = np.floor(f.face.quad.min(0)).astype(int)
        x1, y1 = np.ceil(f.face.quad.max(0)).astype(int)
        union[max(y0, 0):y1, max(x0, 0):x1] = True
    assert torch.equal(out.photo[..., ~union], base[..., ~union])
    one = restore_photo(G, photo, "denoising", "M", landmarks=provider, template="toyfaces64",
                        face=2, loss=l2, steps=(1, 0, 0), progress=False)
    assert [f.index for f in one.faces] == [2]


def test_no_face_and_a_bad_face_index_are_clear_errors():
    photo = Image.new("RGB", (64, 64))
    with pytest.raises(ValueError, match="no face found in x.png"):
        find_faces(photo, lambda img: [], name="x.png")
    lm = avatars.landmarks(64)
    with pytest.raises(ValueError, match="--face 2: x.png has 1 face"):
        find_faces(photo, [lm], face=2, name="x.png")
    with pytest.raises(ValueError, match="no face found in x.png"):
        find_faces(photo, np.zeros((0, 5, 2)), name="x.png")                # an empty array
    stacked = find_faces(photo, np.stack([lm, lm + 1]))                   # faces as one array [N, 5, 2]
    assert [i for i, _ in stacked] == [0, 1] and np.allclose(stacked[1][1], lm + 1)
    lazy = find_faces(photo, lambda img: (p for p in [lm]))               # a provider's generator
    assert len(lazy) == 1 and np.allclose(lazy[0][1], lm)


def test_upsampling_takes_any_factor():
    x = torch.rand(2, 3, 64, 64)
    deg = degradations.Upsampling("M", seed=0, factor=64 / 11)
    assert deg.degrade_ground_truth(x).shape[-2:] == (11, 11)
    y = deg.degrade_prediction(x)
    assert y.shape[-2:] == (11, 11)
    # area averaging: a constant stays constant, and the mean is (nearly) kept
    assert torch.allclose(deg.degrade_prediction(torch.full((1, 3, 64, 64), 0.3)),
                          torch.full((1, 3, 11, 11), 0.3))
    assert abs(float(y.mean() - x.mean())) < 0.01
    whole = degradations.Upsampling("M", seed=0, factor=8.0)
    assert whole.factor == 8 and torch.equal(whole.degrade_prediction(x),
                                             torch.nn.functional.avg_pool2d(x, 8))
    with pytest.raises(ValueError, match="factor"):
        degradations.Upsampling("M", factor=0.5)
    comp = photo_degradation("UN", "M", 0, factor=64 / 11)
    assert comp.target_shape(64, 64) == (11, 11) and comp.name == "UN"


def test_a_mask_in_photo_coordinates_is_warped_with_the_face():
    s = scene(1, 7, cell=240)
    face = A.align(to_pil(s.photo), s.landmarks[0], 64, "toyfaces64")
    mask = Image.new("L", (240, 240), 255)
    x, y = face.to_photo([[16, 16]])[0]                  # a hole at the crop's (16, 16)
    mask.paste(0, (int(x) - 4, int(y) - 4, int(x) + 4, int(y) + 4))
    warped = pil_to_tensor(A.warp_quad(mask, face.quad, 64, soft_pad=False))[0, 0]
    assert float(warped[16, 16]) < 0.2 and float(warped[48, 48]) == 1.0


def test_restore_photo_warps_the_mask_with_each_face():
    """Inpainting (and UP) with a mask the photo's size: the loss sees the hole where it lies in
    the aligned frame; a mask of another size is refused."""
    s = scene(1, 7, cell=240)
    photo = to_pil(s.photo)
    face = A.align(photo, s.landmarks[0], 16, "toyfaces64")
    mask = Image.new("L", photo.size, 255)
    x, y = face.to_photo([[4, 4]])[0]                    # a hole at the 16 px crop's (4, 4)
    mask.paste(0, (int(x) - 12, int(y) - 12, int(x) + 12, int(y) + 12))
    G = small_generator(resolution=16)
    l2 = lambda x, y, mask=None: (x - y).pow(2).flatten(1).mean(1)
    for task in ("inpainting", "UP"):
        out = restore_photo(G, photo, task, "M", landmarks=s.landmarks, template="toyfaces64",
                            mask=mask, loss=l2, steps=(1, 0, 0), progress=False)
        known = out.faces[0].degradation.mask[0, 0]      # [h, w] at the target's size
        h = known.shape[-1]
        assert float(known[h // 4, h // 4]) < 0.3 and float(known[3 * h // 4, 3 * h // 4]) > 0.95
    with pytest.raises(ValueError, match="must have the photo's size"):
        restore_photo(G, photo, "inpainting", landmarks=s.landmarks, mask=mask.resize((10, 10)))
    rgba = Image.new("RGBA", photo.size, (0, 0, 0, 0))   # transparent = white, as unaligned
    rgba.paste((0, 0, 0, 255), (int(x) - 12, int(y) - 12, int(x) + 12, int(y) + 12))
    out = restore_photo(G, photo, "inpainting", "M", landmarks=s.landmarks, template="toyfaces64",
                        mask=rgba, loss=l2, steps=(1, 0, 0), progress=False)
    known = out.faces[0].degradation.mask[0, 0]
    assert float(known[h // 4, h // 4]) < 0.3 and float(known[3 * h // 4, 3 * h // 4]) > 0.95


def test_restore_photo_refuses_a_factor_below_one():
    s = scene(1, 7, cell=240)
    G = small_generator(resolution=16)
    for bad in (0.0, 0.5, -2.0, float("nan")):
        with pytest.raises(ValueError, match="factor must be a finite number >= 1"):
            restore_photo(G, to_pil(s.photo), "upsampling", landmarks=s.landmarks, factor=bad)


def test_yunet_goes_through_the_weight_registry(tmp_path, monkeypatch):
    """Pinned URL and sha256 (OpenCV Zoo's LFS pointer); offline, the usual one-message error;
    a damaged file is refused by its checksum."""
    import dataclasses
    pytest.importorskip("cv2", reason="OpenCV absent (pip install 'rusir[photos]')")
    from rusir.faces.detect import detect_yunet as detect_faces
    entry = weights.get("yunet")
    assert entry.sha256 == "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
    assert "/opencv_zoo/raw/82b38c8f" in entry.url and entry.url.endswith(entry.filename)
    moved = dataclasses.replace(entry, cache_dir=str(tmp_path))
    monkeypatch.setitem(weights.WEIGHTS, "yunet", moved)
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    photo = Image.new("RGB", (64, 64))
    with pytest.raises(weights.MissingWeightsError, match="from https://github.com/opencv"):
        detect_faces(photo)
    (tmp_path / entry.filename).write_bytes(b"not the model")
    with pytest.raises(weights.CorruptWeightsError, match="sha256"):
        detect_faces(photo)


def test_detector_finds_the_faces_of_a_photo_when_yunet_is_present():
    entry = weights.get("yunet")
    if not entry.path().is_file():
        pytest.skip(f"YuNet weights absent ({entry.path()}; downloaded on first use of "
                    "`rusir restore --align`): detector not tested")
    pytest.importorskip("cv2", reason="OpenCV absent (pip install 'rusir[photos]')")
    from rusir.faces.detect import detect_yunet as detect_faces
    assert detect_faces(Image.new("RGB", (320, 240), (128, 128, 128))) == []
    # the avatars are cartoons YuNet need not find; whatever it finds must be one of them,
    # landmarks within a fifth of the eye distance of the true ones
    s = scene(2, 8, cell=320)
    for lm in detect_faces(to_pil(s.photo)):
        dist = min(np.abs(lm - true).max() / np.hypot(*(true[1] - true[0])) for true in s.landmarks)
        assert dist < 0.2, lm


def test_an_opencv_without_yunet_is_one_line_naming_the_install(monkeypatch):
    from types import SimpleNamespace
    from rusir.faces import detect
    monkeypatch.setitem(sys.modules, "cv2", SimpleNamespace(__version__="3.4.0"))
    with pytest.raises(ImportError, match=r"rusir\[photos\].*3\.4\.0\) has no FaceDetectorYN"):
        detect.import_cv2()


class _PixelDetector:
    """A stand-in for cv2.FaceDetectorYN that answers as YuNet does: each face's five landmarks
    as the pixel indices (x = column) of five marker pixels of the BGR image, pure red in the
    photo (B, G, R = 0, 0, 255), read in the order the test drew them."""

    def __init__(self, marks_per_face, size):
        self.marks, self.size = marks_per_face, size

    def detect(self, bgr):
        assert (bgr.shape[1], bgr.shape[0]) == self.size      # created for this photo's size
        red = (bgr[..., 2] == 255) & (bgr[..., 0] == 0)
        rows = []
        for marks in self.marks:
            assert all(red[j, i] for i, j in marks)
            rows.append([0, 0, 1, 1] + [v for i, j in marks for v in (i, j)] + [0.99])
        return 1, np.asarray(rows, np.float32)


def test_detector_landmarks_are_photo_coordinates_offline(tmp_path, monkeypatch):
    """YuNet's points are pixel indices; a pixel (i, j) covers [i, i+1] x [j, j+1] in ours, so
    its landmark is its centre (i + 0.5, j + 0.5): no half-pixel shift. Faces come left to
    right. Runs without OpenCV or the YuNet file (a stand-in detector)."""
    from types import SimpleNamespace
    from rusir.faces import detect
    faces = [[(70, 20), (90, 21), (80, 30), (72, 40), (88, 41)],       # right face first
             [(10, 12), (30, 11), (20, 25), (12, 33), (29, 35)]]
    photo = np.zeros((50, 100, 3), np.uint8)
    for marks in faces:
        for i, j in marks:
            photo[j, i] = (255, 0, 0)
    made = {}

    def create(model, config, size, threshold):
        made.update(model=model, threshold=threshold)
        return _PixelDetector(faces, size)

    fake = SimpleNamespace(FaceDetectorYN=SimpleNamespace(create=create))
    monkeypatch.setattr(detect, "import_cv2", lambda: fake)
    found = detect.detect_yunet(Image.fromarray(photo), model=tmp_path / "yunet.onnx")
    assert made == {"model": str(tmp_path / "yunet.onnx"), "threshold": detect.SCORE_THRESHOLD}
    assert len(found) == 2
    for lm, marks in zip(found, faces[::-1]):                        # left to right
        assert lm.shape == (5, 2) and lm.dtype == np.float64
        np.testing.assert_array_equal(lm, np.asarray(marks, np.float64) + 0.5)
