"""Per-image metrics: accuracy and fidelity as PSNR, SSIM, MS-SSIM and LPIPS.

Each compares two batches image by image and returns Tensor[B] (the paper's protocol, spec
section 6: accuracy = metric(prediction, ground truth); fidelity = metric(TRUE degradation of
the prediction, target)). Images are float tensors [B, 3, H, W] nominally in [0, 1]; the
reference evaluation read 8-bit PNGs, so pass 8-bit-rounded images to match it.

Weights policy: LPIPS needs an ImageNet backbone (`rusir.model.weights`); when it is absent the call
raises `MissingWeightsError` -- it is never computed with a random backbone.
"""
from __future__ import annotations

import re
import warnings
from functools import lru_cache
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch_msssim import ssim as _pm_ssim
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim  # no public per-scale SSIM in pytorch-msssim
from torch import Tensor

from ..model import weights

__all__ = ["PSNR_CAP_DB", "MS_SSIM_WEIGHTS", "LPIPS_BACKBONES", "LPIPS_MIN_SIDE", "psnr", "ssim",
           "ms_ssim", "lpips_network", "lpips_distance"]

PSNR_CAP_DB = 100.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, fine -> coarse


def _check_pair(pred: Tensor, gt: Tensor) -> None:
    if pred.shape != gt.shape or pred.dim() != 4:
        raise ValueError(f"expected two [B, C, H, W] tensors of one shape, got "
                         f"{tuple(pred.shape)} and {tuple(gt.shape)}")


def psnr(pred: Tensor, gt: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR in dB per image: 10 log10(range^2 / MSE). Identical images give PSNR_CAP_DB (100 dB)
    instead of +inf (the MSE is floored at range^2 * 1e-10)."""
    _check_pair(pred, gt)
    mse = (pred.float() - gt.float()).square().flatten(1).mean(1)
    floor = data_range ** 2 * 10 ** (-PSNR_CAP_DB / 10)
    return 10 * torch.log10(data_range ** 2 / mse.clamp_min(floor))


def _window(side: int, win_size: int) -> int:
    """The Gaussian window, shrunk to the largest odd size <= side for tiny images."""
    w = min(win_size, side if side % 2 else side - 1)
    if w < 1:
        raise ValueError(f"image side {side} too small for SSIM")
    return w


def ssim(pred: Tensor, gt: Tensor, data_range: float = 1.0, win_size: int = 11,
         win_sigma: float = 1.5) -> Tensor:
    """SSIM per image (pytorch-msssim: Gaussian window 11, sigma 1.5, K = (0.01, 0.03), valid
    convolution, mean over channels). Images smaller than the window use the largest odd window
    that fits. Differentiable."""
    _check_pair(pred, gt)
    w = _window(min(pred.shape[-2:]), win_size)
    return _pm_ssim(pred, gt, data_range=data_range, size_average=False, win_size=w,
                    win_sigma=win_sigma)


def _safe_pow(v: Tensor, w: float) -> Tensor:
    """relu(v) ** w with a finite gradient everywhere (v <= 0 gives 0 and zero gradient)."""
    return torch.where(v > 0, v.clamp_min(1e-8) ** w, torch.zeros_like(v))


def ms_ssim(pred: Tensor, gt: Tensor, data_range: float = 1.0, win_size: int = 11,
            win_sigma: float = 1.5, weights: Optional[Sequence[float]] = None) -> Tensor:
    """Multi-scale SSIM per image, usable at small sides. Differentiable.

    Standard MS-SSIM (5 scales, window 11) needs a side > 160 px. Here the number of scales is
    the number of dyadic scales whose side still holds the window (up to len(weights), default
    the 5 standard weights): 3 scales at 64 px, 2 at 32 px, 1 (= SSIM) at 16 px; the first
    weights are kept and renormalised to sum to 1. With all scales (>= 176 px for window 11)
    this equals pytorch-msssim's ms_ssim. Negative contrast-structure terms are clipped to 0 (as pytorch-msssim does).
    """
    _check_pair(pred, gt)
    side = min(pred.shape[-2:])
    w = _window(side, win_size)
    base = list(weights) if weights is not None else list(MS_SSIM_WEIGHTS)
    scales = 1
    while scales < len(base) and side // 2 ** scales >= w:
        scales += 1
    wts = base[:scales]
    if scales < len(base):
        wts = [w_ / sum(wts) for w_ in wts]
    win = _fspecial_gauss_1d(w, win_sigma).repeat([pred.shape[1], 1, 1, 1])
    x, y = pred, gt
    value = None
    for i in range(scales):
        s, cs = _ssim(x, y, data_range=data_range, win=win, size_average=False, K=(0.01, 0.03))
        term = _safe_pow(s if i == scales - 1 else cs, wts[i])  # [B, C]
        value = term if value is None else value * term
        if i < scales - 1:
            pad = [d % 2 for d in x.shape[2:]]
            x, y = F.avg_pool2d(x, 2, padding=pad), F.avg_pool2d(y, 2, padding=pad)
    return value.mean(1)


# --- LPIPS -----------------------------------------------------------------------------------

LPIPS_BACKBONES = {"vgg": "vgg16", "alex": "alexnet", "squeeze": "squeezenet1_1"}
LPIPS_MIN_SIDE = {"vgg": 16, "alex": 31, "squeeze": 17}  # smallest side each backbone accepts


@lru_cache(maxsize=3)
def _backbone_state(path: str) -> dict:
    """A torchvision backbone's state dict, read from disk once per process (VGG16 is 528 MiB;
    every loss built from data -- one per restore call in sweeps -- would otherwise re-read it)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def lpips_network(net: str = "vgg", *, _allow_random_backbone_for_tests: bool = False) -> nn.Module:
    """A frozen, eval-mode `lpips.LPIPS` (v0.1 linear heads from the lpips wheel) whose ImageNet
    backbone is loaded from `rusir.model.weights` -- fetched BEFORE lpips is built, so a missing file
    raises MissingWeightsError (file, URL, destination) and nothing is downloaded behind our back.

    `_allow_random_backbone_for_tests=True` keeps lpips' random backbone: for unit tests only,
    the result is NOT the LPIPS metric.
    """
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"unknown LPIPS net {net!r}; choose one of {sorted(LPIPS_BACKBONES)}")
    path = None if _allow_random_backbone_for_tests else weights.fetch(LPIPS_BACKBONES[net])
    import lpips  # heavy (~1.7 s, pulls torchvision models): loaded when LPIPS is first built

    with warnings.catch_warnings():  # torchvision's `pretrained=` deprecation inside lpips
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(pretrained=True, net=net, version="0.1", pnet_rand=True, verbose=False)
    if path is not None:
        state = _backbone_state(str(path))
        try:  # lpips slices torchvision's `features` keeping their indices: sliceK.i.* <- features.i.*
            backbone = {k: state[re.sub(r"^slice\d+\.", "features.", k)]
                        for k in model.net.state_dict()}
        except KeyError as exc:
            raise weights.CorruptWeightsError(
                f"{path} is not a torchvision {LPIPS_BACKBONES[net]} state dict (no {exc})") from exc
        model.net.load_state_dict(backbone, strict=True)
    return model.eval().requires_grad_(False)


_LPIPS_CACHE: dict[tuple[str, str], nn.Module] = {}


def lpips_distance(pred: Tensor, gt: Tensor, net: str = "vgg") -> Tensor:
    """LPIPS per image (v0.1, inputs in [0, 1] normalised to [-1, 1], spatial mean, no resize),
    as the reference evaluation. The network is built once per (net, device) and cached.
    Raises MissingWeightsError when the backbone weights are absent, ValueError for images
    smaller than the backbone accepts (LPIPS_MIN_SIDE: an input error, not a missing asset)."""
    _check_pair(pred, gt)
    if min(pred.shape[-2:]) < LPIPS_MIN_SIDE.get(net, 0):
        raise ValueError(f"LPIPS-{net} is undefined for images smaller than "
                         f"{LPIPS_MIN_SIDE[net]} px (got {tuple(pred.shape[-2:])})")
    key = (net, str(pred.device))
    if key not in _LPIPS_CACHE:
        _LPIPS_CACHE[key] = lpips_network(net).to(pred.device)
    with torch.no_grad():
        return _LPIPS_CACHE[key](pred.float(), gt.float(), normalize=True).reshape(-1)
