"""How far rounding alone moves a table cell: `rusir bench --repeats 3`, then the spread.

    nice python benchmarks/repeat_spread.py                        # toyfaces64, faces 60-63, rusir
    python benchmarks/repeat_spread.py --methods rusir,pulse --steps 2,2,2 --out /tmp/x.json

The same `make demo` on two machines gave per-task PSNR means over 4 faces up to 0.54 dB apart:
float32 kernels round differently on different CPUs and NGD's fixed-length steps amplify it.
This runs every item 3 times (repeat r >= 1: a start perturbed at float32 rounding level for
RUSIR, another seed for PULSE; rusir.engine.unit) and reports per (method, task) the mean PSNR
over the faces of each repeat and its spread over repeats (max - min and the sample SD). As a
second, unperturbed source of rounding it runs repeat 0 again with one thread
(torch.set_num_threads(1)) against the main run's two and reports that difference too. Writes
benchmarks/results/repeat_spread_toyfaces64.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import defaultdict
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir.data.outputs import write_text
from rusir.engine.records import load_records
from rusir.engine.runner import run_bench
from rusir.engine.unit import REPEAT_JITTER

TASKS = "upsampling@M,denoising@M,deartifacting@M,inpainting@M,UNAP@M"


def bench(args, folder: Path, repeats: int, threads: int) -> float:
    """One run_bench into `folder` with `threads` torch threads; its seconds."""
    torch.set_num_threads(threads)
    started = time.time()
    summary = run_bench(args.generator, args.images, args.methods, TASKS, folder, steps=args.steps,
                        metrics=("psnr", "ssim"), progress=False, batch=args.batch,
                        repeats=repeats, device="cpu", save_latent=False)
    print(f"{folder.name} ({threads} threads): {summary.line()}", flush=True)
    if summary.failed:
        raise SystemExit(f"failures: {summary.failures[0]['error']}")
    return time.time() - started


def means(folder: Path) -> dict:
    """{(method, task@level): {repeat: mean accuracy PSNR over the images}}."""
    cells: dict = defaultdict(lambda: defaultdict(list))
    for rec in load_records(folder):
        cells[(rec["method"], f"{rec['task']}@{rec['level']}")][rec.get("repeat", 0)].append(
            rec["metrics"]["accuracy_psnr"])
    return {cell: {r: statistics.fmean(v) for r, v in sorted(by.items())} for cell, by in cells.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="toyfaces64")
    parser.add_argument("--images", default="heldout:60-63")
    parser.add_argument("--methods", default="rusir")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", default=None, help="per phase, e.g. 2,2,2 (default: the generator's)")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/rusir_repeat_spread"),
                        help="where the benchmark folders go (resumable)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "repeat_spread_toyfaces64.json")
    args = parser.parse_args()
    args.steps = None if args.steps is None else [int(s) for s in args.steps.split(",")]

    seconds = {"repeats_2_threads": bench(args, args.runs / "repeats", args.repeats, 2),
               "repeat0_1_thread": bench(args, args.runs / "threads1", 1, 1)}
    main_means, one_thread = means(args.runs / "repeats"), means(args.runs / "threads1")
    cells = {}
    for (method, task), by_repeat in sorted(main_means.items()):
        values = list(by_repeat.values())
        alone = one_thread.get((method, task), {}).get(0)
        cells[f"{method}/{task}"] = {
            "mean_psnr_per_repeat": {str(r): round(v, 4) for r, v in by_repeat.items()},
            "spread_max_min": round(max(values) - min(values), 4),
            "spread_sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
            "repeat0_1_thread": None if alone is None else round(alone, 4),
            "threads_1_vs_2": None if alone is None else round(alone - by_repeat[0], 4)}
    result = {
        "generator": args.generator, "images": args.images, "methods": args.methods,
        "tasks": TASKS, "repeats": args.repeats, "batch": args.batch,
        "steps": args.steps or "the generator's own schedule", "jitter": REPEAT_JITTER,
        "metric": "accuracy PSNR (dB) of the 8-bit prediction, mean over the images",
        "device": "cpu", "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "seconds_this_invocation": {k: round(v, 1) for k, v in seconds.items()},   # resumed: new items only
        "cells": cells,
        "largest_spread_max_min": max(c["spread_max_min"] for c in cells.values()),
        "largest_threads_1_vs_2": max(abs(c["threads_1_vs_2"] or 0) for c in cells.values()),
    }
    write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(json.dumps(cells, indent=1))


if __name__ == "__main__":
    main()
