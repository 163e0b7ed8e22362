"""rusir.inversion.losses: per-image losses, the paper's pyramid, masks, composites, presets, weights policy."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rusir import metrics
from rusir.inversion import presets
from rusir.model import weights
from conftest import smooth_images
from conftest import noisy as _noisy
from rusir.inversion.losses import (CompositeLoss, ConsistencyLoss, GradientTerm, L1Term, LossConfig,
                                    LPIPSTerm, MultiResolutionLoss, make_term)
from rusir.inversion.presets import build_loss
from rusir.model.weights import MissingWeightsError

WEIGHT_FREE = ["l1", "l2", "grad", "ssim", "ms_ssim"]


def hole_mask(b=3, side=64):
    m = torch.ones(b, 1, side, side)
    m[:, :, side // 4: side // 2, side // 3: 3 * side // 4] = 0
    return m


@pytest.fixture(scope="module")
def lpips_random():
    """LPIPS with lpips' RANDOM AlexNet backbone: exercises plumbing only, not the metric."""
    return LPIPSTerm("alex", _allow_random_backbone_for_tests=True)


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def _term(name, lpips_random):
    return lpips_random if name == "lpips" else make_term(name)


@pytest.mark.parametrize("name", WEIGHT_FREE + ["lpips"])
def test_zero_for_identical_and_grows_with_noise(name, lpips_random):
    y = smooth_images()
    loss = MultiResolutionLoss(_term(name, lpips_random), l1_weight=0.0)
    assert torch.allclose(loss(y, y), torch.zeros(3), atol=1e-5)
    values = [loss(noisy(y, s), y) for s in (0.02, 0.1, 0.3)]
    for v in values:
        assert v.shape == (3,)
    assert bool((values[0] < values[1]).all() and (values[1] < values[2]).all()), values


@pytest.mark.parametrize("name", WEIGHT_FREE + ["lpips"])
def test_gradients_finite(name, lpips_random):
    y = smooth_images(side=32)
    x = noisy(y, 0.1).requires_grad_(True)
    loss = MultiResolutionLoss(_term(name, lpips_random))
    loss(x, y, mask=hole_mask(side=32)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_ms_ssim_gradient_finite_for_anticorrelated_images():
    y = smooth_images(side=32)
    x = (1 - y).requires_grad_(True)  # contrast-structure terms <= 0 at some scales
    (1 - metrics.ms_ssim(x, y)).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_masked_region_does_not_contribute_weight_free():
    y = smooth_images()
    x = noisy(y, 0.1)
    m = hole_mask()
    x2 = torch.where(m.bool(), x, torch.rand_like(x))  # change x only inside the hole
    for name in WEIGHT_FREE:
        loss = MultiResolutionLoss(make_term(name))
        assert torch.allclose(loss(x, y, m), loss(x2, y, m), atol=1e-6), name
        assert not torch.allclose(loss(x, y), loss(x2, y)), name  # without the mask it would
    offline = presets.load_preset("offline").build()
    assert torch.allclose(offline(x, y, m), offline(x2, y, m), atol=1e-6)


def test_masked_lpips_noise_fill(lpips_random):
    y = smooth_images()
    m = hole_mask()
    x = torch.where(m.bool(), y, torch.rand_like(y))  # equal outside the hole
    loss = MultiResolutionLoss(lpips_random)
    assert torch.allclose(loss(x, y, m), torch.zeros(3), atol=1e-5)
    x = noisy(y, 0.1)
    x2 = torch.where(m.bool(), x, torch.rand_like(x))
    loss.reset_noise(7)
    a = loss(x, y, m)
    loss.reset_noise(7)
    assert torch.allclose(a, loss(x2, y, m), atol=1e-6)  # same seed: hole content irrelevant
    assert not torch.allclose(a, loss(x, y, m))  # fresh noise at every call


def test_mask_of_other_size_is_area_resized():
    y = smooth_images()
    x = noisy(y, 0.1)
    m_small = hole_mask(side=16)
    loss = MultiResolutionLoss(L1Term())
    expected = loss(x, y, F.interpolate(m_small, size=64, mode="area"))
    assert torch.allclose(loss(x, y, m_small), expected)


def test_level_structure_matches_hand_computation():
    y = smooth_images()
    x = noisy(y, 0.2)
    l1 = lambda a, b: (a - b).abs().flatten(1).mean(1)
    p = lambda t, k: F.avg_pool2d(t, k)
    loss = MultiResolutionLoss(L1Term(), l1_weight=0.1)
    # 64 px: levels at 64 and 32, then L1 on the 16-px images
    hand = l1(x, y) + l1(p(x, 2), p(y, 2)) + 0.1 * l1(p(x, 4), p(y, 4))
    assert torch.allclose(loss(x, y), hand, atol=1e-6)
    # 128 px: three levels (128, 64, 32), L1 at 16
    y2, x2 = F.interpolate(y, size=128), F.interpolate(x, size=128)
    hand2 = sum(l1(p(x2, k), p(y2, k)) for k in (1, 2, 4)) + 0.1 * l1(p(x2, 8), p(y2, 8))
    assert torch.allclose(loss(x2, y2), hand2, atol=1e-6)
    # 16 px: no level, only L1 at 16
    x3, y3 = p(x, 4), p(y, 4)
    assert torch.allclose(loss(x3, y3), 0.1 * l1(x3, y3), atol=1e-7)
    # max_levels caps the pyramid: 128 px with 2 levels -> L1 at 32
    capped = MultiResolutionLoss(L1Term(), max_levels=2, l1_weight=0.1)
    hand4 = l1(x2, y2) + l1(p(x2, 2), p(y2, 2)) + 0.1 * l1(p(x2, 4), p(y2, 4))
    assert torch.allclose(capped(x2, y2), hand4, atol=1e-6)


def test_composite_equals_weighted_sum_of_parts():
    y = smooth_images()
    x = noisy(y, 0.1)
    m = hole_mask()
    w = {"l1": 1.0, "grad": 0.5, "ssim": 0.2, "ms_ssim": 0.3}
    comp = CompositeLoss(w, l1_weight=0.1)
    parts = sum(v * MultiResolutionLoss(make_term(k), l1_weight=0.0)(x, y, m) for k, v in w.items())
    coarse = MultiResolutionLoss(L1Term(), l1_weight=0.1)(x, y, m) \
        - MultiResolutionLoss(L1Term(), l1_weight=0.0)(x, y, m)
    assert torch.allclose(comp(x, y, m), parts + coarse, atol=1e-5)


def test_per_image_independence():
    y = smooth_images(b=4)
    x = noisy(y, 0.1)
    m = hole_mask(b=4)
    m[1] = 1  # images differ in their masks too
    loss = CompositeLoss({"l1": 1.0, "grad": 0.5, "ms_ssim": 0.5, "l2": 1.0, "ssim": 0.1})
    batch = loss(x, y, m)
    single = torch.cat([loss(x[i:i + 1], y[i:i + 1], m[i:i + 1]) for i in range(4)])
    assert torch.allclose(batch, single, atol=1e-6)


def test_lpips_term_rejects_images_below_backbone_size(lpips_random):
    y = smooth_images(side=24)
    with pytest.raises(ValueError, match="31 px"):
        lpips_random(y, y)


def test_lpips_term_accepts_images_of_exactly_the_backbone_minimum(lpips_random):
    y = smooth_images(side=31)  # AlexNet's smallest side
    assert lpips_random(y, y).shape == (3,)


def test_gradient_term_measures_the_per_pixel_slope():
    """Sobel / 8 of a ramp rising 0.01 per pixel: 0.01 along it, 0 across it (interior pixels)."""
    ramp = (0.01 * torch.arange(16.0)).expand(1, 3, 16, 16)  # rises along the width
    maps = GradientTerm()._grad(ramp)                          # [1, 3 * 2, 16, 16]
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    horizontal, vertical = maps[:, 0::2][inner], maps[:, 1::2][inner]
    assert torch.allclose(horizontal, torch.full_like(horizontal, 0.01), atol=1e-6)
    assert torch.allclose(vertical, torch.zeros_like(vertical), atol=1e-6)
    turned = GradientTerm()._grad(ramp.transpose(-1, -2))
    assert torch.allclose(turned[:, 1::2][inner], torch.full_like(horizontal, 0.01), atol=1e-6)
    assert torch.allclose(turned[:, 0::2][inner], torch.zeros_like(vertical), atol=1e-6)


def test_frozen_eval_and_dtype_move(lpips_random):
    loss = MultiResolutionLoss(lpips_random)
    loss.train()
    assert not lpips_random.model.training and not any(m.training for m in loss.modules())
    assert not any(p.requires_grad for p in loss.parameters())
    grad = MultiResolutionLoss(GradientTerm()).double()
    y = smooth_images().double()
    assert grad(noisy(y, 0.1).double(), y).dtype == torch.float64


def test_consistency_loss_on_prediction():
    pred = smooth_images()
    blur = lambda t: F.avg_pool2d(t, 2)
    c = ConsistencyLoss(blur, sigma=0.01)
    assert c.needs_prediction
    with pytest.raises(ValueError, match="prediction"):
        c(blur(pred), None)
    v = c(None, None, prediction=pred)
    assert v.shape == (3,) and (v > 0).all() and (v < 0.01).all()  # blur averages the noise down
    ident = ConsistencyLoss(lambda t: t, sigma=0.01)(pred, None, prediction=pred)
    assert torch.allclose(ident, torch.full((3,), 0.01 * (2 / torch.pi) ** 0.5), rtol=0.05)

    class Deg:
        def degrade_prediction(self, t):
            return blur(t)

    comp = build_loss({"l1": 1.0, "consistency": 0.3}, degradation_fn=Deg())
    assert comp.needs_prediction
    x, y = blur(pred), blur(noisy(pred, 0.1))
    plain = build_loss({"l1": 1.0})
    expected = plain(x, y) + 0.3 * ConsistencyLoss(Deg(), seed=1)(x, y, prediction=pred)
    assert torch.allclose(comp(x, y, prediction=pred), expected, atol=1e-6)
    with pytest.raises(ValueError, match="degradation"):
        build_loss({"l1": 1.0, "consistency": 0.3})


def test_build_loss_specs_and_errors():
    y = smooth_images()
    x = noisy(y, 0.1)
    by_name = build_loss("l1")
    assert torch.allclose(by_name(x, y), MultiResolutionLoss(L1Term())(x, y))
    flat = build_loss({"l1": 1.0, "grad": 2.0})
    full = build_loss({"terms": {"l1": 1.0, "grad": 2.0}, "l1_weight": 0.1})
    assert torch.allclose(flat(x, y), full(x, y))
    single = build_loss({"terms": {"l1": 1.0}, "multiresolution": False, "l1_weight": 0.0})
    assert torch.allclose(single(x, y), (x - y).abs().flatten(1).mean(1))
    with pytest.raises(ValueError) as info:
        build_loss("lpipz")
    assert "lpips_vgg" in str(info.value) and "ms_ssim" in str(info.value)
    with pytest.raises(ValueError, match="valid terms"):
        build_loss({"l1": 1.0, "sharpness": 1.0})
    with pytest.raises(ValueError, match="unknown loss config key"):
        build_loss({"terms": {"l1": 1.0}, "l1_wieght": 0.2})


def test_targets_below_the_pyramid_get_only_the_coarse_l1_or_a_clear_error():
    y = smooth_images()[..., :8, :8]  # an 8-px target (e.g. upsampling at level M)
    x = noisy(y, 0.1)
    coarse_only = build_loss({"terms": {"l2": 1.0}, "l1_weight": 0.1})
    assert torch.allclose(coarse_only(x, y), 0.1 * (x - y).abs().flatten(1).mean(1))
    nothing = build_loss({"terms": {"l2": 1.0}, "l1_weight": 0.0})
    with pytest.raises(ValueError, match=r"compares nothing on \(8, 8\) px.*min_side=16"):
        nothing(x, y)


def test_presets_are_data(tmp_path):
    assert {"paper", "offline"} <= set(presets.list_presets())
    paper = presets.load_preset("paper")
    assert paper.terms == {"lpips_vgg": 1.0} and paper.l1_weight == 0.1
    assert (paper.min_side, paper.max_levels, paper.multiresolution) == (16, 6, True)
    assert paper.weight_files() == ["vgg16"]
    offline = presets.load_preset("offline")
    assert offline.weight_files() == [] and offline.name == "offline"
    y = smooth_images()
    assert torch.allclose(build_loss("offline")(y, y), torch.zeros(3), atol=1e-6)
    custom = tmp_path / "mine.yaml"
    custom.write_text("loss:\n  terms: {l1: 2.0}\n  l1_weight: 0.0\n")
    cfg = presets.load_preset(custom)
    assert isinstance(cfg, LossConfig) and cfg.terms == {"l1": 2.0} and cfg.name == "mine"
    x = noisy(y, 0.1)
    assert torch.allclose(build_loss(str(custom))(x, y), 2 * MultiResolutionLoss(L1Term(), l1_weight=0)(x, y))
    with pytest.raises(ValueError, match="shipped presets"):
        presets.load_preset("nonexistent")


@pytest.mark.parametrize("yaml_text,pattern", [
    ("loss:\n  terms: {l2: .nan}\n", r"loss weight 'l2' must be a finite number >= 0, got nan"),
    ("loss:\n  terms: {l2: .inf}\n", r"loss weight 'l2' must be .* got inf"),
    ("loss:\n  terms: {l2: -1}\n", r"loss weight 'l2' must be .* got -1"),
    ("loss:\n  terms: {l2: '1'}\n", r"loss weight 'l2' must be .* got '1'"),
    ("loss:\n  terms: {l2: 1}\n  l1_weight: .nan\n", r"loss weight 'l1_weight' must be .* got nan"),
    ("loss:\n  terms: {l2: 0}\n  l1_weight: 0\n", r"needs a term with a weight > 0 or l1_weight > 0"),
    ("loss:\n  terms: {l2: 1}\n  min_side: .nan\n", r"loss min_side must be a whole number >= 1, got nan"),
])
def test_loss_weights_are_finite_and_non_negative_when_parsed(tmp_path, yaml_text, pattern):
    """A `.nan` weight made every loss NaN; NGD moved nothing and the start image came back."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError, match=pattern) as err:
        presets.load_preset(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_loss_weights_are_checked_however_the_loss_is_built():
    for build in (lambda: build_loss({"l2": float("nan")}), lambda: LossConfig({"l2": 1.0}, l1_weight=-0.1),
                  lambda: CompositeLoss({"l1": float("inf")}), lambda: CompositeLoss({"l1": 1.0}, l1_weight=float("nan"))):
        with pytest.raises(ValueError, match=r"must be a finite number >= 0"):
            build()
    assert CompositeLoss({"l1": 0.5}, l1_weight=0).weights == {"l1": 0.5}


def test_lpips_without_weights_raises_before_lpips_builds(offline_home, monkeypatch):
    import lpips

    def boom(*a, **k):
        raise AssertionError("lpips.LPIPS must not be constructed when the backbone is missing")

    monkeypatch.setattr(lpips, "LPIPS", boom)
    for make in (lambda: LPIPSTerm("vgg"), lambda: build_loss("paper"), lambda: make_term("lpips_alex")):
        with pytest.raises(MissingWeightsError) as info:
            make()
        msg = str(info.value)
        assert "download.pytorch.org/models/" in msg and str(offline_home) in msg


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchvision's `pretrained=` inside lpips
def test_lpips_backbone_loaded_from_fetched_file(tmp_path, monkeypatch):
    """The registry file is what the backbone gets (torchvision `features.*` -> lpips slices)."""
    import lpips

    ref = lpips.LPIPS(net="squeeze", pnet_rand=True, verbose=False).net.state_dict()
    state = {k.split(".", 1)[1]: torch.randn_like(v) for k, v in ref.items()}
    state = {f"features.{k}": v for k, v in state.items()}
    state["classifier.1.weight"] = torch.zeros(1)  # extra keys are ignored
    path = tmp_path / "squeezenet.pth"
    torch.save(state, path)
    calls = []
    monkeypatch.setattr(weights, "fetch", lambda name: calls.append(name) or path)
    term = LPIPSTerm("squeeze")
    assert calls == ["squeezenet1_1"]
    loaded = term.model.net.state_dict()
    for k, v in loaded.items():
        assert torch.equal(v, state["features." + k.split(".", 1)[1]]), k


def noisy(y, sigma, seed=1):
    return _noisy(y, sigma, seed, clamp=False)
