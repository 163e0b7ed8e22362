"""Why W++ hurts noisy small targets: the loss of a restore against the loss of the truth (issue 20).

    python benchmarks/discrepancy_probe.py --first 48 --n-images 4   # -> discrepancy_probe_toyfaces64.json

For each setting, restores faces with the embedded generator's schedule and no stop
(`discrepancy=0`) and records every 10 steps the per-image loss, PSNR vs the truth and, every 50,
the floor estimate of `rusir.inversion.discrepancy` at the current image; plus the `oracle`: the
loss of the TRUE image against the target (8 draws of the approximation's noise). A restore whose
loss falls below the oracle fits what the truth cannot: the target's noise. Faces 48-51 were used
to choose tau (never 16-47, the robustness table's).
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir import degradations
from rusir.data import heldout_paths, load_image
from rusir.engine.records import as_8bit, write_json
from rusir.inversion.discrepancy import noise_floor
from rusir.inversion.loop import Rendered, evaluate_loss
from rusir.inversion.method import prepare
from rusir.inversion.restore import restore
from rusir.metrics import psnr
from rusir.model.generators import load_generator

SETTINGS = "UN@M,UA@M,UNAP@M,upsampling@M,denoising@M,deartifacting@M"


def oracle(problem, truth: torch.Tensor, draws: int = 8) -> torch.Tensor:
    """Mean loss [B] of the truth's approximation against the target (copies: the run's noise
    streams are left alone)."""
    deg, loss = copy.deepcopy(problem.degradation), copy.deepcopy(problem.loss)
    with torch.no_grad():
        return torch.stack([evaluate_loss(loss, Rendered(truth, deg.degrade_prediction(truth),
                                                         getattr(deg, "mask", None)), problem.target)
                            for _ in range(draws)]).mean(0)


def probe(G, gt: torch.Tensor, task: str, level: str, first: int) -> dict:
    deg = degradations.make(task, level, seed=first)
    with torch.no_grad():
        target = deg.degrade_ground_truth(gt)
    problem = prepare(G, target, deg, None)
    trace = []

    def record(info):
        if info.step % 10 and info.step != info.steps - 1:
            return
        x = info.images.detach()
        row = {"phase": info.phase, "step": info.step, "loss": info.loss.tolist(),
               "psnr": psnr(as_8bit(x.clamp(0, 1)), gt).tolist()}
        if info.step % 50 == 0 or info.step == info.steps - 1:
            twin, loss = copy.deepcopy(deg), copy.deepcopy(problem.loss)
            with torch.no_grad():
                row["self_floor"] = noise_floor(loss, twin, x, twin.degrade_prediction(x),
                                                getattr(twin, "mask", None), info.step).tolist()
        trace.append(row)

    restore(G, target, deg, seed=0, progress=False, callback=record, discrepancy=0)
    return {"oracle": oracle(problem, gt).tolist(), "trace": trace}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--first", type=int, default=48)
    p.add_argument("--n-images", type=int, default=4)
    p.add_argument("--settings", default=SETTINGS)
    p.add_argument("--json", default="benchmarks/results/discrepancy_probe_toyfaces64.json")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    G = load_generator("toyfaces64")
    gt = as_8bit(torch.cat([load_image(q, 64) for q in heldout_paths()[a.first:a.first + a.n_images]]))
    out = {"_meta": {"generator": "toyfaces64", "faces": f"held-out {a.first}..{a.first + a.n_images - 1}",
                     "schedule": "the generator's own, no stop (discrepancy=0)", "every": 10}}
    for setting in a.settings.split(","):
        t0 = time.time()
        task, level = setting.split("@")
        out[setting] = probe(G, gt, task, level, a.first)
        write_json(Path(a.json), out)
        print(setting, f"{time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
