"""JPEG through libjpeg (Pillow) and a differentiable JPEG written in PyTorch (spec 5.5).

The differentiable JPEG mirrors a baseline JPEG codec on x * 255:
RGB -> YCbCr (JFIF, full range, +128 chroma) -> 4:2:0 chroma (2x2 average) -> 8x8 blocks
-> -128 -> DCT-II (orthonormal, alpha(u) alpha(v) / 4) -> / Q -> round -> * Q -> inverse DCT
-> +128 -> chroma upsampled (2x2 replication, as the authors; libjpeg's "fancy" triangle
filter optionally) -> RGB -> / 255, no output clamp and no 8-bit rounding (as the authors).

Rounding keeps its exact forward value; its backward is the derivative of
lerp(v, round(v) + (v - round(v))^3, k), i.e. (1 - k) + 3 k (v - round(v))^2 -- a mix of the
straight-through gradient and the cubic surrogate (k = 0.8: 0.2 at integers, 0.8 at halves).

Quantisation tables are read from a JPEG that Pillow writes at the same quality, so they are
exactly libjpeg's. Pillow >= 8.3 returns them in natural row-major order: row = vertical
frequency, matching our DCT's first axis. The authors' code transposes them (a quirk inherited
from upstream DiffJPEG, ~2.5x larger error vs real JPEG, spec 5.5/9.6); ``authors_exact_tables``
reproduces it.

Sizes that are not multiples of 16 are padded by edge replication (what libjpeg does to fill
partial MCUs) and cropped back.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, JpegImagePlugin

# JFIF full-range colour transform. rows: Y, Cb, Cr
_RGB2YCC = torch.tensor([[0.299, 0.587, 0.114],
                         [-0.168735892, -0.331264108, 0.5],
                         [0.5, -0.418687589, -0.081312411]], dtype=torch.float64)
_YCC2RGB = torch.linalg.inv(_RGB2YCC)


def pillow_jpeg_bytes(im: Image.Image, quality: int) -> bytes:
    """Encode with Pillow's defaults (baseline, 4:2:0 chroma subsampling) at ``quality``."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def pillow_jpeg_roundtrip(im: Image.Image, quality: int) -> Image.Image:
    """Pillow JPEG encode + decode (libjpeg, default fancy upsampling) of an RGB image."""
    with Image.open(io.BytesIO(pillow_jpeg_bytes(im, quality))) as jpg:
        # The authors assert 4:2:0 (Pillow sampling value 2); fail loudly if Pillow changes.
        if JpegImagePlugin.get_sampling(jpg) != 2:
            raise RuntimeError("Pillow's default JPEG chroma subsampling is no longer 4:2:0")
        return jpg.convert("RGB")


@lru_cache(maxsize=None)
def _tables_numpy(quality: int) -> tuple[np.ndarray, np.ndarray]:
    im = Image.new("RGB", (16, 16))  # tables do not depend on content
    with Image.open(io.BytesIO(pillow_jpeg_bytes(im, quality))) as jpg:
        q = jpg.quantization
    luma = np.array(q[0], dtype=np.float64).reshape(8, 8)
    chroma = np.array(q[1], dtype=np.float64).reshape(8, 8)
    return luma, chroma


def quantization_tables(quality: int, authors_exact_tables: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(luma, chroma) tables [8, 8] read from a Pillow JPEG at ``quality``.

    Natural orientation: entry [u, v] divides DCT coefficient (vertical u, horizontal v).
    ``authors_exact_tables=True`` transposes them as the authors' code does.
    """
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    luma, chroma = (torch.from_numpy(t.copy()) for t in _tables_numpy(int(quality)))
    if authors_exact_tables:
        luma, chroma = luma.T.contiguous(), chroma.T.contiguous()
    return luma, chroma


def dct_matrix(n: int = 8) -> torch.Tensor:
    """Orthonormal DCT-II matrix C [n, n]: coefficients = C @ block @ C.T."""
    c = torch.zeros(n, n, dtype=torch.float64)
    for u in range(n):
        a = math.sqrt(1 / n) if u == 0 else math.sqrt(2 / n)
        for i in range(n):
            c[u, i] = a * math.cos((2 * i + 1) * u * math.pi / (2 * n))
    return c


class _SurrogateRound(torch.autograd.Function):
    """Exact round forward; backward (1 - k) + 3 k r^2 with r = v - round(v)."""

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor, k: float) -> torch.Tensor:
        r = torch.round(v)
        ctx.save_for_backward(v - r)
        ctx.k = k
        return r

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (r,) = ctx.saved_tensors
        return grad * ((1 - ctx.k) + 3 * ctx.k * r * r), None


def surrogate_round(v: torch.Tensor, k: float = 0.8) -> torch.Tensor:
    """round(v) with a blended cubic / straight-through gradient (spec 5.5, k = 0.8)."""
    return _SurrogateRound.apply(v, k)


def _to_blocks(p: torch.Tensor) -> torch.Tensor:
    """[B, H, W] -> [B, H/8, W/8, 8, 8]."""
    b, h, w = p.shape
    return p.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)


def _from_blocks(blk: torch.Tensor) -> torch.Tensor:
    """[B, H/8, W/8, 8, 8] -> [B, H, W]."""
    b, nh, nw, _, _ = blk.shape
    return blk.permute(0, 1, 3, 2, 4).reshape(b, nh * 8, nw * 8)


def _fancy_upsample(c: torch.Tensor) -> torch.Tensor:
    """libjpeg's h2v2 "fancy" (triangle) upsampling of [B, h, w] -> [B, 2h, 2w]."""
    def up(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        prev = torch.cat([t.narrow(dim, 0, 1), t.narrow(dim, 0, n - 1)], dim)
        nxt = torch.cat([t.narrow(dim, 1, n - 1), t.narrow(dim, n - 1, 1)], dim)
        even, odd = 0.75 * t + 0.25 * prev, 0.75 * t + 0.25 * nxt
        return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)
    return up(up(c, 1), 2)


class DifferentiableJPEG(torch.nn.Module):
    """Differentiable approximation of Pillow's JPEG at ``quality`` (4:2:0, baseline tables).

    Images [B, 3, H, W] in [0, 1] -> same shape; no parameters (tables are buffers).
    """

    def __init__(self, quality: int, authors_exact_tables: bool = False, round_k: float = 0.8,
                 fancy_upsampling: bool = False, clamp_output: bool = False) -> None:
        super().__init__()
        self.quality = int(quality)
        self.authors_exact_tables = authors_exact_tables
        self.round_k = round_k
        self.fancy_upsampling = fancy_upsampling
        self.clamp_output = clamp_output
        luma, chroma = quantization_tables(self.quality, authors_exact_tables)
        self.register_buffer("luma_table", luma.float(), persistent=False)
        self.register_buffer("chroma_table", chroma.float(), persistent=False)
        self.register_buffer("dct", dct_matrix().float(), persistent=False)
        self.register_buffer("rgb2ycc", _RGB2YCC.float(), persistent=False)
        self.register_buffer("ycc2rgb", _YCC2RGB.float(), persistent=False)

    def _codec(self, p: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Quantise one plane [B, H, W] (multiples of 8), values centred on 0."""
        c = self.dct.to(p.dtype)
        blk = _to_blocks(p)
        coef = c @ blk @ c.T  # [B, h, w, 8, 8], axis -2 = vertical frequency
        t = table.to(p.dtype)
        coef = surrogate_round(coef / t, self.round_k) * t
        return _from_blocks(c.T @ coef @ c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ph, pw = -h % 16, -w % 16
        if ph or pw:  # replicate edges like libjpeg fills partial MCUs
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        # Chroma rows of the matrix have no +128, so Cb, Cr come out already centred on 0.
        ycc = torch.einsum("ij,bjhw->bihw", self.rgb2ycc.to(x.dtype), x * 255)  # [B, 3, H, W]
        planes = [self._codec(ycc[:, 0] - 128, self.luma_table) + 128]  # Y, [B, H, W]
        chroma = F.avg_pool2d(ycc[:, 1:], 2)  # [B, 2, H/2, W/2], 4:2:0
        for i in range(2):
            q = self._codec(chroma[:, i], self.chroma_table)
            if self.fancy_upsampling:
                q = _fancy_upsample(q)
            else:
                q = q.repeat_interleave(2, 1).repeat_interleave(2, 2)
            planes.append(q)
        ycc = torch.stack(planes, 1)  # [B, 3, H, W]: Y in [0, 255], chroma centred
        rgb = torch.einsum("ij,bjhw->bihw", self.ycc2rgb.to(x.dtype), ycc) / 255
        if self.clamp_output:
            rgb = rgb.clamp(0, 1)
        return rgb[:, :, :h, :w]
