"""Throughput (items per hour) of one small fixed benchmark under each engine, written as JSON.

    python benchmarks/cluster_throughput.py                      # toyfaces64, 8 faces, 2 tasks
    python benchmarks/cluster_throughput.py --steps 10,10,10 --out benchmarks/results/cluster_throughput_toyfaces64_cpu.json

The same `run_bench` configuration (RUSIR, upsampling@M and UNAP@M, the first 8 held-out faces,
reduced steps) runs into a fresh folder under: the local engine (1 and 2 torch threads, batch 1
and 8) and `--engine ray` on a local Ray with 1 and 2 CPU workers (1 thread each; batch 1 and
8). Ray's start is timed apart from the run (the run includes the workers' start and generator
load). The machine's load (`os.getloadavg`, as `uptime` prints it) is recorded before and after
each configuration, since other jobs share the CPUs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir.engine.runner import run_bench

TASKS = "upsampling@M,UNAP@M"
# (name, engine, torch threads of the driver (local) / Ray CPU workers, batch)
CONFIGS = [("local_t1_b1", "local", 1, 1), ("local_t2_b1", "local", 2, 1),
           ("local_t1_b8", "local", 1, 8), ("local_t2_b8", "local", 2, 8),
           ("ray_w1_b1", "ray", 1, 1), ("ray_w2_b1", "ray", 2, 1), ("ray_w2_b8", "ray", 2, 8)]


def run_one(args, engine: str, workers: int, batch: int) -> dict:
    """One configuration into a fresh folder: seconds, items, items per hour."""
    row: dict = {"engine": engine, "batch": batch, "load_before": list(os.getloadavg())}
    if engine == "ray":
        import ray
        start = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        row.update(ray_workers=workers, ray_init_s=round(time.perf_counter() - start, 2))
    else:
        torch.set_num_threads(workers)
        row["torch_threads"] = workers
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            s = run_bench(args.generator, f"heldout:{args.n_images}", methods="rusir", tasks=TASKS,
                          out=out, steps=args.steps, metrics=("psnr", "ssim"), progress=False,
                          batch=batch, engine=engine, device="cpu")
            seconds = time.perf_counter() - start
    finally:
        if engine == "ray":
            ray.shutdown()
    if s.failed or s.done != s.items:
        raise RuntimeError(f"{engine} batch {batch}: {s.line()} {s.failures[:1]}")
    row.update(items=s.done, seconds=round(seconds, 2),
               items_per_hour=round(s.done / seconds * 3600, 1), load_after=list(os.getloadavg()))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", default="toyfaces64")
    p.add_argument("--n-images", type=int, default=8)
    p.add_argument("--steps", default="10,10,10", help="RUSIR steps per phase")
    p.add_argument("--only", default=None, help="comma list of configuration names")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/cluster_throughput_toyfaces64_cpu.json"))
    args = p.parse_args()
    args.steps = tuple(int(v) for v in args.steps.split(","))
    chosen = [c for c in CONFIGS if args.only is None or c[0] in args.only.split(",")]
    rows = {}
    for name, engine, workers, batch in chosen:
        rows[name] = run_one(args, engine, workers, batch)
        print(name, rows[name], flush=True)
    record = {"benchmark": "cluster_throughput", "generator": args.generator, "tasks": TASKS,
              "methods": "rusir", "n_images": args.n_images, "steps": list(args.steps),
              "device": "cpu", "cpus": os.cpu_count(), "torch": torch.__version__,
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "note": "machine shared with other jobs: see load_before / load_after (1, 5, 15 min)",
              "configs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
