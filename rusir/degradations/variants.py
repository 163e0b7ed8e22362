"""Extra tasks: identity, uncropping and the paper's diffusion-comparison variants (spec 5.8).

* ``AveragePoolUpsampling`` -- the approximation is exact (true = average pooling).
* ``NearestUpsampling`` -- true = nearest-neighbour subsampling (pixel (f i + f//2), like
  Pillow's NEAREST), unknown to the approximation (still average pooling).
* ``GaussianNoise`` -- additive Gaussian noise, *not* clamped and *not* 8-bit serialised: the
  idealised linear-Gaussian setting diffusion restorers assume (the one task whose target is
  not an 8-bit image). ``ClampedGaussianNoise`` -- the same noise clamped to [0, 1] and
  serialised, as a saved photo would be; its approximation clamps with the surrogate clamp.
  The spec gives no noise levels; ours match the Poisson levels' std at mid-grey,
  sigma = sqrt(0.5 / lambda) for lambda = 96..6.
* ``Uncropping`` -- only one corner region is kept (default: the top-left quarter of the
  image, side H/2 x W/2). ``region="centre"`` reproduces the authors' code, which keeps the
  centre square [400:600, 400:600] of a 1024 image (scaled to the image size).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import DEFAULT_SEED, Degradation, Seed, per_image_draw, surrogate_clamp
from .denoising import Denoising
from .upsampling import Upsampling, average_pool_downsample


class Identity(Degradation):
    """No degradation (plain inversion); the target is still 8-bit serialised."""

    name = "identity"

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        return x

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        return x


class AveragePoolUpsampling(Degradation):
    """Downsampling by average pooling, known exactly to the approximation."""

    name = "avgpool_upsampling"
    LEVEL_PARAMS = Upsampling.LEVEL_PARAMS

    def __init__(self, level: str = "M", seed: Seed = DEFAULT_SEED) -> None:
        super().__init__(level, seed)
        self.factor = self.LEVEL_PARAMS[level]

    def target_shape(self, height: int, width: int) -> tuple[int, int]:
        return height // self.factor, width // self.factor

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        return average_pool_downsample(x, self.factor)

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        return average_pool_downsample(x, self.factor)

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}


class NearestUpsampling(AveragePoolUpsampling):
    """Nearest-neighbour downsampling; the approximation still assumes average pooling."""

    name = "nearest_upsampling"

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        f = self.factor
        h, w = self.target_shape(x.shape[2], x.shape[3])
        return x[:, :, f // 2::f, f // 2::f][:, :, :h, :w]


class GaussianNoise(Degradation):
    """Additive Gaussian noise, unclamped and kept in floating point."""

    name = "gaussian_noise"
    serialise = False
    LEVEL_PARAMS = {lvl: math.sqrt(0.5 / lam) for lvl, (lam, _) in Denoising.LEVEL_PARAMS.items()}

    def __init__(self, level: str = "M", seed: Seed = DEFAULT_SEED,
                 sigma: float | None = None) -> None:
        super().__init__(level, seed)
        self.sigma = float(sigma if sigma is not None else self.LEVEL_PARAMS[level])

    def _noisy(self, x: torch.Tensor, gens: list[torch.Generator], cpu64: bool = False) -> torch.Tensor:
        """x + sigma * n, n drawn per image from that image's generator (float64 on the CPU for
        targets, identical on every device; on x's device and dtype for the approximation)."""
        if cpu64:
            n = per_image_draw(torch.randn, x.shape[1:], gens, torch.device("cpu"), torch.float64)
        else:
            n = per_image_draw(torch.randn, x.shape[1:], gens, x.device, x.dtype)
        return x + self.sigma * n.to(x.device, x.dtype)

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        return self._noisy(x, [torch.Generator().manual_seed(self.stream_seed(s)) for s in seeds],
                           cpu64=True)

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        return self._noisy(x, self.prediction_generators(x.shape[0], x.device))

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma}


class ClampedGaussianNoise(GaussianNoise):
    """Additive Gaussian noise clamped to [0, 1] and 8-bit serialised."""

    name = "clamped_gaussian_noise"
    salt = "gaussian_noise"  # same noise draw as the unclamped variant for the same seed
    serialise = True

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        return super().true_degradation(x, seeds).clamp(0, 1)

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        gens = self.prediction_generators(x.shape[0], x.device)
        return surrogate_clamp(self._noisy(surrogate_clamp(x), gens))


class Uncropping(Degradation):
    """Keep one region (default the top-left quarter); the rest is unknown (mask = 0)."""

    name = "uncropping"
    REGIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")

    def __init__(self, level: str | None = None, seed: Seed = DEFAULT_SEED,
                 region: str = "top-left") -> None:
        super().__init__(None, seed)
        self.level = level  # level-free task; recorded only
        if region not in self.REGIONS:
            raise ValueError(f"unknown region {region!r}; valid: {list(self.REGIONS)}")
        self.region = region

    def region_mask(self, height: int, width: int) -> torch.Tensor:
        """[1, 1, H, W] with 1 on the kept region."""
        m = torch.zeros(1, 1, height, width)
        if self.region == "centre":  # the authors' [400:600] at 1024, scaled
            r0, r1 = round(height * 400 / 1024), round(height * 600 / 1024)
            c0, c1 = round(width * 400 / 1024), round(width * 600 / 1024)
        else:
            r0, r1 = (0, height // 2) if self.region.startswith("top") else (height - height // 2, height)
            c0, c1 = (0, width // 2) if self.region.endswith("left") else (width - width // 2, width)
        m[:, :, r0:r1, c0:c1] = 1
        return m

    def prepare(self, height: int, width: int, seeds: list[int], device: torch.device) -> None:
        self._mask = self.region_mask(height, width).expand(len(seeds), -1, -1, -1).to(device)

    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        return self.approximation(x)

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.region_mask(x.shape[2], x.shape[3]).to(x.device, x.dtype)

    def params(self) -> dict[str, Any]:
        return {"region": self.region}
