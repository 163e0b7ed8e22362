"""The main job: restore held-out images for every task at level M with the embedded generator.

Writes `runs/demo/demo_<task>.png` (target | W | W+ | W++ | naive | ground truth, one row per
image) and `runs/demo/demo_metrics.md` / `.json` (PSNR and SSIM of RUSIR vs the naive baseline),
then prints where they are, last. Runs offline on a laptop CPU. `runs/` is not tracked: a first
`make demo` leaves the clone clean. The committed copies in `figures/` (quoted by the model card)
are rewritten only on purpose, by `make figures` (`rusir demo --out figures`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import torch

from .data import heldout
from .data.outputs import write_text
from .studies.experiment import TaskRun, mean, run_task, setup
from .studies.figures import demo_figure
from .model.generators import DEFAULT, info as generator_info

__all__ = ["DEMO_TASKS", "demo_figure", "metrics_table", "run_demo"]

DEMO_TASKS = ("upsampling", "denoising", "deartifacting", "inpainting", "UNAP")
DEFAULT_OUT = "runs/demo"        # untracked (.gitignore); `make figures` writes the committed copies


def metrics_table(runs: Sequence[TaskRun]) -> str:
    """Markdown table: mean PSNR / SSIM vs ground truth, RUSIR vs the naive baseline."""
    lines = ["| task | level | PSNR naive | PSNR RUSIR | SSIM naive | SSIM RUSIR | PSNR after W / W+ / W++ | s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r.scores
        per_phase = " / ".join(f"{mean(p['psnr']):.2f}" for p in s["phases"].values())
        lines.append(f"| {r.task} | {r.level} | {mean(s['naive']['psnr']):.2f} | "
                     f"{mean(s['restored']['psnr']):.2f} | {mean(s['naive']['ssim']):.3f} | "
                     f"{mean(s['restored']['ssim']):.3f} | {per_phase} | {s['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def run_demo(generator: str = DEFAULT, n_images: int = 4, tasks: Sequence[str] = DEMO_TASKS,
             level: str = "M", steps: Sequence[int] | None = None, seed: int = 0,
             out: str | Path = DEFAULT_OUT, progress: bool = True, loss: str | None = None) -> list[TaskRun]:
    """Run every demo task on `n_images` held-out images; write figures and the metrics table.

    loss: a preset name or YAML path; None uses the generator's own preset.
    steps: per phase; None uses the generator's own schedule (rusir.inversion.schedule).
    Runs on the CPU (the committed figures and numbers are CPU runs).
    """
    start = time.perf_counter()
    out = Path(out)
    chosen = setup(generator, loss, steps, device="cpu", verbose=progress)
    G, loss_fn, steps = chosen
    gt = heldout(n_images, size=G.img_resolution)
    runs = []
    for task in tasks:
        run = run_task(G, gt, task, level, seed=seed, loss=loss_fn, steps=steps, progress=progress)
        demo_figure(run, out / f"demo_{task}.png")
        runs.append(run)
        if progress:
            print(run.summary())
    table = metrics_table(runs)
    write_text(out / "demo_metrics.md", table)
    record = {r.task: {"level": r.level, **r.scores} for r in runs}
    record["_meta"] = {"generator": generator, "loss": loss or generator_info(G).default_loss,
                       "n_images": n_images, "steps": list(steps), "lrs": list(chosen.rates()),
                       "seconds_total": time.perf_counter() - start, "torch_threads": torch.get_num_threads()}
    write_text(out / "demo_metrics.json", json.dumps(record, indent=1))
    print(table)
    print(f"figures: {', '.join(str(out / f'demo_{t}.png') for t in tasks)}")
    print(f"metrics: {out / 'demo_metrics.md'} and {out / 'demo_metrics.json'} "
          f"({time.perf_counter() - start:.0f} s total)")
    print(f"done: the figures and the metrics are in {out}/")
    return runs
