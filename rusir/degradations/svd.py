"""The singular value decompositions H = U diag(s) V^T of the linear degradations, for DDRM.

DDRM (rusir.baselines.ddrm) works in the spectral coordinates of the degradation operator: an
image x [B, 3, R, R] is `vt(x)` [B, D] (D = 3 R^2, V orthogonal), a target y is `ut(y)` [B, D]
(zero where the singular value is), and `singulars` [1 or B, D] holds s >= 0 (0 on H's null
space). Then H x = u(s * vt(x)), checked by `forward`. Two structures cover the paper's settings:

* `Diagonal(s)` -- H = diag(s) per pixel and channel (U = V = I): identity (denoising, s = 1) and
  masking (inpainting, uncropping: s = the mask, soft edges included; 0 = unknown pixel);
* `BlockAverage(f)` -- average pooling over f x f blocks per channel. Each block's row
  (1/f^2) 1^T has one singular value 1/f, right vector 1/f (the block's normalised ones), and
  a null space spanned by the other columns of an orthogonal f^2 x f^2 matrix whose first column
  is that vector (`block_basis`, from a QR factorisation); U is the identity on the low-res pixels.

`linear_operator(degradation, shape)` picks the one a degradation is (or, for the variants whose
true operator is unknown or nonlinear, the linear approximation the paper gave DDRM).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Diagonal", "BlockAverage", "block_basis", "linear_operator", "LINEAR_APPROXIMATION"]


class Diagonal:
    """H = diag(s): s [1 or B, 3 or 1, R, R] >= 0 (broadcast over channels); U = V = I."""

    def __init__(self, s: Tensor, channels: int = 3) -> None:
        if s.dim() != 4:
            raise ValueError(f"a diagonal operator needs s as [B, C, R, R], got {list(s.shape)}")
        s = s.expand(s.shape[0], channels, s.shape[2], s.shape[3])
        self.singulars = s.reshape(s.shape[0], -1).clamp_min(0)           # [1 or B, D]
        self.shape = (channels, s.shape[2], s.shape[3])

    def vt(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)                                   # [B, D]

    def v(self, z: Tensor) -> Tensor:
        return z.reshape(z.shape[0], *self.shape)                          # [B, 3, R, R]

    def ut(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], -1) * (self.singulars > 0)            # [B, D]

    def u(self, z: Tensor) -> Tensor:
        return z.reshape(z.shape[0], *self.shape)

    def forward(self, x: Tensor) -> Tensor:
        return self.u(self.singulars * self.vt(x))


def block_basis(f: int, device=None, dtype=torch.float32) -> Tensor:
    """An orthogonal [f^2, f^2] matrix whose first column is ones / f (the averaging direction)."""
    a = torch.eye(f * f, dtype=torch.float64)
    a[:, 0] = 1.0
    q, _ = torch.linalg.qr(a)
    q = q * torch.sign(q[0, 0])                                            # first column +ones/f
    return q.to(device=device, dtype=dtype)


class BlockAverage:
    """H = average pooling by f per channel, [B, 3, R, R] -> [B, 3, R/f, R/f]."""

    def __init__(self, factor: int, resolution: int, channels: int = 3, device=None,
                 dtype=torch.float32) -> None:
        f = int(factor)
        if f < 1 or resolution % f:
            raise ValueError(f"average pooling by {f} needs a resolution divisible by it, got {resolution}")
        self.f, self.shape, self.low = f, (channels, resolution, resolution), resolution // f
        self.q = block_basis(f, device, dtype)                              # [f^2, f^2]
        blocks = torch.zeros(f * f, device=device, dtype=dtype)
        blocks[0] = 1.0 / f
        self.singulars = blocks.repeat(channels * self.low * self.low)[None]  # [1, D]

    def vt(self, x: Tensor) -> Tensor:
        b, c, f, n = x.shape[0], self.shape[0], self.f, self.low
        blocks = x.reshape(b, c, n, f, n, f).permute(0, 1, 2, 4, 3, 5).reshape(b, c, n, n, f * f)
        return (blocks @ self.q).reshape(b, -1)                             # [B, D]

    def v(self, z: Tensor) -> Tensor:
        b, c, f, n = z.shape[0], self.shape[0], self.f, self.low
        blocks = z.reshape(b, c, n, n, f * f) @ self.q.T                    # [B, 3, n, n, f^2]
        return blocks.reshape(b, c, n, n, f, f).permute(0, 1, 2, 4, 3, 5).reshape(b, *self.shape)

    def ut(self, y: Tensor) -> Tensor:
        b, c, n = y.shape[0], self.shape[0], self.low
        out = torch.zeros(b, c, n, n, self.f * self.f, device=y.device, dtype=y.dtype)
        out[..., 0] = y.reshape(b, c, n, n)
        return out.reshape(b, -1)                                           # [B, D]

    def u(self, z: Tensor) -> Tensor:
        b, c, n = z.shape[0], self.shape[0], self.low
        return z.reshape(b, c, n, n, self.f * self.f)[..., 0]               # [B, 3, n, n]

    def forward(self, x: Tensor) -> Tensor:
        return self.u(self.singulars * self.vt(x))


# What DDRM is given where the true operator is not linear or not known (the paper's Table 3
# protocol: DDRM assumes its linear model; the mismatch is what the "unknown" rows measure).
LINEAR_APPROXIMATION = {
    "avgpool_upsampling": "average pooling (exact)",
    "nearest_upsampling": "average pooling (the true nearest-neighbour subsampling is unknown to it)",
    "upsampling": "average pooling (approximates the true antialiased resize)",
    "gaussian_noise": "identity with sigma (exact)",
    "clamped_gaussian_noise": "identity with sigma (the clamp to [0, 1] and the 8-bit rounding ignored)",
    "inpainting": "masking with the known (soft-edged) mask (exact)",
    "uncropping": "masking with the kept region (exact)",
    "identity": "identity (exact; sigma = 8-bit rounding)",
    "denoising": "identity with sigma = the Poisson noise's std at mid-grey, sqrt(0.5 / photons) "
                 "(the dead pixels and the clamp ignored)",
}


def linear_operator(degradation, resolution: int, batch: int, device=None, dtype=torch.float32):
    """The SVD operator DDRM uses for `degradation` at `resolution` (LINEAR_APPROXIMATION says
    which); ValueError naming the supported tasks for any other. Masks are the degradation's
    current ones (`degradation.mask`, set when it degraded the batch)."""
    name = getattr(degradation, "name", type(degradation).__name__)
    if name in ("avgpool_upsampling", "nearest_upsampling", "upsampling"):
        return BlockAverage(degradation.factor, resolution, device=device, dtype=dtype)
    if name in ("gaussian_noise", "clamped_gaussian_noise", "identity", "denoising"):
        return Diagonal(torch.ones(1, 1, resolution, resolution, device=device, dtype=dtype))
    if name in ("inpainting", "uncropping"):
        mask = degradation.mask
        if mask is None:
            raise ValueError(f"the {name} mask is built when the degradation first degrades an "
                             "image; degrade the ground truth with it first")
        if mask.shape[-1] != resolution or mask.shape[0] not in (1, batch):
            raise ValueError(f"the {name} mask is {list(mask.shape)}, not [{batch}, 1, {resolution}, "
                             f"{resolution}]")
        return Diagonal(mask.to(device, dtype))
    raise ValueError(f"DDRM needs a linear degradation model; {name!r} has none here. Supported: "
                     f"{sorted(LINEAR_APPROXIMATION)}")
