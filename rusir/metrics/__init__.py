"""Image-quality metrics, the paper's protocol (spec section 6), in two kinds:

* per image (`rusir.metrics.per_image`): accuracy = metric(prediction, ground truth) and
  fidelity = metric(TRUE degradation of the prediction, target) as PSNR, SSIM, MS-SSIM, LPIPS;
  each returns Tensor[B].
* over sets (`rusir.metrics.realism`): realism of the predictions against reference images as
  FID, KID, patch-FID (the paper's) and IS, with the FID Inception network; one number per set.

`compute_metrics` computes any of them by name (`PER_IMAGE_METRICS`, `SET_METRICS`, the one list
of set-metric names) for the benchmark. Images are float tensors [B, 3, H, W] nominally in
[0, 1]. A metric whose weights are missing raises `MissingWeightsError` / `MetricUnavailable`
(or is reported unavailable by `compute_metrics`): never computed with other weights.
"""
from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor

from ..model.weights import MissingWeightsError
from .per_image import (LPIPS_BACKBONES, LPIPS_MIN_SIDE, MS_SSIM_WEIGHTS, PSNR_CAP_DB,
                        lpips_distance, lpips_network, ms_ssim, psnr, ssim)
from .realism import (FID_INCEPTION_SHA1, InceptionFeatures, MetricUnavailable, default_crop_size,
                      feature_statistics, fid, frechet_distance, inception_features,
                      inception_score, inception_score_from_logits, kid, patch_fid, random_crops)

__all__ = [
    "PSNR_CAP_DB", "MS_SSIM_WEIGHTS", "LPIPS_BACKBONES", "LPIPS_MIN_SIDE", "MetricUnavailable",
    "psnr", "ssim", "ms_ssim", "lpips_network", "lpips_distance",
    "FID_INCEPTION_SHA1", "InceptionFeatures", "inception_features", "feature_statistics",
    "frechet_distance", "fid", "kid", "random_crops", "default_crop_size", "patch_fid",
    "inception_score", "inception_score_from_logits",
    "compute_metrics", "PER_IMAGE_METRICS", "SET_METRICS",
]


PER_IMAGE_METRICS = {
    "psnr": psnr,
    "ssim": ssim,
    "ms_ssim": ms_ssim,
    "lpips": lambda a, b: lpips_distance(a, b, "vgg"),
    "lpips_alex": lambda a, b: lpips_distance(a, b, "alex"),
}
# The set (realism) metrics, in the paper's table order: the one list of their names (use it,
# don't repeat it: the command line's `rusir report --set-metrics` default comes from here).
SET_METRICS = ("patch_fid", "fid", "kid", "is")
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
