"""Why W++ undoes W on 8-px targets that carry noise or JPEG blocks (issue 20): the numbers.

    python benchmarks/robustness_diagnosis.py --first 16 --n-images 4 --settings UN,UNAP,UA,upsampling

1. The natural spread of toyfaces64's W (4000 mapped z): |w - w_avg| and the per-dimension std,
   against each phase's step (rate x lr_scale) and path (steps x step) per latent row.
2. Per setting at level M: PSNR vs the ground truth and the loss every 5 steps through W (50 x
   0.08), W+ (50 x 0.02) and W++ from the same W+ latent at each `--wpp` rate (x lr_scale 8),
   and how far each W++ row ends from where it started (mean |row - start|) against its path:
   a walk of k fixed-length steps in consistent directions ends k x step away, in random ones
   about sqrt(k) x step.
Writes benchmarks/results/robustness_diagnosis_toyfaces64.json (rewritten after every setting).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import rusir  # noqa: F401
import torch

from rusir import degradations
from rusir.data import heldout_paths, load_image
from rusir.engine.records import as_8bit, write_json
from rusir.inversion.restore import restore
from rusir.metrics import psnr
from rusir.model.generators import load_generator

LR_SCALE = 8.0


def spread(G, n: int = 4000) -> dict:
    with torch.no_grad():
        z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(0))
        w = G.mapping(z, None)
        w = w[:, 0] if w.dim() == 3 else w                     # [n, w_dim]
        d = w - G.mapping.w_avg
    return {"samples": n, "w_dim": int(w.shape[1]), "num_ws": int(G.num_ws),
            "filters": int(G.synthesis.max_channels),
            "mean_norm_w_minus_avg": d.norm(dim=1).mean().item(),
            "mean_per_dim_std": w.std(0).mean().item(),
            "mean_pairwise_distance": (w[: n // 2] - w[n // 2:]).norm(dim=1).mean().item()}


def curves(G, gt, task, level, first, wpp) -> dict:
    deg = degradations.make(task, level, seed=first)
    with torch.no_grad():
        target = deg.degrade_ground_truth(gt)
    curve: dict[str, list] = {}

    def cb(info, key=None):
        if info.step % 5 == 4 or info.step == info.steps - 1:
            curve.setdefault(key or info.phase, []).append(
                {"steps": info.step + 1, "psnr": psnr(info.images.clamp(0, 1), gt).mean().item(),
                 "loss": info.loss.mean().item()})

    t0 = time.time()
    base = restore(G, target, deg, spaces=("W", "W+"), steps=(50, 50), lrs=(0.08, 0.02),
                   progress=False, callback=cb)
    entry = {"W": curve.pop("W"), "W+": curve.pop("W+"), "W++": {}}
    for rate, steps in wpp:
        key = f"{rate}x{steps}"
        r = restore(G, target, deg, spaces=("W++",), steps=(steps,), lrs=(rate,),
                    init=base.phases["W+"].latent, progress=False, callback=lambda i, k=key: cb(i, k))
        moved = (r.phases["W++"].latent - base.phases["W+"].latent.unsqueeze(2)).norm(dim=-1)
        step = rate * LR_SCALE
        entry["W++"][key] = {"curve": curve.pop(key), "step": step, "path": step * steps,
                             "random_walk": step * steps ** 0.5,
                             "mean_row_displacement": moved.mean().item()}
    entry["seconds"] = time.time() - t0
    return entry


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--first", type=int, default=16)
    p.add_argument("--n-images", type=int, default=4)
    p.add_argument("--settings", default="UN,UNAP,UA,upsampling")
    p.add_argument("--wpp", default="0.02:300,0.005:300")
    p.add_argument("--out", default="benchmarks/results/robustness_diagnosis_toyfaces64.json")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    G = load_generator("toyfaces64")
    gt = as_8bit(torch.cat([load_image(q, 64) for q in heldout_paths()[a.first:a.first + a.n_images]]))
    wpp = [(float(r), int(s)) for r, s in (v.split(":") for v in a.wpp.split(","))]
    data = {"_meta": {"faces": f"held-out {a.first}..{a.first + a.n_images - 1}", "lr_scale": LR_SCALE,
                      "loss": "offline", "degradation_seeds": "face i: seed first + i"},
            "spread": spread(G), "settings": {}}
    for s in a.settings.split(","):
        task, _, level = s.partition("@")
        data["settings"][f"{task}@{level or 'M'}"] = curves(G, gt, task, level or "M", a.first, wpp)
        write_json(Path(a.out), data)
        print(s, flush=True)


if __name__ == "__main__":
    main()
