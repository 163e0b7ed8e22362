"""Grayscale as a degradation: RUSIR vs naive on held-out faces, on luminance and on RGB (JSON).

    nice python benchmarks/grayscale.py                      # toyfaces64, faces 52-55 and 60-63
    nice python benchmarks/grayscale.py --tasks upsampling   # the colour task, for reference

Tasks: `grayscale` alone (G) and composed with upsampling at M (UG: 8x, an 8-px grey target);
`upsampling` (colour) on the same faces says what losing the colour costs. Tasks already in the
JSON are kept, so tasks can be run one at a time.
Each face's degradation seed is its index. RUSIR runs with the generator's own schedule, loss and
discrepancy stop; naive is the grey target itself (bicubic-upsampled for UG). For G
alone, `rusir_target_luma` is RUSIR's colour moved to the target's exact luminance (each pixel
shifted by Y_target - Y_restored in all channels: the weights sum to 1). Scores against the
colour truth: PSNR/SSIM on the BT.601 luminance (what a black-and-white photo can be faithful
to; `--color keep`) and on RGB (the prior's colour against the truth's; `--color restore`; the
naive baseline has no colour). Faces 52-55 were never used for tuning; 60-63 are the test faces of
docs/reproducing.md, never used for tuning either (docs/method.md lists the tuning faces).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir.baselines.naive import naive_restoration
from rusir.data.images import heldout_paths, load_image
from rusir.degradations import luminance, make, task_names
from rusir.inversion.restore import restore
from rusir.metrics.per_image import psnr, ssim
from rusir.model.generators import load_generator

FACES = (52, 53, 54, 55, 60, 61, 62, 63)
TASKS = ("grayscale", "UG")


def scores(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, list[float]]:
    """Per-image PSNR/SSIM [B] on luminance and RGB (pred, truth [B, 3, R, R])."""
    pred = pred.clamp(0, 1)
    lp, lt = luminance(pred), luminance(truth)
    return {"psnr_luma": psnr(lp, lt).tolist(), "ssim_luma": ssim(lp, lt).tolist(),
            "psnr_rgb": psnr(pred, truth).tolist(), "ssim_rgb": ssim(pred, truth).tolist()}


def mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 3)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser()
    p.add_argument("--generator", default="toyfaces64")
    p.add_argument("--faces", default=",".join(map(str, FACES)))
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--level", default="M")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    G = load_generator(a.generator)
    R = G.img_resolution
    faces = [int(f) for f in a.faces.split(",")]
    paths = heldout_paths()
    truth = torch.cat([load_image(paths[i], R) for i in faces])          # [B, 3, R, R]
    result = {"benchmark": "grayscale", "generator": a.generator, "faces": faces,
              "level": a.level, "weights": "ITU-R BT.601 (0.299, 0.587, 0.114)",
              "threads": a.threads, "machine": platform.machine(),
              "load_average": list(os.getloadavg()), "tasks": {}}
    out = Path(a.out) / f"grayscale_{a.generator}.json"
    if out.exists():                                   # keep the tasks measured before
        result["tasks"] = json.loads(out.read_text()).get("tasks", {})
    for task in a.tasks.split(","):
        deg = make(task, a.level, seed=faces)                             # seed = face index
        target = deg.degrade_ground_truth(truth)
        start = time.perf_counter()
        restored = restore(G, target, deg, progress=False).images.detach()
        seconds = time.perf_counter() - start
        naive = naive_restoration(target, R)
        per = {"rusir": scores(restored, truth), "naive": scores(naive, truth)}
        if target.shape[-1] == R and "grayscale" in task_names(task):
            # the target's own luminance with the prior's colour: x + (Y_target - Y_x) per channel
            shifted = restored + luminance(target) - luminance(restored)
            per["rusir_target_luma"] = scores(shifted, truth)
        summary = {f"{k}_{who}": mean(v) for who, s in per.items() for k, v in s.items()}
        summary["psnr_luma_wins"] = sum(r > n for r, n in zip(per["rusir"]["psnr_luma"],
                                                             per["naive"]["psnr_luma"]))
        result["tasks"][task] = {"target_side": target.shape[-1], "seconds": round(seconds, 1),
                                 "per_image": per, "summary": summary}
        print(task, json.dumps(summary), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
    return out


if __name__ == "__main__":
    print(main())
