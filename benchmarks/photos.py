"""The photo path measured offline: dlib's landmarks, square vs mask paste, a large photo's size,
memory and time, and a real portrait (JSON: benchmarks/results/photos_toyfaces64.json).

    python benchmarks/photos.py                      # everything (about 15 min on 1 CPU thread)
    python benchmarks/photos.py --faces 2 --steps 5,5,20 --out /tmp/p.json   # a quick look

1. landmarks: held-out avatars (rendered at 256 px when py-avataaars is installed) placed at a
   random scale (frame 90-180 px), angle (+-0.5 rad) and position in 256 px photos, one per
   photo, their five landmarks known from the renderer's geometry. dlib's detector + 68-point
   model (`rusir.faces.detect.detect_dlib`, reduced to five as FFHQ did) on the clean photo:
   detection rate, and per point the error in px and in eye distances against the truth. The
   avatars are cartoons, not what dlib was trained on: the rate and errors say how far it carries
   to them, not how well it does on photographs.
2. paste: benchmarks/align.py's set-up with slightly larger faces (frame 28-36 % of the 256 px
   photo, so the eyes stay over MIN_EYE_DISTANCE = 2 px once degraded x8: the face 9-11.5 px), restored once in
   its aligned frame (true landmarks), pasted back "square" and "mask" (five points: the
   ellipse), PSNR in the face region (the toyfaces64 frame's quad in the clean photo) and in the
   ellipse region, against the unaligned centre crop and bicubic.
3. large photo: a 3000x2000 degraded photo with one 18 px face (frame side), restored with the
   default output (`PhotoOutput()`: scale capped at 16 MP) -- wall time and peak RSS in a fresh
   process; the size the old rule (the face's factor) would have made; the memory per output
   pixel measured from two scales (the slope of peak RSS) against BYTES_PER_OUTPUT_PIXEL.
4. real portrait: scikit-image's astronaut (public domain, shipped in the package): faces found,
   the eyes' angle in the aligned FFHQ frame, and the whole path (detect, align, restore with
   toyfaces64, paste) run with every socket connection refused and RUSIR_OFFLINE=1.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rusir.data import avatars
from rusir.degradations import Upsampling
from rusir.faces.align import FFHQ, TOYFACES64, align, five_points
from rusir.faces.paste import face_mask, paste_all
from rusir.faces.photo import PhotoOutput, memory_needed, output_scale, restore_photo
from rusir.faces.scenes import place_faces
from rusir.inversion.restore import restore
from rusir.model.generators import load_generator
from rusir.studies.figures import to_pil

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("align_bench", ROOT / "benchmarks/align.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)            # face_image, face_region, psnr_in, CELL, FACTOR, SIDE


# ---------------------------------------------------------------------------- 1. landmarks
def landmark_errors(n: int, seed: int, render: bool) -> dict:
    from rusir.faces.detect import detect_dlib
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        face, size = bench.face_image(i, render)
        scene = place_faces(face, avatars.landmarks(size), rng, cell=256, side=(0.35, 0.7))
        truth = scene.landmarks[0]
        found = detect_dlib(to_pil(scene.photo[0]))
        eyes = float(np.hypot(*(truth[1] - truth[0])))
        row = {"face": i, "eye_distance_px": round(eyes, 2), "found": len(found)}
        if found:
            five = min((five_points(lm) for lm in found), key=lambda f: np.abs(f - truth).max())
            err = np.hypot(*(five - truth).T)                             # [5] px
            row["error_px"] = [round(float(e), 2) for e in err]            # eyes, nose, mouth
            row["eye_error_px"] = round(float(err[:2].mean()), 2)
            row["mouth_error_px"] = round(float(err[3:].mean()), 2)
            row["eye_error_per_eye_distance"] = round(float(err[:2].mean()) / eyes, 3)
        rows.append(row)
    hit = [r for r in rows if r["found"]]
    mean = lambda k: round(float(np.mean([r[k] for r in hit])), 3) if hit else None
    return {"n_photos": n, "detected": len(hit), "detection_rate": round(len(hit) / n, 3),
            "mean_eye_error_px": mean("eye_error_px"),
            "mean_mouth_error_px": mean("mouth_error_px"),
            "mean_eye_error_per_eye_distance": mean("eye_error_per_eye_distance"),
            "per_photo": rows}


# ---------------------------------------------------------------------------- 2. paste
PASTE_SIDE = (0.28, 0.36)   # the face's frame / photo side (benchmarks/align.py: 0.22-0.3)

def mask_region(face, side: int, scale: float) -> torch.Tensor:
    """[side, side] bool: clean-photo pixels where the face's mask is above one half."""
    mask = face_mask(face, 128)                                           # [1, 1, 128, 128]
    inv = np.linalg.inv(face.matrix(size=1))
    xs, ys = np.meshgrid(np.arange(side) + 0.5, np.arange(side) + 0.5)
    uv = np.stack([xs, ys], -1) / scale @ inv[:2, :2].T + inv[:2, 2]
    grid = torch.from_numpy(uv * 2 - 1).float()[None]
    m = F.grid_sample(mask, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return m[0, 0] > 0.5


def paste_rows(G, n: int, seed: int, steps, render: bool) -> dict:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        face, size = bench.face_image(i, render)
        scene = place_faces(face, avatars.landmarks(size), rng, cell=bench.CELL, side=PASTE_SIDE)
        clean, lm = scene.photo, scene.landmarks[0]
        low = Upsampling("M", seed=i, factor=bench.FACTOR).degrade_ground_truth(clean)
        bicubic = F.interpolate(low, size=bench.CELL, mode="bicubic", align_corners=False).clamp(0, 1)
        done = restore_photo(G, to_pil(low[0]), "upsampling", landmarks=[lm / bench.FACTOR],
                             template="toyfaces64", steps=steps, seed=0, progress=False).faces[0]
        pair = [(done.face, done.restored)]
        square = paste_all(bicubic, pair, scale=bench.FACTOR, how="square")
        masked = paste_all(bicubic, pair, scale=bench.FACTOR, how="mask")
        plain = restore(G, low, Upsampling("M", seed=i, factor=G.img_resolution / low.shape[-1]),
                        steps=steps, seed=0, progress=False).images.detach().clamp(0, 1)
        unaligned = F.interpolate(plain, size=bench.CELL, mode="bicubic", align_corners=False).clamp(0, 1)
        regions = {"frame": bench.face_region(lm, bench.CELL),
                   "ellipse": mask_region(done.face, bench.CELL, bench.FACTOR)}
        row = {"face": i, "native_px": round(done.face.native_size, 2)}
        for where, region in regions.items():
            row[f"{where}_px"] = int(region.sum())
            for name, img in (("square", square), ("mask", masked), ("unaligned", unaligned),
                              ("bicubic", bicubic)):
                row[f"psnr_{where}_{name}"] = bench.psnr_in(img, clean, region)
        rows.append(row)
    keys = [k for k in rows[0] if k.startswith("psnr_")]
    return {"n_faces": n, "steps": list(steps) if steps else "generator's own",
            "summary": {k: round(float(np.mean([r[k] for r in rows])), 3) for k in keys},
            "per_face": rows}


# ---------------------------------------------------------------------------- 3. large photo
BIG = (3000, 2000)
SMALL_FACE = 18          # the face's toyfaces64 frame, px in the degraded photo


def big_photo() -> tuple[Image.Image, np.ndarray]:
    """A 3000x2000 photo (a smooth gradient) with one held-out face whose frame is 18 px."""
    w, h = BIG
    t = torch.linspace(0, 1, h).view(1, 1, h, 1)
    photo = (torch.tensor([0.7, 0.6, 0.5]).view(1, 3, 1, 1) * (1 - t)
             + torch.tensor([0.3, 0.35, 0.4]).view(1, 3, 1, 1) * t).expand(1, 3, h, w).clone()
    face = F.interpolate(bench.face_image(0, False)[0], size=SMALL_FACE, mode="area")
    x0, y0 = 1200, 700
    photo[..., y0:y0 + SMALL_FACE, x0:x0 + SMALL_FACE] = face
    return to_pil(photo[0]), avatars.landmarks(64) * SMALL_FACE / 64 + [x0, y0]


def big_child(scale: float | None, steps) -> dict:
    """One restoration of the big photo in this (fresh) process: time and peak RSS."""
    torch.set_num_threads(1)
    G = load_generator("toyfaces64")
    photo, lm = big_photo()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.time()
    out = restore_photo(G, photo, "upsampling", landmarks=[lm], steps=steps, progress=False,
                        output=PhotoOutput(scale=scale))
    img = out.to_pil()
    seconds = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"scale": round(out.scale, 4), "output_px": list(img.size), "seconds": round(seconds, 1),
            "peak_rss_bytes": peak, "rss_before_bytes": before}


def run_child(scale, steps) -> dict:
    argv = [sys.executable, __file__, "--big-child", "none" if scale is None else str(scale),
            "--steps", ",".join(map(str, steps)) if steps else ""]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def large_photo(steps) -> dict:
    default = run_child(None, steps)
    one, two = run_child(1.0, (1, 1, 1)), run_child(2.0, (1, 1, 1))
    pixels = lambda r: r["output_px"][0] * r["output_px"][1]
    slope = (two["peak_rss_bytes"] - one["peak_rss_bytes"]) / (pixels(two) - pixels(one))
    old = 64 / SMALL_FACE
    return {"photo_px": list(BIG), "face_frame_px": SMALL_FACE,
            "old_rule_scale": round(old, 4),
            "old_rule_output_px": [round(BIG[0] * old), round(BIG[1] * old)],
            "old_rule_memory_estimate_gib": round(memory_needed(BIG, old) / 2**30, 2),
            "default_scale": round(output_scale(BIG, [old], PhotoOutput()), 4),
            "default_run": default, "memory_slope_runs": [one, two],
            "measured_bytes_per_output_pixel": round(slope, 1)}


# ---------------------------------------------------------------------------- 4. real portrait
def astronaut(steps) -> dict:
    from skimage import data as skdata
    from rusir.faces import detect
    os.environ["RUSIR_OFFLINE"] = "1"
    refused = []

    def no_network(self, address):
        refused.append(str(address))
        raise OSError("network refused by benchmarks/photos.py")
    socket.socket.connect = no_network
    photo = Image.fromarray(skdata.astronaut())
    t0 = time.time()
    faces = detect.detect_faces(photo)
    detect_s = time.time() - t0
    aligned = align(photo, faces[0], 256, FFHQ)
    eyes = aligned.to_aligned(aligned.landmarks[:2])
    tilt = float(np.degrees(np.arctan2(eyes[1, 1] - eyes[0, 1], eyes[1, 0] - eyes[0, 0])))
    G = load_generator("toyfaces64")
    t0 = time.time()
    out = restore_photo(G, photo, "denoising", "S", steps=steps, progress=False)
    return {"source": "skimage.data.astronaut() (public domain)", "photo_px": list(photo.size),
            "detector": detect.default_detector(), "faces_found": len(faces),
            "detect_seconds": round(detect_s, 2),
            "eyes_angle_deg_in_ffhq_frame": round(tilt, 2),
            "eyes_centre_in_ffhq_frame_256": [round(float(v), 1) for v in eyes.mean(0)],
            "whole_path": {"generator": "toyfaces64", "task": "denoising S",
                           "steps": list(steps) if steps else "generator's own",
                           "seconds": round(time.time() - t0, 1),
                           "output_px": list(out.to_pil().size), "faces": len(out.faces)},
            "network_connections_attempted": len(refused)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, default=8, help="paste comparison faces")
    p.add_argument("--landmark-photos", type=int, default=24)
    p.add_argument("--steps", default=None, help="W,W+,W++ (default: the generator's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-render", action="store_true", help="use the shipped 64 px faces")
    p.add_argument("--only", default="landmarks,paste,large,astronaut")
    p.add_argument("--big-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/photos_toyfaces64.json")
    a = p.parse_args()
    torch.set_num_threads(1)
    steps = tuple(int(s) for s in a.steps.split(",")) if a.steps else None
    if a.big_child is not None:
        print(json.dumps(big_child(None if a.big_child == "none" else float(a.big_child), steps)))
        return
    record = json.loads(a.out.read_text()) if a.out.is_file() else {}
    record.update({"generator": "toyfaces64", "threads": 1, "seed": a.seed,
                   "faces_rendered_at": 64 if a.no_render else 256})
    parts = a.only.split(",")
    G = load_generator("toyfaces64")

    def save():
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(record, indent=1) + "\n")
    if "landmarks" in parts:
        record["landmarks"] = landmark_errors(a.landmark_photos, a.seed, not a.no_render)
        save()
    if "paste" in parts:
        record["paste"] = paste_rows(G, a.faces, a.seed, steps, not a.no_render)
        save()
    if "large" in parts:
        record["large_photo"] = large_photo(steps)
        save()
    if "astronaut" in parts:
        record["astronaut"] = astronaut(steps)
        save()
    print(json.dumps({k: v.get("summary", v) if isinstance(v, dict) else v
                      for k, v in record.items() if k != "landmarks"}, indent=1)[:3000])


if __name__ == "__main__":
    main()
