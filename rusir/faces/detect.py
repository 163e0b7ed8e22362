"""Faces and their landmarks in a photo: dlib's HOG detector + the 68-point predictor (offline, what
FFHQ was aligned with), or OpenCV's YuNet.

* dlib (`dlib-bin`): the frontal-face detector is built into the library (no weight file); the
  68-point shape predictor ships in the `face_recognition_models` package. Both come with
  `pip install 'rusir[photos]'` and need no internet. Licences: dlib is under the Boost Software
  Licence; the 68-point model was trained on the iBUG 300-W data set, whose licence excludes
  commercial use -- so do the landmarks it predicts, for a commercial product use YuNet or your
  own landmarks (docs/photos.md).
* YuNet (`cv2.FaceDetectorYN`, opencv-python-headless): five points per face; its ONNX file goes
  through the weight registry ("yunet": downloaded once, then cached in $RUSIR_CACHE).

dlib's faces are returned with all 68 points ([68, 2]); the alignment reduces them to FFHQ's five
(`rusir.faces.align.five_points`) and the face-mask paste uses the outline. YuNet's are [5, 2].
Anything else that returns [5, 2] or [68, 2] landmarks per face can stand in for either:
`restore_photo(..., landmarks=provider)`. Faces come sorted left to right (by the midpoint of the
eyes), so `--face 0` is the leftmost.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from ..model.weights import fetch

__all__ = ["detect_faces", "detect_dlib", "detect_yunet", "detector", "DETECTORS",
           "default_detector", "predictor_path", "SCORE_THRESHOLD", "import_cv2", "import_dlib",
           "MAX_UPSAMPLE", "DLIB_MIN_SIDE"]

SCORE_THRESHOLD = 0.8     # YuNet's confidence below which a detection is dropped (its demo's 0.9)
MAX_UPSAMPLE = 2          # dlib: photo doubled up to twice when no face is found (small faces)
DLIB_MIN_SIDE = 80        # dlib's HOG window is 80 px: a face smaller than that needs upsampling
DETECTORS = ("dlib", "yunet")
_INSTALL_HINT = ("face detection needs {what}: pip install 'rusir[photos]', or give the "
                 "landmarks yourself (--landmarks)")


def import_cv2():
    """cv2 with FaceDetectorYN, or an ImportError that says how to install it."""
    hint = _INSTALL_HINT.format(what="OpenCV (opencv-python-headless)")
    try:  # optional (the `photos` extra): loaded on use
        import cv2
    except ImportError as exc:
        raise ImportError(f"{hint} ({exc})") from exc
    if not hasattr(cv2, "FaceDetectorYN"):
        raise ImportError(f"{hint}: this OpenCV ({cv2.__version__}) has no FaceDetectorYN")
    return cv2


def import_dlib():
    """dlib, or an ImportError that says how to install it."""
    try:  # optional (the `photos` extra): loaded on use
        import dlib
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT.format(what='dlib (dlib-bin)')} ({exc})") from exc
    return dlib


def predictor_path() -> Path:
    """The 68-point model in the installed `face_recognition_models` package, found without
    importing it (its __init__ needs pkg_resources, which recent setuptools no longer has)."""
    spec = importlib.util.find_spec("face_recognition_models")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = (Path(list(spec.submodule_search_locations)[0]) / "models"
                / "shape_predictor_68_face_landmarks.dat")
    if path is None or not path.is_file():
        raise ImportError(_INSTALL_HINT.format(
            what="the 68-point landmark model (face_recognition_models)"))
    return path


def default_detector() -> str:
    """The detector that works offline here: dlib when it is installed, else YuNet."""
    has_dlib = importlib.util.find_spec("dlib") is not None
    has_model = importlib.util.find_spec("face_recognition_models") is not None
    return "dlib" if has_dlib and has_model else "yunet"


_DLIB: dict = {}      # the detector and the predictor, loaded once per process (~100 MB model)


def _dlib_models():
    if not _DLIB:
        dlib = import_dlib()
        _DLIB["detector"] = dlib.get_frontal_face_detector()
        _DLIB["predictor"] = dlib.shape_predictor(str(predictor_path()))
    return _DLIB["detector"], _DLIB["predictor"]


def detect_dlib(photo: Image.Image, max_upsample: int = MAX_UPSAMPLE) -> list[np.ndarray]:
    """[68, 2] landmarks (photo pixels, iBUG order) of every face dlib finds, left to right.

    The HOG detector scans 80 px windows; the photo is upsampled (doubled by dlib, up to
    `max_upsample` times) only while nothing is found, so small faces in old group photos are
    found without slowing down photos whose faces are large."""
    detector, predictor = _dlib_models()
    rgb = np.ascontiguousarray(np.asarray(photo.convert("RGB")))     # [H, W, 3] uint8
    boxes = []
    for upsample in range(max_upsample + 1):
        boxes = list(detector(rgb, upsample))
        if boxes:
            break
    faces = []
    for box in boxes:
        shape = predictor(rgb, box)
        # dlib's points are pixel indices (centre of pixel i at i); ours put that centre at i + 0.5
        faces.append(np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64) + 0.5)
    return _left_to_right(faces)


def detect_yunet(photo: Image.Image, score_threshold: float = SCORE_THRESHOLD,
                 model: Optional[Path] = None) -> list[np.ndarray]:
    """Landmarks [5, 2] (photo pixels, YuNet's order: eye on the image's left, other eye, nose
    tip, left and right mouth corners) of every face found, left to right; [] when none.

    model: the ONNX file (default: the registry's, downloaded once when allowed)."""
    cv2 = import_cv2()
    path = Path(model) if model is not None else fetch("yunet")
    bgr = np.ascontiguousarray(np.asarray(photo.convert("RGB"))[:, :, ::-1])   # [H, W, 3] uint8
    detector = cv2.FaceDetectorYN.create(str(path), "", (bgr.shape[1], bgr.shape[0]),
                                         score_threshold)
    _, found = detector.detect(bgr)                 # [N, 15]: box, 5 (x, y) landmarks, score
    if found is None:
        return []
    # YuNet's points are pixel indices (centre of pixel i at i); ours put that centre at i + 0.5
    return _left_to_right([np.asarray(row[4:14], dtype=np.float64).reshape(5, 2) + 0.5
                           for row in found])


def _left_to_right(faces: list[np.ndarray]) -> list[np.ndarray]:
    """Sorted by the x of the eyes' midpoint (the eye points: 36-47 of 68, the first two of 5)."""
    def eyes_x(lm: np.ndarray) -> float:
        return float((lm[36:48] if len(lm) == 68 else lm[:2])[:, 0].mean())
    return sorted(faces, key=eyes_x)


def detector(name: Optional[str] = None) -> Callable[[Image.Image], list[np.ndarray]]:
    """The landmark provider called `name` ("dlib" or "yunet"; None: `default_detector()`)."""
    name = name or default_detector()
    if name not in DETECTORS:
        raise ValueError(f"--detector {name!r}: choose one of {', '.join(DETECTORS)}")
    return detect_dlib if name == "dlib" else detect_yunet


def detect_faces(photo: Image.Image, name: Optional[str] = None) -> list[np.ndarray]:
    """Every face's landmarks, left to right, with the detector `name` ("dlib": [68, 2] each;
    "yunet": [5, 2] each; default: `default_detector()`, the one that works offline)."""
    return detector(name)(photo)
