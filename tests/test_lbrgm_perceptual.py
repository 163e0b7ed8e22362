"""L-BRGM's own perceptual term (issue 29): its code's VGG16 feature distance, checked on known
answers with small networks standing in for NVIDIA's vgg16.pt, and the offline fallback."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import mse, small_generator
from rusir import degradations
from rusir.baselines import lbrgm_perceptual
from rusir.baselines.lbrgm import _vgg16_term, best_of_n, lbrgm
from rusir.baselines.lbrgm_perceptual import LbrgmPerceptual
from rusir.inversion.loop import render, render_degraded
from rusir.inversion.method import prepare
from rusir.model.weights import MissingWeightsError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_identity_features_give_the_pixel_mse_on_the_0_255_scale():
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    value = LbrgmPerceptual(lambda t: t)(x, y)                 # 64 -> 256 area: 4x4 copies
    expected = 2e7 * 255 ** 2 * (x - y).square().flatten(1).mean(1)
    assert value.shape == (2,) and torch.allclose(value, expected, rtol=1e-5)


def test_a_linear_network_on_flat_colours_gives_the_hand_computed_value():
    conv = torch.nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1., 0, 0], [0, 2, 0], [1, 1, 1]])[:, :, None, None])
    x = torch.tensor([0.5, 0.2, 0.1])[None, :, None, None].expand(1, 3, 20, 20)
    y = torch.tensor([0.1, 0.2, 0.3])[None, :, None, None].expand(1, 3, 20, 20)
    # 255 (x - y) = (102, 0, -51) -> features (102, 0, 51): mean square 4335
    assert LbrgmPerceptual(conv)(x, y).item() == pytest.approx(2e7 * 4335, rel=1e-5)
    assert LbrgmPerceptual(conv, weight=1.0)(x, x).item() == 0


def random_phi():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 4, stride=4), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 2, 4, stride=4))
    return net.requires_grad_(False)


def test_lbrgm_scores_its_start_with_l_brgm_s_data_term():
    G, phi = small_generator(), random_phi()
    deg = degradations.make("upsampling", "S", seed=1)
    with torch.no_grad():
        y = deg.degrade_ground_truth(render(G, G.mapping.w_avg[None].repeat(1, G.num_ws, 1) + 0.3))
    problem = prepare(G, y, deg, None, need_loss=False)
    term = _vgg16_term(phi, problem.target)
    _, w, value = best_of_n(G, problem, 1, 0.8, 5, pixel_weight=13.005, perceptual_weight=2e7,
                            perceptual=term)
    with torch.no_grad():
        pred = render_degraded(G, w, deg).degraded
        area = lambda t: F.interpolate(t * 255, size=(256, 256), mode="area")   # noqa: E731
        expected = 13.005 * (pred - y).square().mean() + \
            2e7 * (phi(area(pred)) - phi(area(y))).square().mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-4)


def test_lbrgm_uses_the_vgg16_term_when_its_weights_load(monkeypatch):
    monkeypatch.setattr(lbrgm_perceptual, "load_features", lambda device=None: random_phi())
    G = small_generator()
    y = torch.rand(1, 3, 16, 16)
    result = lbrgm(G, y, steps=2, init_candidates=2, progress=False)
    assert result.config["perceptual"] == "vgg16" and result.config["perceptual_weight"] == 2e7
    assert "perceptual_fallback" not in result.info
    explicit = lbrgm(G, y, loss=mse, steps=2, init_candidates=2, perceptual="loss", progress=False)
    assert (explicit.config["perceptual"], explicit.config["perceptual_weight"]) == ("loss", 1.0)
    with pytest.raises(ValueError, match="perceptual must be one of"):
        lbrgm(G, y, steps=1, init_candidates=1, perceptual="alex", progress=False)


def test_offline_without_weights_the_error_names_the_file_and_lbrgm_falls_back(monkeypatch, tmp_path):
    entry = lbrgm_perceptual.VGG16_LPIPS
    import dataclasses
    monkeypatch.setattr(lbrgm_perceptual, "VGG16_LPIPS", dataclasses.replace(entry, cache_dir=str(tmp_path)))
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    monkeypatch.setattr(lbrgm_perceptual, "_LOADED", {})
    with pytest.raises(MissingWeightsError) as err:
        lbrgm_perceptual.load_features()
    text = str(err.value)
    assert "vgg16.pt" in text and entry.url in text and str(tmp_path) in text
    G = small_generator()
    with pytest.warns(UserWarning, match="VGG16 perceptual weights are missing"):
        result = lbrgm(G, torch.rand(1, 3, 16, 16), loss=mse, steps=1, init_candidates=1,
                       progress=False)
    assert (result.config["perceptual"], result.config["perceptual_weight"]) == ("loss", 1.0)
    assert "vgg16.pt" in result.info["perceptual_fallback"]
