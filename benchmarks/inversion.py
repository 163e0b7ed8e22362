"""Identity-degradation inversion of held-out images: PSNR / SSIM after W, W+ and W++ (JSON).

    python benchmarks/inversion.py --generator toyfaces64 --n-images 8

How well the generator can reproduce images it never saw bounds what any restoration can reach.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir.data import heldout
from rusir.studies.experiment import mean, score
from rusir.model.generators import info as generator_info, load_generator
from rusir.inversion.restore import restore


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--generator", default="toyfaces64")
    p.add_argument("--n-images", type=int, default=8)
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args()
    G = load_generator(a.generator)
    gt = heldout(a.n_images, size=G.img_resolution)
    start = time.perf_counter()
    result = restore(G, gt, None, progress=False)  # identity degradation, the generator's schedule
    phases = {s: score(ph.images, gt) for s, ph in result.phases.items()}
    record = {"generator": a.generator, "n_images": a.n_images, "loss": generator_info(G).default_loss,
              "lr_scale": generator_info(G).lr_scale,
              "steps": [len(ph.losses) for ph in result.phases.values()],
              "lrs": [ph.lr for ph in result.phases.values()], "seconds": time.perf_counter() - start,
              "threads": torch.get_num_threads(),
              "mean_psnr": {s: mean(v["psnr"]) for s, v in phases.items()},
              "mean_ssim": {s: mean(v["ssim"]) for s, v in phases.items()}, "per_image": phases}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"inversion_{Path(a.generator).stem}.json"
    path.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("mean_psnr", "mean_ssim", "seconds")}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
