"""FFHQ's landmarks offline (dlib's detector + the 68-point model, reduced to five as the FFHQ
script does) and the checks every landmark set goes through (mirrored order mended, impossible
faces refused in one line)."""
from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
from PIL import Image

from rusir.data import avatars
from rusir.faces import align as A
from rusir.faces import detect

HAS_DLIB = (importlib.util.find_spec("dlib") is not None
            and importlib.util.find_spec("face_recognition_models") is not None)
needs_dlib = pytest.mark.skipif(not HAS_DLIB, reason="dlib-bin / face_recognition_models absent "
                                "(pip install 'rusir[photos]')")
UPRIGHT = np.array([[80, 100], [120, 100], [100, 120], [85, 136], [115, 136]], float)


def test_five_points_are_ffhqs_reduction_of_the_68():
    """Eye centres = the mean of points 36-41 and 42-47; mouth corners = 48 and 54."""
    rng = np.random.default_rng(0)
    lm68 = rng.uniform(0, 100, (68, 2))
    five = A.five_points(lm68)
    np.testing.assert_allclose(five[0], lm68[36:42].mean(0))
    np.testing.assert_allclose(five[1], lm68[42:48].mean(0))
    np.testing.assert_array_equal(five[3], lm68[48])
    np.testing.assert_array_equal(five[4], lm68[54])
    np.testing.assert_array_equal(five[2], lm68[30])


def face68(five: np.ndarray) -> np.ndarray:
    """68 points whose FFHQ reduction is `five` (eye rings around the centres, jaw below)."""
    lm = np.zeros((68, 2))
    ring = np.array([[-3, 0], [-1, -1], [1, -1], [3, 0], [1, 1], [-1, 1]], float)
    lm[36:42], lm[42:48] = five[0] + ring, five[1] + ring
    lm[30], lm[48], lm[54] = five[2], five[3], five[4]
    lm[49:54] = np.linspace(five[3], five[4], 7)[1:-1]
    t = np.linspace(np.pi, 0, 17)
    c = (five[0] + five[1]) / 2 + [0, 15]
    lm[:17] = c + np.stack([np.cos(t) * 38, np.sin(t) * 45], 1)
    lm[17:27] = np.stack([np.linspace(70, 130, 10), np.full(10, 88)], 1)
    return lm


def test_68_points_align_as_their_five():
    photo = Image.new("RGB", (200, 200), (90, 90, 90))
    lm68 = face68(UPRIGHT)
    a68, a5 = A.align(photo, lm68, 32), A.align(photo, A.five_points(lm68), 32)
    np.testing.assert_allclose(a68.quad, a5.quad)
    assert a68.points.shape == (68, 2) and a5.points.shape == (5, 2)


@pytest.mark.parametrize("angle", [0, 40, 180, -120])
def test_a_face_at_any_angle_passes_unchanged_and_silently(angle):
    t = np.deg2rad(angle)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    lm = (UPRIGHT - 100) @ rot.T + 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(A.check_landmarks(lm, (400, 400)), lm)


def test_a_mirrored_listing_is_put_in_the_images_order_with_a_warning():
    """The subject's left eye (and mouth corner) first gives a mirrored, upside-down crop: it is
    swapped back, the crop equals the right one."""
    mirrored = UPRIGHT[[1, 0, 2, 4, 3]]
    with pytest.warns(A.LandmarkWarning, match="eyes and mouth corners"):
        fixed = A.check_landmarks(mirrored, (200, 200))
    np.testing.assert_array_equal(fixed, UPRIGHT)
    only_eyes = UPRIGHT[[1, 0, 2, 3, 4]]
    with pytest.warns(A.LandmarkWarning, match="the eyes were listed"):
        np.testing.assert_array_equal(A.check_landmarks(only_eyes), UPRIGHT)
    only_mouth = UPRIGHT[[0, 1, 2, 4, 3]]
    with pytest.warns(A.LandmarkWarning, match="the mouth corners were listed"):
        np.testing.assert_array_equal(A.check_landmarks(only_mouth), UPRIGHT)
    photo = Image.new("RGB", (200, 200))
    with pytest.warns(A.LandmarkWarning):
        np.testing.assert_allclose(A.align(photo, mirrored, 16).quad, A.align(photo, UPRIGHT, 16).quad)


@pytest.mark.parametrize("change,size,words", [
    (lambda lm: lm.__setitem__((slice(3, 5), 1), 101), None, "mouth lies"),      # on the eye line
    (lambda lm: lm.__setitem__((slice(3, 5), 1), 400), None, "mouth lies"),      # far below
    (lambda lm: lm.__setitem__((2,), [300, 300]), None, "nose tip"),
    (lambda lm: lm.__setitem__((1,), [80.5, 100]), None, "eyes are 0.5 px apart"),
    (lambda lm: None, (110, 300), "outside the 110x300 px photo"),
    (lambda lm: None, (30, 30), "outside"),
])
def test_impossible_landmarks_are_refused_in_one_line(change, size, words):
    lm = UPRIGHT.copy()
    change(lm)
    with pytest.raises(ValueError, match=words) as err:
        A.check_landmarks(lm, size)
    assert "\n" not in str(err.value)


def test_eyes_wider_than_the_photo_are_refused():
    lm = (UPRIGHT - [75, 95]) * 4       # eyes 160 px apart, every point within 200 x 200
    with pytest.raises(ValueError, match="eyes are 160 px apart in a 200x200"):
        A.check_landmarks(lm, (200, 200))
    A.check_landmarks(lm, (300, 300))


def test_mirrored_68_points_are_refused():
    lm = face68(UPRIGHT)
    lm[:, 0] = 200 - lm[:, 0]                 # mirrored left-right: iBUG order broken
    with pytest.raises(ValueError, match="mirrored"):
        A.check_landmarks(lm, (200, 200))


def test_the_shipped_templates_pass_the_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A.check_landmarks(avatars.landmarks(64), (64, 64))


def test_detector_choice():
    assert detect.default_detector() == ("dlib" if HAS_DLIB else "yunet")
    assert detect.detector("yunet") is detect.detect_yunet
    with pytest.raises(ValueError, match="--detector 'mtcnn': choose one of dlib, yunet"):
        detect.detector("mtcnn")


@needs_dlib
def test_dlib_finds_and_levels_the_astronaut_offline(monkeypatch):
    """A real photo (skimage.data.astronaut, public domain): one face; its 68 points reduced to
    five; aligned, the eyes are level within 3 degrees (measured 0.1: benchmarks/results/
    photos_toyfaces64.json) and centred. Downloads are
    forbidden (RUSIR_OFFLINE) and nothing is fetched."""
    skdata = pytest.importorskip("skimage.data", reason="scikit-image absent (test extra)")
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    photo = Image.fromarray(skdata.astronaut())
    faces = detect.detect_faces(photo)
    assert len(faces) == 1 and faces[0].shape == (68, 2)
    lm = A.check_landmarks(faces[0], photo.size)
    aligned = A.align(photo, lm, 256)
    eyes = aligned.to_aligned(aligned.landmarks[:2])
    tilt = np.degrees(np.arctan2(*(eyes[1] - eyes[0])[::-1]))
    assert abs(tilt) < 3.0, tilt
    assert abs(eyes.mean(0)[0] - 128) < 256 * 0.03       # centred across
    # FFHQ's frame puts the eyes' midpoint at ~0.4 of the height
    assert 0.3 < eyes.mean(0)[1] / 256 < 0.5


@needs_dlib
def test_dlib_upsamples_to_find_a_small_face(monkeypatch):
    """The astronaut reduced 4x (face ~35 px, below the 80 px HOG window) is found by
    upsampling; at full size no upsampling is needed (the first pass finds it)."""
    skdata = pytest.importorskip("skimage.data", reason="scikit-image absent (test extra)")
    photo = Image.fromarray(skdata.astronaut())
    small = photo.resize((128, 128), Image.LANCZOS)
    assert detect.detect_dlib(small, max_upsample=0) == []
    found = detect.detect_dlib(small)          # the face, and at 128 px the suit's badge too
    (big,) = detect.detect_dlib(photo)
    # dlib's points are pixel indices: +0.5 puts them in our coordinates, so scaling is exact
    # (measured 1.0 px at full size; a half-pixel slip would add 2)
    err = min(np.abs(A.five_points(lm) * 4 - A.five_points(big))[[0, 1]].max() for lm in found)
    assert err < 2.5, err


def test_dlib_points_are_photo_coordinates_and_faces_come_left_to_right(monkeypatch):
    """dlib's parts are pixel indices; ours put pixel (i, j)'s centre at (i + 0.5, j + 0.5).
    A stand-in detector and predictor (no dlib needed) answer two faces, right one first."""
    from types import SimpleNamespace
    shapes = [np.arange(136).reshape(68, 2) + 100, np.arange(136).reshape(68, 2)]
    boxes = ["right", "left"]

    def find(rgb, upsample):
        assert rgb.dtype == np.uint8 and rgb.shape == (300, 400, 3)
        return boxes

    def predict(rgb, box):
        pts = shapes[boxes.index(box)]
        return SimpleNamespace(parts=lambda: [SimpleNamespace(x=int(x), y=int(y)) for x, y in pts])
    monkeypatch.setattr(detect, "_DLIB", {"detector": find, "predictor": predict})
    found = detect.detect_dlib(Image.new("RGB", (400, 300)))
    np.testing.assert_array_equal(found[0], shapes[1] + 0.5)
    np.testing.assert_array_equal(found[1], shapes[0] + 0.5)
