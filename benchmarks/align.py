"""Aligned vs unaligned restoration of faces in photos, offline (embedded generator, JSON + figure).

    python benchmarks/align.py                          # 8 faces, full schedule, upsampling x8
    python benchmarks/align.py --faces 2 --steps 5,5,20 --out /tmp/a.json   # a quick look

Each photo is a 256 px square in which one held-out avatar (rendered at 256 px when py-avataaars
is installed, else the shipped 64 px file) is placed at a random scale (its frame 22-30 % of the
photo's side, 56-77 px), angle (+-0.5 rad) and position, its five landmarks known from the
renderer's geometry (`rusir.data.avatars.landmarks`). The photo is degraded as a whole by the
true upsampling degradation at M (x8: 32 px, the face 7-10 px, so the face itself is upsampled
about x8 as at level M), then restored twice with the same schedule and loss:
- aligned: `rusir.restore_photo(..., landmarks=..., template="toyfaces64")`: the face aligned at
  its native size, restored at the inferred factor 64 / native, pasted back;
- unaligned: what a centre crop gives: the whole (square) photo at its 32 px as the target,
  upsampled x2 to the generator's 64 px (the same information, no alignment).
Both are compared at the clean photo's resolution (x8), with bicubic, by PSNR over the face's
region (the toyfaces64 frame's quad in the clean photo). The JSON is rewritten after each face.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import numpy as np
import torch
import torch.nn.functional as F

from rusir.data import avatars, heldout
from rusir.degradations import Upsampling
from rusir.studies.figures import save_grid, to_pil
from rusir.faces.align import TOYFACES64
from rusir.faces.paste import paste
from rusir.faces.photo import restore_photo
from rusir.faces.scenes import place_faces
from rusir.inversion.restore import restore
from rusir.metrics import psnr
from rusir.model.generators import load_generator

ROOT = Path(__file__).resolve().parents[1]
CELL, FACTOR = 256, 8
SIDE = (0.22, 0.3)    # the face's frame, as a fraction of the photo: 56-77 px, 7-10 px once degraded


def face_image(i: int, render: bool) -> tuple[torch.Tensor, int]:
    """Held-out face i [1, 3, S, S] and S: rendered at 256 px if asked and possible, else 64."""
    if render:
        try:
            img = avatars.render(avatars.HELDOUT_SEED_START + i, CELL)
            a = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
            return a.permute(2, 0, 1)[None].float() / 255, CELL
        except ImportError:
            pass
    return heldout(i + 1)[i:i + 1], 64


def face_region(landmarks: np.ndarray, side: int) -> torch.Tensor:
    """[side, side] bool: pixel centres inside the toyfaces64 frame of these landmarks."""
    quad = TOYFACES64.frame(landmarks)
    origin, ex, ey = quad[0], quad[3] - quad[0], quad[1] - quad[0]
    inv = np.linalg.inv(np.stack([ex, ey], 1))
    xs, ys = np.meshgrid(np.arange(side) + 0.5, np.arange(side) + 0.5)
    uv = (np.stack([xs, ys], -1) - origin) @ inv.T
    return torch.from_numpy(((uv >= 0) & (uv <= 1)).all(-1))


def psnr_in(pred: torch.Tensor, truth: torch.Tensor, region: torch.Tensor) -> float:
    """PSNR over the pixels of `region` ([1, 3, H, W] images, [H, W] region)."""
    a = pred[..., region].reshape(1, 3, -1, 1)
    b = truth[..., region].reshape(1, 3, -1, 1)
    return round(float(psnr(a.clamp(0, 1), b)), 3)


def one_face(G, i: int, rng: np.random.Generator, steps, render: bool) -> tuple[dict, list]:
    face, size = face_image(i, render)
    scene = place_faces(face, avatars.landmarks(size), rng, cell=CELL, side=SIDE)
    clean, lm = scene.photo, scene.landmarks[0]                          # [1, 3, 256, 256]
    low = Upsampling("M", seed=i, factor=FACTOR).degrade_ground_truth(clean)   # [1, 3, 32, 32]
    bicubic = F.interpolate(low, size=CELL, mode="bicubic", align_corners=False).clamp(0, 1)
    aligned = restore_photo(G, to_pil(low[0]), "upsampling", landmarks=[lm / FACTOR],
                            template="toyfaces64", steps=steps, seed=0, progress=False).faces[0]
    pasted = paste(bicubic, aligned.result.images.detach().clamp(0, 1), aligned.face, FACTOR)
    R = G.img_resolution
    plain = restore(G, low, Upsampling("M", seed=i, factor=R / low.shape[-1]), steps=steps,
                    seed=0, progress=False).images.detach().clamp(0, 1)   # [1, 3, 64, 64]
    unaligned = F.interpolate(plain, size=CELL, mode="bicubic", align_corners=False).clamp(0, 1)
    region = face_region(lm, CELL)
    row = {"face": i, "native_px": round(aligned.face.native_size, 2),
           "factor": round(aligned.factor, 3), "region_px": int(region.sum()),
           "psnr_aligned": psnr_in(pasted, clean, region),
           "psnr_unaligned": psnr_in(unaligned, clean, region),
           "psnr_bicubic": psnr_in(bicubic, clean, region)}
    figure = [low[0], unaligned[0], aligned.face.image[0], aligned.result.images[0].clamp(0, 1),
              pasted[0], clean[0]]
    return row, figure


def summary(rows: list[dict]) -> dict:
    mean = lambda k: round(sum(r[k] for r in rows) / len(rows), 3)
    return {"n_faces": len(rows), "psnr_aligned": mean("psnr_aligned"),
            "psnr_unaligned": mean("psnr_unaligned"), "psnr_bicubic": mean("psnr_bicubic"),
            "aligned_wins_over_unaligned": sum(r["psnr_aligned"] > r["psnr_unaligned"] for r in rows),
            "aligned_wins_over_bicubic": sum(r["psnr_aligned"] > r["psnr_bicubic"] for r in rows)}


def run(n_faces: int, steps=None, seed: int = 0, render: bool = True, out: Path | None = None,
        figure: Path | None = None, figure_faces: int = 2) -> dict:
    G = load_generator("toyfaces64")
    rng = np.random.default_rng(seed)
    rows, grid, t0 = [], [], time.time()
    record = {}
    for i in range(n_faces):
        row, images = one_face(G, i, rng, steps, render)
        rows.append(row)
        if len(grid) < figure_faces:
            grid.append(images)
        record = {"generator": "toyfaces64", "task": "upsampling", "photo_px": CELL,
                  "photo_factor": FACTOR, "steps": list(steps) if steps else "generator's own",
                  "seed": seed, "faces_rendered_at": 256 if render else 64,
                  "threads": torch.get_num_threads(), "seconds": round(time.time() - t0, 1),
                  "summary": summary(rows), "per_face": rows}
        if out is not None:                     # after each face: a stopped run keeps its rows
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(record, indent=1) + "\n")
            os.replace(tmp, out)
    if figure is not None and grid:
        save_grid(figure, grid, ["photo (x8 down)", "unaligned", "aligned target", "restored",
                                 "pasted back", "clean"], cell=128)
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, default=8)
    p.add_argument("--steps", default=None, help="W,W+,W++ (default: the generator's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-render", action="store_true", help="use the shipped 64 px faces")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/align_toyfaces64.json")
    p.add_argument("--figure", type=Path, default=ROOT / "figures/align_demo.png")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    steps = tuple(int(s) for s in a.steps.split(",")) if a.steps else None
    record = run(a.faces, steps, a.seed, not a.no_render, a.out, a.figure)
    print(json.dumps(record["summary"], indent=1))


if __name__ == "__main__":
    main()
