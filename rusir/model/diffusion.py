"""Diffusion priors: an epsilon-predicting `diffusers.UNet2DModel` and its noise schedule.

DDRM (rusir.baselines.ddrm) restores with one of these instead of a StyleGAN. A prior is named
like a generator:

* `toyfaces64-ddpm` -- the embedded one, trained by `python -m rusir.train.diffusion` on the same
  avatar faces as `toyfaces64` (rusir/assets/toyfaces64-ddpm/, docs/ddrm.md);
* `ddpm-celebahq-256` -- google/ddpm-celebahq-256, the published diffusers port of the CelebA-HQ
  DDPM (Ho et al. 2020); DDRM's paper used its own CelebA-HQ checkpoint of the same model family
  (rusir.model.weights: where to put the files offline);
* or a folder holding a `save_pretrained` UNet (config.json + diffusion_pytorch_model.safetensors),
  directly or in its `unet/` sub-folder.

`default_prior(G)` picks the prior of the generator's domain, so that `rusir bench --methods
rusir,ddrm` compares priors trained on the same faces. Every prior here uses DDPM's linear beta
schedule over 1000 steps (`make_scheduler`), as both the published models and ours were trained.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor

from . import weights
from .generators import info as generator_info

__all__ = ["ASSETS", "EMBEDDED_PRIOR", "PRIORS", "DiffusionPrior", "make_scheduler",
           "load_prior", "default_prior", "sample_images"]

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EMBEDDED_PRIOR = "toyfaces64-ddpm"
# prior name -> the weight files of the registry it needs (config first), or None: embedded
PRIORS: dict[str, Optional[tuple[str, ...]]] = {
    EMBEDDED_PRIOR: None,
    "ddpm-celebahq-256": ("ddpm-celebahq-256-config", "ddpm-celebahq-256-unet"),
}
# a generator (by its registry name) -> the diffusion prior of its domain
GENERATOR_PRIORS = {"toyfaces64": EMBEDDED_PRIOR, "celebahq256": "ddpm-celebahq-256"}


class DiffusionPrior:
    """An epsilon network and the cumulative alphas it was trained with.

    `alphas_cumprod[t]` = prod_{s<=t} (1 - beta_s), t = 0..999; images live in [-1, 1]."""

    def __init__(self, unet, alphas_cumprod: Tensor, name: str) -> None:
        self.unet, self.alphas_cumprod, self.name = unet.eval().requires_grad_(False), alphas_cumprod, name

    @property
    def resolution(self) -> int:
        return int(self.unet.config.sample_size)

    def to(self, device: torch.device) -> "DiffusionPrior":
        self.unet.to(device)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        return self

    def eps(self, x: Tensor, t: int) -> Tensor:
        """The predicted noise of x_t [B, 3, R, R] at integer timestep t."""
        steps = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        return self.unet(x, steps).sample


def make_scheduler():
    """DDPM's schedule as DDRM's models were trained: 1000 steps, betas linear 1e-4..0.02."""
    from diffusers import DDIMScheduler  # heavy; the `diffusion` extra
    return DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                         beta_schedule="linear", clip_sample=False)


def _unet_folder(path: Path) -> Path:
    return path / "unet" if (path / "unet" / "config.json").is_file() else path


def load_prior(name_or_path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> DiffusionPrior:
    """A prior by name (PRIORS) or from a diffusers folder; missing files -> MissingWeightsError."""
    from diffusers import UNet2DModel  # heavy; the `diffusion` extra
    key = str(name_or_path)
    if key == EMBEDDED_PRIOR:
        folder = ASSETS / EMBEDDED_PRIOR
        if not (folder / "config.json").is_file():
            raise weights.MissingWeightsError(
                f"the embedded diffusion prior is not in {folder}: train it with `python -m "
                "rusir.train.diffusion` and copy <out>/unet/* there (docs/ddrm.md)")
    elif key in PRIORS:
        files = [weights.fetch(entry) for entry in PRIORS[key]]
        folder = files[0].parent
    else:
        folder = _unet_folder(Path(key))
        if not (folder / "config.json").is_file():
            raise ValueError(f"unknown diffusion prior {key!r}: not one of {sorted(PRIORS)} and not "
                             "a folder with a diffusers UNet (config.json)")
    unet = UNet2DModel.from_pretrained(folder, local_files_only=True, low_cpu_mem_usage=False)
    return DiffusionPrior(unet, make_scheduler().alphas_cumprod.float(), key).to(torch.device(device))


def default_prior(G) -> str:
    """The prior of G's domain: by G's registry name, else by its resolution (64 px: the embedded
    prior, 256 px: CelebA-HQ); ValueError when neither says."""
    name = str(getattr(generator_info(G), "name", "") or "")
    if name in GENERATOR_PRIORS:
        return GENERATOR_PRIORS[name]
    by_size = {64: EMBEDDED_PRIOR, 256: "ddpm-celebahq-256"}
    if int(G.img_resolution) in by_size:
        return by_size[int(G.img_resolution)]
    raise ValueError(f"no diffusion prior for a {G.img_resolution} px generator; pass prior=<name or "
                     f"folder> (known: {sorted(PRIORS)})")


@torch.no_grad()
def sample_images(unet, scheduler, noise: Tensor, steps: int = 50) -> Tensor:
    """Unconditional DDIM samples (eta 0) from x_T = noise [B, 3, R, R]; returns [B, 3, R, R] in
    ~[0, 1]. For training grids and the prior's FID."""
    scheduler.set_timesteps(steps)
    x = noise
    for t in scheduler.timesteps:
        eps = unet(x, t.expand(x.shape[0]).to(x.device)).sample
        x = scheduler.step(eps, t, x, eta=0.0).prev_sample
    return ((x + 1) / 2)
