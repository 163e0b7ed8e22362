"""RUSIR vs the naive baselines at one level over many held-out images (JSON).

    python benchmarks/quality_bar.py --n-images 16            # held-out faces 0..15, level M
    python benchmarks/quality_bar.py --first 16 --n-images 32 # faces 16..47 (never used for tuning)

The demo shows 4 faces; this runs the same tasks (`rusir.demo.DEMO_TASKS`, steps and loss the
generator's own, degradation seed = face index as the demo draws them) over more of them, so that
"RUSIR beats the naive baseline" is measured with less luck. It is a configuration of the
benchmark runner (`rusir.engine.runner.run_bench`): the items are records under `--records`
(default `runs/<json name>/<configuration hash>`), so a stopped run resumes where it was, more
images run only the new ones and other settings start a fresh store. Per task, from the records
(`rusir.report.summarise`): mean PSNR/SSIM of RUSIR and of the naive baseline, and on
how many images RUSIR wins in PSNR; `--batch` items are restored as one batch (the runner's
units), and the JSON is rewritten after each.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir.data import heldout_paths
from rusir.demo import DEMO_TASKS
from rusir.studies.experiment import mean
from rusir.engine.records import config_folder, load_records
from rusir.report import summarise
from rusir.engine.runner import run_bench
from rusir.inversion.restore import restore
from rusir.inversion.schedule import resolve as resolve_schedule
from rusir.model.generators import info as generator_info, load_generator


def per_image(records: list[dict]) -> dict[str, dict[str, list[float]]]:
    """{restored, naive: {psnr, ssim: [per image]}} of one task's records, in image order."""
    s = summarise(records, by=("task",))
    if not s:
        return {who: {"psnr": [], "ssim": []} for who in ("restored", "naive")}
    (cell,) = s.values()
    return {"restored": {"psnr": cell["psnr"], "ssim": cell["ssim"]},
            "naive": {"psnr": cell["naive_psnr"], "ssim": cell["naive_ssim"]}}


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


def task_entry(records: list[dict]) -> dict:
    """One task's JSON entry: per-image scores, restore seconds and their summary."""
    scores = per_image(records)
    return {"per_image": scores, "seconds": round(sum(r.get("restore_seconds") or 0.0 for r in records), 3),
            "summary": summarize(scores)}


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser()
    p.add_argument("--generator", default="toyfaces64")
    p.add_argument("--n-images", type=int, default=16)
    p.add_argument("--first", type=int, default=0, help="first held-out face (e.g. 16: faces never used for tuning)")
    p.add_argument("--batch", type=int, default=8, help="items restored as one batch, and between two writes of the JSON")
    p.add_argument("--level", default="M")
    p.add_argument("--tasks", default=",".join(DEMO_TASKS))
    p.add_argument("--steps", type=lambda text: [int(n) for n in text.split(",")], default=None,
                   help="RUSIR steps per phase, e.g. 150,150,150 (default: the generator's own)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--records", default=None, help="records root (default: runs/<json name>)")
    a = p.parse_args(argv)
    G = load_generator(a.generator)
    steps, lrs, lr_scale = resolve_schedule(G, steps=a.steps)  # None: the generator's own
    steps = list(steps)
    paths = heldout_paths()[a.first:a.first + a.n_images]
    if len(paths) < a.n_images:
        raise SystemExit(f"only {len(paths)} held-out faces from {a.first}; asked for {a.n_images}")
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
    store = config_folder(Path(a.records or Path("runs") / path.stem),
                          {k: v for k, v in meta.items() if k != "batch"})
    record["_meta"] = {**meta, "threads": torch.get_num_threads(), "records": str(store)}
    for task in a.tasks.split(","):
        while True:
            s = run_bench(G, paths, {"rusir": restore}, [(task, a.level)], store, steps=steps,
                          metrics=("psnr", "ssim"), seed=a.first, degradation_seeds="image",
                          device=next(G.parameters()).device, fail_fast=True, max_items=a.batch,
                          batch=a.batch, save_latent=False, progress=False)
            done = [r for r in load_records(store) if r["method"] == "rusir" and r["task"] == task
                    and r["level"] == a.level and r["image_index"] < a.n_images]
            record[task] = task_entry(done)
            path.write_text(json.dumps(record, indent=1))  # finished items are also in the records
            if not s.remaining:
                break
        s = record[task]["summary"]
        print(f"{task:>13} {a.level}: PSNR naive {s['psnr_naive']:.2f} -> RUSIR {s['psnr_rusir']:.2f} dB, "
              f"wins {s['psnr_wins']}/{s['n_images']}", flush=True)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
