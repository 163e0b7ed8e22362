"""Synthetic photographs with known landmarks: aligned faces placed by random similarity transforms.

The offline check of the photo pipeline needs photos whose faces sit at a known scale, angle and
position, with their landmarks known exactly: each face image (in its generator's aligned frame,
where the template puts its landmarks) is warped into its own cell of a larger canvas by a random
similarity (photo = scale * rotation * frame + offset). The landmarks follow by the same map.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Scene", "similarity", "place_faces"]


@dataclass
class Scene:
    """photo [1, 3, H, W]; per face its landmarks [5, 2] and the 3x3 frame -> photo map."""
    photo: torch.Tensor
    landmarks: list[np.ndarray]
    maps: list[np.ndarray]


def similarity(scale: float, angle: float, offset) -> np.ndarray:
    """3x3 map p = scale * R(angle) c + offset (angle in radians, counter-clockwise on screen
    is negative since y points down)."""
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, offset[0]], [s, c, offset[1]], [0.0, 0.0, 1.0]])


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ m[:2, :2].T + m[:2, 2]


def _background(height: int, width: int, rng: np.random.Generator) -> torch.Tensor:
    """A smooth two-colour gradient [1, 3, H, W] (not a face: nothing to confuse the check)."""
    a, b = torch.tensor(rng.uniform(0.2, 0.8, 3)), torch.tensor(rng.uniform(0.2, 0.8, 3))
    t = torch.linspace(0, 1, height).view(1, 1, height, 1).expand(1, 1, height, width)
    return (a.view(1, 3, 1, 1) * (1 - t) + b.view(1, 3, 1, 1) * t).float()


def place_faces(faces: torch.Tensor, landmarks, rng: np.random.Generator, cell: int = 256,
                side: tuple[float, float] = (0.35, 0.7), max_angle: float = 0.5) -> Scene:
    """Place each face [N, 3, S, S] (its frame landmarks [5, 2] in pixels of S) in its own
    `cell` x `cell` square of a canvas N cells wide: side of the face's frame a random fraction
    `side` of the cell, angle uniform in +-`max_angle` radians, position random while the whole
    rotated frame stays inside the cell (a face too large for that at its angle is reduced)."""
    n, _, size, _ = faces.shape
    height, width = cell, cell * n
    photo = _background(height, width, rng)
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    pixels = torch.stack([xs, ys], -1).double()                       # [H, W, 2] photo px
    lms, maps = [], []
    for i in range(n):
        scale = rng.uniform(*side) * cell / size
        angle = rng.uniform(-max_angle, max_angle)
        spread = abs(math.cos(angle)) + abs(math.sin(angle))           # rotated box / side
        scale = min(scale, 0.99 * cell / (size * spread))               # the cell holds it
        extent = scale * size * spread
        centre = np.array([i * cell + rng.uniform(extent / 2, cell - extent / 2),
                           rng.uniform(extent / 2, cell - extent / 2)])
        m = similarity(scale, angle, centre - _apply(similarity(scale, angle, (0, 0)),
                                                     [[size / 2, size / 2]])[0])
        inv = torch.from_numpy(np.linalg.inv(m))
        uv = (pixels @ inv[:2, :2].T + inv[:2, 2]) / size             # [H, W, 2] frame units
        grid = (uv * 2 - 1).unsqueeze(0).float()
        warped = F.grid_sample(faces[i:i + 1].float(), grid, mode="bicubic",
                               padding_mode="border", align_corners=False).clamp(0, 1)
        inside = ((uv >= 0) & (uv <= 1)).all(-1).float()              # [H, W]
        photo = photo + (warped - photo) * inside
        lms.append(_apply(m, landmarks))
        maps.append(m)
    return Scene(photo, lms, maps)
