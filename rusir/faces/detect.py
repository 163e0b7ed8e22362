"""Faces and their five landmarks in a photo, with OpenCV's YuNet detector (`cv2.FaceDetectorYN`).

OpenCV is an optional extra (`pip install 'rusir[photos]'`, opencv-python-headless) and YuNet's
ONNX file goes through the weight registry (`rusir.model.weights`, entry "yunet": pinned URL,
sha256, cache, the same offline error as every other weight file). Anything else that returns
[5, 2] landmarks per face can stand in for it: `restore_photo(..., landmarks=provider)`.

Faces come sorted left to right (by the midpoint of the eyes), so `--face 0` is the leftmost.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..model.weights import fetch

__all__ = ["detect_faces", "SCORE_THRESHOLD", "import_cv2"]

SCORE_THRESHOLD = 0.8     # YuNet's confidence below which a detection is dropped (its demo's 0.9)
_INSTALL_HINT = ("face detection needs OpenCV: pip install 'rusir[photos]' "
                 "(opencv-python-headless), or give the landmarks yourself")


def import_cv2():
    """cv2 with FaceDetectorYN, or an ImportError that says how to install it."""
    try:  # optional (the `photos` extra): loaded on use
        import cv2
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    if not hasattr(cv2, "FaceDetectorYN"):
        raise ImportError(f"{_INSTALL_HINT}: this OpenCV ({cv2.__version__}) has no FaceDetectorYN")
    return cv2


def detect_faces(photo: Image.Image, score_threshold: float = SCORE_THRESHOLD,
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
    faces = [np.asarray(row[4:14], dtype=np.float64).reshape(5, 2) + 0.5 for row in found]
    return sorted(faces, key=lambda lm: float(lm[:2, 0].mean()))
