"""L-BRGM's own perceptual term: a VGG16 feature distance, as its official code computes it.

brgm-pytorch / L-BRGM (`getVggFeatures` and the projection loop; spec 7.2) score an image
against the target by

    perceptual = 2e7 * mean_features (phi(A(f(G(w)))) - phi(A(y)))^2

on the 0-255 scale, where A is an area resize to 256 x 256 (`F.interpolate(mode="area")`) and
phi is NVIDIA's TorchScript VGG16 LPIPS feature extractor (the StyleGAN2-ADA metrics file
`vgg16.pt`, called with `resize_images=False, return_lpips=True`: the LPIPS-weighted,
channel-normalised activations of its five layers, flattened). Per image here ([B]), so a
batch is each image as alone. The weights cannot be bundled (NVIDIA's file); without them
`load_features` raises the usual MissingWeightsError, and `lbrgm` falls back to rusir's loss and
records it. Any callable [B, 3, 256, 256] (0-255) -> [B, ...] can stand for phi (`features`),
which is how the tests check the computation on a small random network.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.weights import MissingWeightsError, WeightFile, fetch, register

__all__ = ["VGG16_LPIPS", "SIZE", "WEIGHT", "LbrgmPerceptual", "load_features", "lbrgm_perceptual"]

SIZE = 256          # getVggFeatures: F.interpolate(images, size=(256, 256), mode="area")
WEIGHT = 2e7        # L-BRGM's perceptual weight on the 0-255 scale (spec 7.2)

VGG16_LPIPS = register(WeightFile(
    name="stylegan2-ada-vgg16",
    url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt",
    filename="vgg16.pt",
    cache_dir=os.environ.get("RUSIR_CACHE", "~/.cache/rusir"),
    note="NVIDIA's TorchScript VGG16 LPIPS feature extractor (StyleGAN2-ADA metrics), the "
         "perceptual network of BRGM / L-BRGM. No checksum is published: presence is checked."))

Features = Callable[[Tensor], Tensor]


class LbrgmPerceptual:
    """x, y [B, 3, h, w] in [0, 1] -> L-BRGM's perceptual term per image [B] (module doc).

    features: phi, on [B, 3, SIZE, SIZE] images in 0-255; weight: the term's factor (2e7)."""

    def __init__(self, features: Features, weight: float = WEIGHT, size: int = SIZE):
        self.features, self.weight, self.size = features, float(weight), int(size)

    def embed(self, x: Tensor) -> Tensor:
        """phi(A(255 x)) flattened: [B, F]."""
        resized = F.interpolate(x * 255.0, size=(self.size, self.size), mode="area")
        return self.features(resized).flatten(1)

    def __call__(self, x: Tensor, y: Tensor, y_features: Optional[Tensor] = None) -> Tensor:
        """The term of x against y ([B]); `y_features` (embed(y)) saves recomputing a fixed target's."""
        fy = self.embed(y) if y_features is None else y_features
        return self.weight * (self.embed(x) - fy).square().mean(1)


_LOADED: dict[str, object] = {}   # device -> phi, or the MissingWeightsError it gave (one try per process)


def load_features(device=None) -> Features:
    """NVIDIA's VGG16 LPIPS extractor as phi (MissingWeightsError offline without the file; a
    failed download is not retried in this process, so a sweep does not wait on it per item)."""
    key = str(device or "cpu")
    if key not in _LOADED:
        try:
            path = fetch(VGG16_LPIPS)
        except MissingWeightsError as exc:
            _LOADED[key] = exc
        else:
            net = torch.jit.load(str(path), map_location=key).eval()
            for p in net.parameters():
                p.requires_grad_(False)
            _LOADED[key] = lambda images: net(images, resize_images=False, return_lpips=True)
    found = _LOADED[key]
    if isinstance(found, MissingWeightsError):
        raise found
    return found


def lbrgm_perceptual(device=None, weight: float = WEIGHT) -> LbrgmPerceptual:
    """L-BRGM's perceptual term with the official weights (MissingWeightsError without them)."""
    return LbrgmPerceptual(load_features(device), weight)

