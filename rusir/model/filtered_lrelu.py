"""StyleGAN3's filtered leaky ReLU and its low-pass filters, in plain PyTorch (no compiled op).

The nonlinearity of an alias-free layer is applied at a higher sampling rate than the feature
map: up-sample (zero insertion + low-pass), leaky ReLU, low-pass again and decimate. Each step is
one PyTorch built-in (pad, depthwise conv2d, slicing), so the same code runs on CPU and GPU and
is differentiable. Semantics and the filter design: ../shared/spec/stylegan3-format.md 3.3-3.4
and 4.3 step 4.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def kaiser_beta(taps: int, width: float, fs: float) -> float:
    """Kaiser window shape for a transition `width` (Hz at rate fs) and `taps` taps."""
    atten = 2.285 * (taps - 1) * math.pi * (width / (fs / 2)) + 7.95  # dB
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def lowpass_filter(taps: int, cutoff: float, width: float, fs: float,
                   radial: bool = False) -> Optional[Tensor]:
    """Kaiser-windowed low-pass: [taps] (separable sinc) or [taps, taps] (radial jinc); None for
    one tap (no resampling). Computed in float64, stored as float32, DC gain 1."""
    if taps == 1:
        return None
    window = np.kaiser(taps, kaiser_beta(taps, width, fs))  # [taps], symmetric
    if not radial:
        c = cutoff / (fs / 2)
        m = np.arange(taps) - (taps - 1) / 2
        h = c * np.sinc(c * m) * window
        return torch.as_tensor(h / h.sum(), dtype=torch.float32, device="cpu")
    x = (np.arange(taps) - (taps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))  # [taps, taps], never 0 (taps is even)
    j1 = torch.special.bessel_j1(torch.as_tensor(2 * math.pi * cutoff * r, device="cpu")).numpy()
    h = j1 / (math.pi * r) * np.outer(window, window)
    return torch.as_tensor(h / h.sum(), dtype=torch.float32, device="cpu")


def _filter(x: Tensor, f: Tensor, gain: float) -> Tensor:
    """'Valid' depthwise filtering of x [N, C, H, W]: a 1-D f [T] along x then y, each pass
    times gain, or a 2-D f [T, T] times gain**2. Filters are symmetric: no flip needed."""
    c = x.shape[1]
    f = f.to(x.dtype)
    if f.dim() == 1:
        x = F.conv2d(x, (f * gain).reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # along x
        return F.conv2d(x, (f * gain).reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)  # along y
    return F.conv2d(x, (f * gain ** 2)[None, None].expand(c, 1, -1, -1), groups=c)


def filtered_lrelu(x: Tensor, bias: Tensor, up_filter: Optional[Tensor], down_filter: Optional[Tensor],
                   up: int, down: int, padding: Sequence[int], gain: float, slope: float,
                   clamp: Optional[float]) -> Tensor:
    """x [N, C, H, W] -> [N, C, H', W']: bias, up-sample by `up` (zero insertion, pad/crop by
    `padding` = [x_before, x_after, y_before, y_after], up filter with gain up**2), leaky ReLU
    (slope) times gain, clamp to +-clamp, down filter, keep every `down`-th sample from 0."""
    n, c, h, w = x.shape
    x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    if up > 1:  # [N, C, H, W] -> [N, C, H*up, W*up], samples at multiples of up
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, list(padding))  # negative values crop
    if up_filter is not None:
        x = _filter(x, up_filter, float(up))
    x = F.leaky_relu(x, slope) * gain if slope != 1 else x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    if down_filter is not None:
        x = _filter(x, down_filter, 1.0)
    return x[:, :, ::down, ::down] if down > 1 else x
