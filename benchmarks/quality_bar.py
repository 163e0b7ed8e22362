"""RUSIR vs the naive baselines at one level over many held-out images (JSON).

    python benchmarks/quality_bar.py --n-images 16            # held-out faces 0..15, level M
    python benchmarks/quality_bar.py --first 16 --n-images 32 # faces 16..47 (never used for tuning)

The demo shows 4 faces; this runs the same tasks (`rusir.demo.DEMO_TASKS`, same seeds, steps and
loss) over more of them, in batches, so that "RUSIR beats the naive baseline" is measured with
less luck. Per task: mean PSNR/SSIM of RUSIR and of the naive baseline, and on how many images
RUSIR wins in PSNR. Finished batches are kept in the JSON, so a stopped run resumes where it was.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir.data import heldout
from rusir.demo import DEMO_TASKS
from rusir.evaluation.experiment import mean, run_task
from rusir.model.generators import info as generator_info, load_generator
from rusir.inversion.schedule import resolve as resolve_schedule


def summarize(per_image: dict[str, dict[str, list[float]]]) -> dict:
    """Means and PSNR win count of RUSIR over the naive baseline, from per-image scores."""
    out = {}
    for key in ("psnr", "ssim"):
        out[f"{key}_rusir"] = round(mean(per_image["restored"][key]), 3)
        out[f"{key}_naive"] = round(mean(per_image["naive"][key]), 3)
    pairs = zip(per_image["restored"]["psnr"], per_image["naive"]["psnr"])
    out["psnr_wins"] = sum(r > n for r, n in pairs)
    out["n_images"] = len(per_image["restored"]["psnr"])
    return out


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser()
    p.add_argument("--generator", default="toyfaces64")
    p.add_argument("--n-images", type=int, default=16)
    p.add_argument("--first", type=int, default=0, help="first held-out face (e.g. 16: faces never used for tuning)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--level", default="M")
    p.add_argument("--tasks", default=",".join(DEMO_TASKS))
    p.add_argument("--steps", type=lambda text: [int(n) for n in text.split(",")], default=None,
                   help="RUSIR steps per phase, e.g. 150,150,150 (default: the generator's own)")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    G = load_generator(a.generator)
    steps, lrs, lr_scale = resolve_schedule(G, steps=a.steps)  # None: the generator's own
    steps = list(steps)
    gt = heldout(a.first + a.n_images, size=G.img_resolution)[a.first:]
    suffix = f"_from{a.first}" if a.first else ""
    path = Path(a.out) / f"quality_bar_{Path(a.generator).stem}_{a.level}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = json.loads(path.read_text()) if path.exists() else {}
    meta = {"generator": a.generator, "level": a.level, "loss": generator_info(G).default_loss,
            "lr_scale": lr_scale, "lrs": list(lrs), "batch": a.batch, "steps": steps,
            "first": a.first}
    old = record.get("_meta")
    if old and any(old.get(k) != v for k, v in meta.items()):
        record = {}  # another configuration: start over rather than mix results
    record["_meta"] = {**meta, "threads": torch.get_num_threads()}
    for task in a.tasks.split(","):
        scores = record.setdefault(task, {"per_image": {"restored": {"psnr": [], "ssim": []},
                                                        "naive": {"psnr": [], "ssim": []}},
                                          "seconds": 0.0})
        done = len(scores["per_image"]["restored"]["psnr"])
        for start in range(done, a.n_images, a.batch):
            run = run_task(G, gt[start:start + a.batch], task, a.level, seed=a.first + start, steps=steps,
                           progress=False)
            for who in ("restored", "naive"):
                for key in ("psnr", "ssim"):
                    scores["per_image"][who][key] += list(map(float, run.scores[who][key]))
            scores["seconds"] += run.scores["seconds"]
            scores["summary"] = summarize(scores["per_image"])
            path.write_text(json.dumps(record, indent=1))  # a finished batch is never lost
        s = scores.get("summary") or summarize(scores["per_image"])
        print(f"{task:>13} {a.level}: PSNR naive {s['psnr_naive']:.2f} -> RUSIR {s['psnr_rusir']:.2f} dB, "
              f"wins {s['psnr_wins']}/{s['n_images']}", flush=True)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
