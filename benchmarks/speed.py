"""Seconds per RUSIR step (forward + backward + NGD) per phase, written as JSON.

    python benchmarks/speed.py --generator ../shared/fixtures/stylegan2-ada-tiny/tiny64.pkl
    python benchmarks/speed.py --generator toyfaces64 --device cuda --precisions fp32,tf32,bf16
    python benchmarks/speed.py --family stylegan3 --resolution 64    # random weights, no file

`--family stylegan2|stylegan3` times a randomly initialised generator of that family instead of
`--generator`, both of one small configuration (w_dim 64, at most 64 channels per layer; StyleGAN3
keeps its official 14 layers and filters): SG2 against SG3 step time at equal resolution.

Uses the identity degradation and a weight-free loss so it runs offline; the numbers measure the
generator + optimiser, which dominate at small resolutions. Precisions as in
`restore(..., precision=)`; at 1024 px on a GPU use benchmarks/gpu.py.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir.model.generators import load_generator
from rusir.inversion.latents import SPACES, initial_latent, convert
from rusir.inversion.acceleration import LossRunner, check_precision, tf32_scope
from rusir.inversion.presets import build_loss
from rusir.inversion.restore import render, run_phase
from rusir.inversion.schedule import resolve as resolve_schedule


def time_phase(G, target, loss, space: str, steps: int, precision: str) -> float:
    """Seconds per step, with restore's precision semantics (rusir.inversion.acceleration:
    TF32 flags around the call, bf16 autocast of the loss only)."""
    device = target.device
    latent = convert(initial_latent(G, "W", target.shape[0]), space, G)
    loss = LossRunner(loss, check_precision(precision))
    from rusir.degradations import Identity
    with tf32_scope("tf32" in precision):
        run_phase(G, latent, target, Identity(), loss, 2, 0.01, space, progress=False)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run_phase(G, latent, target, Identity(), loss, steps, 0.01, space, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


SMALL_WIDTH = 64   # w_dim and the most channels per layer of a --family generator


def random_generator(family: str, resolution: int, seed: int = 0):
    """A small randomly initialised generator of `family` (weights do not change the step time)."""
    torch.manual_seed(seed)
    if family == "stylegan2":
        from rusir.model.stylegan2 import Generator
        G = Generator(SMALL_WIDTH, 0, SMALL_WIDTH, resolution, 3, mapping_kwargs=dict(num_layers=2),
                      synthesis_kwargs=dict(channel_base=SMALL_WIDTH * resolution,
                                            channel_max=SMALL_WIDTH))
    elif family == "stylegan3":
        from rusir.model.stylegan3 import Generator, StyleGAN3Config
        G = Generator(StyleGAN3Config(z_dim=SMALL_WIDTH, w_dim=SMALL_WIDTH, img_resolution=resolution,
                                      channel_max=SMALL_WIDTH))
    else:
        raise ValueError(f"--family must be stylegan2 or stylegan3, got {family!r}")
    return G.eval().requires_grad_(False)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--generator", default="toyfaces64")
    p.add_argument("--family", default=None, choices=("stylegan2", "stylegan3"), help="stylegan2|stylegan3: random weights, not --generator")
    p.add_argument("--resolution", type=int, default=64, help="of a --family generator")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--loss", default="offline")
    p.add_argument("--precisions", default="fp32")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args()
    device = torch.device(a.device)
    if a.family:
        G = random_generator(a.family, a.resolution).to(device)
        a.generator = f"random_{a.family}_{a.resolution}"
    else:
        G = load_generator(a.generator, device=device)
    loss = build_loss(a.loss).to(device)
    with torch.no_grad():
        target = render(G, initial_latent(G, "W", a.batch) + 0.3).detach()
    steps = resolve_schedule(G)[0]  # the generator's own steps per phase, for a whole restore
    results = {}
    for precision in a.precisions.split(","):
        results[precision] = {s: time_phase(G, target, loss, s, a.steps, precision) for s in SPACES}
    record = {"generator": a.generator, "family": a.family, "num_ws": G.num_ws,
              "parameters": sum(t.numel() for t in G.parameters()),
              "resolution": G.img_resolution, "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": a.batch,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "load_average": os.getloadavg(),
              "loss": a.loss, "seconds_per_step": results,
              "schedule_steps": dict(zip(SPACES, steps)),
              "seconds_per_restore": {k: sum(n * v[s] for s, n in zip(SPACES, steps))
                                      for k, v in results.items()}}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(a.generator).stem
    path = out / f"speed_{name}_{device.type}_b{a.batch}_t{torch.get_num_threads()}.json"
    path.write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
