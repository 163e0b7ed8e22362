"""Reference quality of the shipped generator toyfaces64, measured as its test measures it.

    python benchmarks/shipped_reference.py                # -> results/shipped_reference_toyfaces64.json
    python benchmarks/shipped_reference.py --threads 2    # the same with other float rounding
    python benchmarks/shipped_reference.py --noise 0.2    # weights + 0.2 x each tensor's std of noise

tests/test_shipped_generator.py fails when a run's mean PSNR over FACES falls more than its
tolerance below the reference recorded here. A single face's PSNR jumps by up to 2.5 dB with the
step the discrepancy stop ends it at (so between machines, whose rounding differs), hence means
over 8 faces. `--threads` shows the rounding spread on one machine; `--noise` makes a worse file
(Gaussian noise on every weight tensor, scaled by its std) to check that the tolerance catches it.
Only the run without --noise, at 1 thread, writes the reference.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from rusir import restore
from rusir.data import heldout
from rusir.studies.experiment import mean, run_task
from rusir.metrics import psnr
from rusir.model.generators import load_generator

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "benchmarks" / "results" / "shipped_reference_toyfaces64.json"
FACES = tuple(range(16, 24))     # held-out faces, none used to choose the loss or the schedule
SHORT = (5, 5, 40)               # reduced W / W+ / W++ steps (the generator's own: 50 / 50 / 300)
TASKS = ("denoising", "inpainting")   # at level M, degradation seed FACES[0]


def measure(G, faces: torch.Tensor) -> dict[str, dict]:
    """{run: {"mean", "psnr": per face, "naive": per face (tasks)}}: identity inversion and
    RUSIR on each task at level M, with the generator's own rates, loss and stop."""
    out = {}
    result = restore(G, faces, steps=SHORT, progress=False)
    got = psnr(result.images.clamp(0, 1), faces).tolist()
    out["identity"] = {"mean": round(mean(got), 3), "psnr": [round(v, 3) for v in got]}
    for task in TASKS:
        run = run_task(G, faces, task, "M", seed=FACES[0], steps=SHORT, progress=False,
                       method=_restore_seed_0)
        ours, naive = run.scores["restored"]["psnr"], run.scores["naive"]["psnr"]
        out[task] = {"mean": round(mean(ours), 3), "psnr": [round(v, 3) for v in ours],
                     "naive": [round(v, 3) for v in naive]}
    return out


def _restore_seed_0(G, target, degradation=None, *, seed=0, **options):
    """RUSIR with its own seed 0 whatever the degradation's: the measure as it was recorded
    (run_task now seeds the method with the degradation's seed, FACES[0])."""
    return restore(G, target, degradation, seed=0, **options)


def faces() -> torch.Tensor:
    return heldout(max(FACES) + 1)[list(FACES)]


def noisy(G, noise: float, seed: int = 0):
    """G with Gaussian noise of `noise` x each floating-point weight tensor's std added."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in G.parameters():
            if p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * noise * p.std())
    return G


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0, help="seed of the weight noise")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    G = load_generator("toyfaces64")
    if a.noise:
        noisy(G, a.noise, a.seed)
    start = time.perf_counter()
    runs = measure(G, faces())
    seconds = time.perf_counter() - start
    print(json.dumps({k: v["mean"] for k, v in runs.items()}), f"[{seconds:.0f} s]")
    if a.noise or a.threads != 1:
        if REFERENCE.is_file():
            ref = json.loads(REFERENCE.read_text())["runs"]
            print("vs reference:", {k: round(v["mean"] - ref[k]["mean"], 3) for k, v in runs.items()})
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    REFERENCE.write_text(json.dumps({
        "made_by": "python benchmarks/shipped_reference.py", "date": _dt.date.today().isoformat(),
        "commit": commit, "generator": "toyfaces64", "faces": list(FACES), "steps": list(SHORT),
        "threads": a.threads, "torch": torch.__version__, "python": platform.python_version(),
        "seconds": round(seconds, 1), "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
