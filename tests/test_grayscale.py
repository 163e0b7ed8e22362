"""Grayscale as a degradation: BT.601 weights, Pillow's conversion as the truth, composition, stop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import mse as mse_loss, procedural_images, small_generator
from rusir import degradations
from rusir.degradations import (BT601, COMPOSITIONS, Composition, Grayscale, is_grayscale, make,
                                to_grayscale, with_grayscale)
from rusir.degradations.base import cycle_8bit
from rusir.inversion.discrepancy import noise_floor
from rusir.inversion.restore import restore


def eight_bit(b=2, side=32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, side, side), generator=g).float() / 255


def test_weights_are_bt601_and_known_answers():
    assert BT601 == (0.299, 0.587, 0.114) and sum(BT601) == pytest.approx(1)
    x = torch.zeros(3, 3, 1, 1)
    for c in range(3):
        x[c, c] = 1                                   # pure red, green, blue
    y = to_grayscale(x)
    assert y.shape == (3, 3, 1, 1)
    assert y[:, 0, 0, 0].tolist() == pytest.approx(list(BT601))
    truth = Grayscale().degrade_ground_truth(x)       # Pillow rounds 76.245, 149.685, 29.07
    assert (truth[:, 0, 0, 0] * 255).round().tolist() == [76, 150, 29]


def test_truth_is_pillows_convert_L_replicated_to_three_channels():
    x = eight_bit()
    y = Grayscale().degrade_ground_truth(x)
    assert y.shape == x.shape and torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    for img, out in zip(x, y):
        rgb = Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy(), "RGB")
        expected = np.asarray(rgb.convert("L"), dtype=np.float32) / 255
        assert np.array_equal(out[0].numpy(), expected)


def test_approximation_is_the_truth_up_to_half_a_level_and_its_gradient_the_weights():
    x = eight_bit().requires_grad_(True)
    g = Grayscale()
    approx = g.degrade_prediction(x)
    assert (approx - g.degrade_ground_truth(x)).abs().max() <= 0.5 / 255 + 1e-6
    approx[:, 0].sum().backward()                     # one output channel: d/dx = the weights
    assert x.grad[0, :, 0, 0].tolist() == pytest.approx(list(BT601))


def test_deterministic_redraw_equals_the_truth_and_the_floor_is_rounding_only():
    x = eight_bit()
    g = Grayscale(seed=5)
    truth = g.degrade_ground_truth(x)
    assert torch.equal(g.redraw(x, draw=3), truth)
    assert torch.equal(Grayscale(seed=99).degrade_ground_truth(x), truth)   # no seed involved
    mse = lambda a, b, mask=None: ((a - b) ** 2).flatten(1).mean(1)        # noqa: E731
    floor = noise_floor(mse, g, x, g.degrade_prediction(x), None, draw=0)
    assert floor.shape == (2,) and float(floor.max()) < (0.5 / 255) ** 2


def test_composes_last_and_equals_the_manual_chain():
    assert "G" not in "".join(COMPOSITIONS) and len(COMPOSITIONS) == 11   # the paper's eleven
    x = procedural_images(2, 64)
    ug = make("UG", "M", seed=4)
    assert isinstance(ug, Composition) and [s.name for s in ug.stages] == ["upsampling", "grayscale"]
    up = make("upsampling", "M", seed=4)
    manual = Grayscale().degrade_ground_truth(cycle_8bit(up.degrade_ground_truth(x)))
    assert torch.equal(ug.degrade_ground_truth(x), manual)
    assert ug.degrade_ground_truth(x).shape == (2, 3, 8, 8)
    assert torch.allclose(ug.degrade_prediction(x), to_grayscale(up.degrade_prediction(x)))
    for name in ("UNAPG", "NG", "PG", "G"):
        y = make(name, "M", seed=0).degrade_ground_truth(x)
        assert torch.equal(y[:, 0], y[:, 2]), name    # the target is grey whatever came before
    with pytest.raises(ValueError, match="unknown degradation"):
        make("GU", "M")                               # G comes last


def test_task_names_and_with_grayscale():
    assert degradations.canonical_task("g") == "grayscale"
    assert degradations.canonical_task("ug") == "UG"
    assert degradations.task_names("UNG") == {"upsampling", "denoising", "grayscale"}
    assert [with_grayscale(t) for t in ("upsampling", "UNAP", "identity", "UG", "grayscale")] == [
        "UG", "UNAPG", "grayscale", "UG", "grayscale"]
    with pytest.raises(ValueError, match="does not compose with grayscale"):
        with_grayscale("blur")


def test_is_grayscale():
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert not is_grayscale(Image.fromarray(rgb, "RGB"))
    grey = Image.fromarray(rgb, "RGB").convert("L")
    assert is_grayscale(grey) and is_grayscale(grey.convert("RGB"))
    assert is_grayscale(grey.convert("LA"))


def test_restore_with_grayscale_fits_the_luminance_and_the_stop_runs():
    torch.set_num_threads(1)
    G = small_generator(resolution=16)
    truth = (G.synthesis(G.mapping(torch.randn(1, 16), None)[:, 0]) + 1) / 2
    deg = make("G", "M", seed=0)
    target = deg.degrade_ground_truth(truth.clamp(0, 1))
    out = restore(G, target, deg, loss=mse_loss, steps=(3, 3, 3), discrepancy=1.0, progress=False)
    assert out.images.shape == (1, 3, 16, 16) and torch.isfinite(out.images).all()
