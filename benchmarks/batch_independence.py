"""Image i of a batch vs image i restored alone (seed s+i): how far rounding carries them apart.

    python benchmarks/batch_independence.py --schedules 1,1,1 3,3,3 10,10,10 --batch 9
    python benchmarks/batch_independence.py --schedules 10,10,10 --dtype float64
    python benchmarks/batch_independence.py --schedules default --batch 4 --alone 0,1,2,3 --control

Nothing couples the images of a batch (tests/test_batch_independence.py checks it in float64),
but batched kernels round differently from single-image ones, and RUSIR's fixed-length NGD
steps amplify any difference. For each task at level M (toyfaces64, held-out faces, the
generator's default loss): restore the batch (seed 0) and each listed image alone (seed i);
record the max |pixel difference| and the PSNR (vs ground truth) of both. `--control` also
restores each image alone from a start latent moved by one ulp: the spread any rounding-level
perturbation produces. Results are appended to a JSON file (one record per schedule x dtype).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

import rusir.data
from rusir.degradations import Identity, make
from rusir.inversion.latents import initial_latent
from rusir.inversion.restore import restore
from rusir.metrics import psnr

TASKS = ["identity", "upsampling", "denoising", "deartifacting", "inpainting", "UNAP", "NP"]
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def degradation(task: str, seed: int):
    return Identity(seed=seed) if task == "identity" else make(task, "M", seed=seed)


def measure(G, clean, task, steps, alone, control):
    deg = degradation(task, 0)
    batch = restore(G, deg.degrade_ground_truth(clean), deg, steps=steps, progress=False).images
    rows = []
    for i in alone:
        truth = clean[i:i + 1]
        d = degradation(task, i)
        one = restore(G, d.degrade_ground_truth(truth), d, steps=steps, progress=False).images
        p_batch, p_alone = psnr(batch[i:i + 1], truth).item(), psnr(one, truth).item()
        row = dict(image=i, max_abs=(batch[i:i + 1] - one).abs().max().item(),
                   psnr_batch=p_batch, psnr_alone=p_alone, dpsnr=p_batch - p_alone)
        if control:
            w = initial_latent(G, "W", 1)
            w = torch.nextafter(w, torch.full_like(w, float("inf")))
            d = degradation(task, i)
            moved = restore(G, d.degrade_ground_truth(truth), d, steps=steps, progress=False,
                            init=w).images
            row.update(ulp_max_abs=(moved - one).abs().max().item(),
                       ulp_dpsnr=psnr(moved, truth).item() - p_alone)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schedules", nargs="+", default=["1,1,1", "3,3,3", "10,10,10"],
                    help="steps per phase W,W+,W++, or 'default' (the generator's schedule)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    ap.add_argument("--batch", type=int, default=9)
    ap.add_argument("--alone", default="0,1,4,8", help="images also restored alone")
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--control", action="store_true", help="also alone from a start one ulp away")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "batch_independence_toyfaces64.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    G = rusir.load_generator("toyfaces64").to(dtype)
    clean = rusir.data.heldout(args.batch).to(dtype)
    alone = [int(i) for i in args.alone.split(",")]
    for schedule in args.schedules:
        steps = None if schedule == "default" else tuple(int(s) for s in schedule.split(","))
        record = dict(generator="toyfaces64", level="M", dtype=args.dtype, batch=args.batch,
                      schedule=schedule, control=args.control, torch=torch.__version__,
                      machine=platform.machine(), threads=args.threads, tasks={})
        start = time.perf_counter()
        for task in args.tasks:
            rows = measure(G, clean, task, steps, alone, args.control)
            record["tasks"][task] = dict(max_abs=max(r["max_abs"] for r in rows),
                                         max_abs_dpsnr=max(abs(r["dpsnr"]) for r in rows),
                                         rows=rows)
            t = record["tasks"][task]
            print(f"{args.dtype} {schedule} {task:14s} max |diff| {t['max_abs']:.2e}"
                  f"  max |dPSNR| {t['max_abs_dpsnr']:.3f} dB", flush=True)
        every = [r for t in record["tasks"].values() for r in t["rows"]]
        record["summary"] = dict(max_abs=max(r["max_abs"] for r in every),
                                 max_abs_dpsnr=max(abs(r["dpsnr"]) for r in every),
                                 mean_abs_dpsnr=statistics.mean(abs(r["dpsnr"]) for r in every),
                                 mean_dpsnr=statistics.mean(r["dpsnr"] for r in every))
        if args.control:
            record["summary"].update(
                ulp_max_abs_dpsnr=max(abs(r["ulp_dpsnr"]) for r in every),
                ulp_mean_abs_dpsnr=statistics.mean(abs(r["ulp_dpsnr"]) for r in every))
        record["seconds"] = round(time.perf_counter() - start, 1)
        records = json.loads(args.out.read_text()) if args.out.exists() else []  # appended
        records.append(record)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=1) + "\n")
        print(json.dumps(record["summary"]), flush=True)


if __name__ == "__main__":
    main()
