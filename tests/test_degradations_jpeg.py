"""JPEG: exact Pillow path, quantisation tables, and the differentiable JPEG's fidelity."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin
from scipy.fft import dctn

from rusir.degradations import DifferentiableJPEG, make, quantization_tables
from conftest import procedural_images
from rusir.degradations.base import cycle_8bit, from_pil, to_pil
from rusir.degradations.jpeg import dct_matrix, pillow_jpeg_roundtrip, surrogate_round

QUALITIES = (18, 15, 12, 9, 6)


def images(n: int = 3, size: int = 128) -> torch.Tensor:
    """Procedural photo-like images, 8-bit exact."""
    return cycle_8bit(procedural_images(n, size, seed=99))

# libjpeg's base tables (Annex K), natural row-major order (row = vertical frequency)
LUMA_BASE_ROW0 = [16, 11, 10, 16, 24, 40, 51, 61]
LUMA_BASE_COL0 = [16, 12, 14, 14, 18, 24, 49, 72]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def test_exact_path_equals_pillow_roundtrip():
    x = images(2, 64)
    y = make("deartifacting", "L").degrade_ground_truth(x)
    for i in range(2):
        buf = io.BytesIO()
        to_pil(x[i]).save(buf, format="JPEG", quality=9)
        with Image.open(io.BytesIO(buf.getvalue())) as jpg:
            assert JpegImagePlugin.get_sampling(jpg) == 2  # 4:2:0
            ref = from_pil(jpg.convert("RGB"), x[i])
        assert torch.equal(y[i], ref)
    assert not torch.equal(y, x)


@pytest.mark.parametrize("quality", QUALITIES + (50,))
def test_tables_are_libjpegs_in_natural_order(quality):
    luma, chroma = quantization_tables(quality)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality

    def expect(base):
        return [min(max((b * scale + 50) // 100, 1), 255) for b in base]

    assert luma[0].tolist() == expect(LUMA_BASE_ROW0)
    assert luma[:, 0].tolist() == expect(LUMA_BASE_COL0)
    assert chroma[0, 0] == min(max((17 * scale + 50) // 100, 1), 255)
    t_luma, _ = quantization_tables(quality, authors_exact_tables=True)
    assert torch.equal(t_luma, luma.T)


def test_dct_matches_scipy_orthonormal():
    c = dct_matrix()
    block = torch.rand(8, 8, dtype=torch.float64)
    assert torch.allclose(c @ block @ c.T, torch.from_numpy(dctn(block.numpy(), norm="ortho")))
    assert torch.allclose(c @ c.T, torch.eye(8, dtype=torch.float64))


def test_surrogate_round_forward_exact_and_gradient():
    v = torch.tensor([1.0, 2.5, -0.3, 3.7], requires_grad=True)
    r = surrogate_round(v)
    r.sum().backward()
    assert torch.equal(r.detach(), torch.round(v.detach()))
    frac = v.detach() - torch.round(v.detach())
    assert torch.allclose(v.grad, 0.2 + 2.4 * frac**2)
    assert abs(v.grad[0] - 0.2) < 1e-6 and abs(v.grad[1] - 0.8) < 1e-6


def test_differentiable_jpeg_forward_close_to_pillow(capsys):
    """The approximation's gap to libjpeg must be far smaller than JPEG's own damage."""
    x = images(3, 128)
    rows = []
    for q in QUALITIES:
        real = torch.stack([from_pil(pillow_jpeg_roundtrip(to_pil(i), q), i) for i in x])
        natural = DifferentiableJPEG(q)(x)
        transposed = DifferentiableJPEG(q, authors_exact_tables=True)(x)
        fancy = DifferentiableJPEG(q, fancy_upsampling=True)(x)
        damage, p_nat, p_tr, p_fancy = (psnr(x, real), psnr(natural, real),
                                        psnr(transposed, real), psnr(fancy, real))
        rows.append((q, damage, p_nat, p_tr, p_fancy))
        assert p_nat > damage + 8, (q, damage, p_nat)  # >6x smaller MSE than JPEG itself
        assert p_nat > p_tr, (q, p_nat, p_tr)  # natural orientation matches libjpeg better
        assert p_fancy > p_nat  # libjpeg decodes chroma with the triangle filter
    with capsys.disabled():
        print("\nquality  PSNR(x,jpeg)  PSNR(diff,jpeg): natural  transposed  natural+fancy")
        for q, *v in rows:
            print(f"{q:7d}  {v[0]:12.2f}  {v[1]:24.2f}  {v[2]:10.2f}  {v[3]:13.2f}")


def test_differentiable_jpeg_odd_sizes_and_gradients():
    x = images(1, 128)[:, :, :120, :100].contiguous()
    real = from_pil(pillow_jpeg_roundtrip(to_pil(x[0]), 12), x[0])[None]
    xg = x.clone().requires_grad_(True)
    y = make("deartifacting", "M").degrade_prediction(xg)
    assert y.shape == x.shape and psnr(y.detach(), real) > psnr(x, real) + 6
    y.square().sum().backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0
    assert not any(True for _ in DifferentiableJPEG(12).parameters())  # tables are not learnt


def test_differentiable_jpeg_hard_forward_is_a_projection():
    """With exact rounding, re-encoding the decoded planes changes little (JPEG idempotence)."""
    x = images(1, 64)
    jp = DifferentiableJPEG(12)
    once = jp(x)
    assert psnr(jp(once), once) > psnr(once, x) + 3
    assert np.isfinite(psnr(once, x))


def test_quality_range_is_1_to_100():
    for q in (1, 100):
        assert all(t.shape == (8, 8) for t in quantization_tables(q))
    for q in (0, 101):
        with pytest.raises(ValueError, match="1..100"):
            quantization_tables(q)
