"""A pure-PyTorch StyleGAN3 generator (configurations T and R), weight-compatible with the
official `G_ema`.

State-dict names, shapes and order equal the official ones (synthesis first, then mapping), so
official weights load with `strict=True`. The maths follows ../shared/spec/stylegan3-format.md
sections 3-4 and runs in float32 on every device (the official fp16 path exists only on CUDA and
is a speed trick); `G.double()` gives a float64 generator. No compiled extension: the filtered
leaky ReLU is rusir.model.filtered_lrelu.

Layout: `ws` [N, 16, w_dim]. Row 0 drives the Fourier-feature input, row l+1 layer L_l; the last
layer (L14) is toRGB. No row is shared, there is no noise and no skip connection. Synthesis also
takes W [N, w_dim] (one code for every row) and W++ [N, 16, F, w_dim] (rusir.model.family): layer
L_l with O filters gives filter o the style of its own code ws[:, l+1, o]. The input layer is not a
modulated conv: its transform (rotation, translation) reads the first code of row 0, as trained.

Every layer's design values (sizes, sampling rates, cutoffs, filter taps, padding) are held in a
frozen `LayerSpec`. `design_layers` computes them from a `StyleGAN3Config` (spec 3.1-3.3); the
pickle loader instead reads them from the file, where they are authoritative.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validation import number, whole
from .family import MappedGenerator, ModulatedLayer, latent_rows
from .filtered_lrelu import filtered_lrelu, lowpass_filter
from .stylegan2 import FullyConnectedLayer  # the same layer (official names; SG3 biases init 0 or 1 at lr 1)

SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class StyleGAN3Config:
    """Constructor options of the official Generator (defaults = class defaults, spec 2.1).
    T: conv_kernel 3, separable filters. R: conv_kernel 1, use_radial_filters, channels x2."""
    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    c_dim: int = 0
    mapping_layers: int = 2
    lr_multiplier: float = 0.01
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2 ** 2.1
    last_stopband_rel: float = 2 ** 0.3
    margin_size: int = 10
    output_scale: float = 0.25
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: Optional[float] = 256

    def __post_init__(self) -> None:
        for name, lo, hi in (("z_dim", 1, 4096), ("w_dim", 1, 4096), ("img_resolution", 16, 4096),
                             ("img_channels", 1, 16), ("c_dim", 0, 4096), ("mapping_layers", 1, 32),
                             ("channel_base", 1, 2 ** 24), ("channel_max", 1, 4096), ("num_layers", 1, 63),
                             ("num_critical", 0, self.num_layers - 1), ("margin_size", 0, 256),
                             ("conv_kernel", 1, 15), ("filter_size", 1, 64), ("lrelu_upsampling", 1, 8)):
            whole(getattr(self, name), f"StyleGAN3Config.{name}", lo, hi, limit=None)
        for name in ("lr_multiplier", "first_cutoff", "first_stopband", "last_stopband_rel", "output_scale"):
            number(getattr(self, name), f"StyleGAN3Config.{name}", 0.0, 1e6, limit=None)
        if self.conv_clamp is not None:
            number(self.conv_clamp, "StyleGAN3Config.conv_clamp", 0.0, 1e9, limit=None)
        if self.img_resolution & (self.img_resolution - 1):
            raise ValueError(f"StyleGAN3Config.img_resolution must be a power of two, "
                             f"got {self.img_resolution}")

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2


@dataclass(frozen=True)
class InputSpec:
    """The Fourier-feature input: channels, size [width, height], sampling rate, bandwidth."""
    channels: int
    size: tuple[int, int]
    sampling_rate: float
    bandwidth: float


@dataclass(frozen=True)
class LayerSpec:
    """One SynthesisLayer's design values (the attributes an official file stores for it)."""
    name: str
    is_torgb: bool
    is_critically_sampled: bool
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    in_sampling_rate: float
    out_sampling_rate: float
    tmp_sampling_rate: float
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    conv_clamp: Optional[float]
    up_factor: int
    up_taps: int
    down_factor: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int] = field(default=(0, 0, 0, 0))  # x_before, x_after, y_before, y_after


def layer_padding(in_size: int, out_size: int, k: int, up: int, down: int, up_taps: int,
                  down_taps: int) -> tuple[int, int]:
    """[before, after] so that the filtered lrelu yields exactly out_size (spec 3.3)."""
    total = (out_size - 1) * down + 1 - (in_size + k - 1) * up + up_taps + down_taps - 2
    before = (total + up) // 2
    return before, total - before


def design_layers(cfg: StyleGAN3Config) -> tuple[InputSpec, tuple[LayerSpec, ...]]:
    """The input and the num_layers + 1 layers, from the configuration formulas (spec 3.1-3.3)."""
    R, n = cfg.img_resolution, cfg.num_layers
    e = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
    cutoffs = cfg.first_cutoff * (R / 2 / cfg.first_cutoff) ** e                                     # f_c
    stopbands = cfg.first_stopband * (R / 2 * cfg.last_stopband_rel / cfg.first_stopband) ** e     # f_t
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, R))))                               # s
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs                                        # f_h
    sizes = rates + cfg.margin_size * 2
    sizes[-2:] = R
    channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels
    inp = InputSpec(int(channels[0]), (int(sizes[0]),) * 2, float(rates[0]), float(cutoffs[0]))
    layers = []
    for i in range(n + 1):
        p = max(i - 1, 0)
        torgb, critical = i == n, i >= n - cfg.num_critical
        k = 1 if torgb else cfg.conv_kernel
        tmp = max(rates[p], rates[i]) * (1 if torgb else cfg.lrelu_upsampling)
        up, down = int(np.rint(tmp / rates[p])), int(np.rint(tmp / rates[i]))
        up_taps = cfg.filter_size * up if up > 1 and not torgb else 1
        down_taps = cfg.filter_size * down if down > 1 and not torgb else 1
        before, after = layer_padding(int(sizes[p]), int(sizes[i]), k, up, down, up_taps, down_taps)
        layers.append(LayerSpec(
            name=f"L{i}_{int(sizes[i])}_{int(channels[i])}", is_torgb=torgb, is_critically_sampled=critical,
            in_channels=int(channels[p]), out_channels=int(channels[i]),
            in_size=(int(sizes[p]),) * 2, out_size=(int(sizes[i]),) * 2,
            in_sampling_rate=float(rates[p]), out_sampling_rate=float(rates[i]), tmp_sampling_rate=float(tmp),
            in_cutoff=float(cutoffs[p]), out_cutoff=float(cutoffs[i]),
            in_half_width=float(half_widths[p]), out_half_width=float(half_widths[i]),
            conv_kernel=k, conv_clamp=cfg.conv_clamp, up_factor=up, up_taps=up_taps, down_factor=down,
            down_taps=down_taps, down_radial=cfg.use_radial_filters and not critical,
            padding=(before, after, before, after)))
    return inp, tuple(layers)


# ---------------------------------------------------------------------------------------------
# Mapping

def _normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z (+ label c) -> ws [N, num_ws, w_dim]; truncation towards the frozen `w_avg`."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 2,
                 lr_multiplier: float = 0.01):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.num_ws, self.num_layers = num_ws, num_layers
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, w_dim)
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], "lrelu", lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Tensor, c: Optional[Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None) -> Tensor:
        """[N, z_dim] -> [N, num_ws, w_dim]. w_avg is never updated here (spec 4.6)."""
        dtype = self.fc0.weight.dtype  # float32 as loaded; float64 after .double()
        x = _normalize_2nd_moment(z.to(dtype))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"this generator is conditional (c_dim={self.c_dim}): pass c")
            x = torch.cat([x, _normalize_2nd_moment(self.embed(c.to(dtype)))], dim=1)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = x.clone()
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
        return x


# ---------------------------------------------------------------------------------------------
# Synthesis

class SynthesisInput(nn.Module):
    """Fourier features at fixed frequencies, rotated/translated by a learned affine of w and by
    the fixed `transform` buffer (user transform), mixed by an unmodulated channel matrix."""

    def __init__(self, w_dim: int, spec: InputSpec):
        super().__init__()
        self.spec, self.channels, self.size = spec, spec.channels, spec.size
        self.sampling_rate, self.bandwidth = spec.sampling_rate, spec.bandwidth
        c = spec.channels
        freqs = torch.randn([c, 2])  # random init only: a file's values replace it
        radii = freqs.square().sum(1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25))
        self.weight = nn.Parameter(torch.randn([c, c]))
        self.affine = FullyConnectedLayer(w_dim, 4)
        self.register_buffer("transform", torch.eye(3))                     # [3, 3]
        self.register_buffer("freqs", freqs * spec.bandwidth)               # [C, 2] cycles/unit (x, y)
        self.register_buffer("phases", torch.rand([c]) - 0.5)               # [C] cycles
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0, 0, 0]))

    def forward(self, w: Tensor) -> Tensor:  # w [N, w_dim] -> [N, C, H, W]
        n = w.shape[0]
        t = self.affine(w)                                                  # [N, 4] = (cos, sin, tx, ty)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        rot = torch.eye(3, dtype=w.dtype, device=w.device).repeat(n, 1, 1)  # [N, 3, 3]
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        shift = torch.eye(3, dtype=w.dtype, device=w.device).repeat(n, 1, 1)
        shift[:, 0, 2], shift[:, 1, 2] = -t[:, 2], -t[:, 3]
        T = rot @ shift @ self.transform.unsqueeze(0)                        # [N, 3, 3]
        freqs = self.freqs.unsqueeze(0) @ T[:, :2, :2]                       # [N, C, 2]
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ T[:, :2, 2:]).squeeze(2)  # [N, C]
        fade = 1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)
        amplitudes = fade.clamp(0, 1)                                        # [N, C]
        width, height = self.size
        xs = (torch.arange(width, dtype=w.dtype, device=w.device) + 0.5 - width / 2) / self.sampling_rate
        ys = (torch.arange(height, dtype=w.dtype, device=w.device) + 0.5 - height / 2) / self.sampling_rate
        arg = (freqs[:, None, None, :, 0] * xs[None, None, :, None]          # [N, H, W, C]
               + freqs[:, None, None, :, 1] * ys[None, :, None, None] + phases[:, None, None, :])
        x = torch.sin(arg * (2 * math.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.channels)).t()                # channel mix
        return x.permute(0, 3, 1, 2)                                         # [N, C, H, W]


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool,
                     input_gain: Tensor) -> Tensor:
    """x [N, I, H, W], weight [O, I, k, k], styles [N, I] (or [N, O, I]: one style per output
    filter, W++) -> [N, O, H+k-1, W+k-1]: per-sample weights (one grouped conv), zero padding k-1
    (a 'full' cross-correlation)."""
    n, o, k = x.shape[0], weight.shape[0], weight.shape[-1]
    if demodulate:  # pre-normalisations only change rounding: demodulation cancels them
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    if styles.dim() == 2:
        styles = styles.unsqueeze(1)                                         # [N, 1, I]
    w = weight.unsqueeze(0) * styles[:, :, :, None, None]                    # [N, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum([2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    w = w * input_gain
    x = x.reshape(1, -1, *x.shape[2:])                                       # [1, N*I, H, W]
    x = F.conv2d(x, w.reshape(n * o, *w.shape[2:]), padding=k - 1, groups=n)
    return x.reshape(n, o, *x.shape[2:])


class SynthesisLayer(nn.Module):
    """Modulated conv -> filtered leaky ReLU (bias, up, lrelu, clamp, down); toRGB: no
    demodulation, identity activation."""

    def __init__(self, w_dim: int, spec: LayerSpec):
        super().__init__()
        self.spec, self.is_torgb, self.padding = spec, spec.is_torgb, list(spec.padding)
        self.up_factor, self.down_factor, self.conv_clamp = spec.up_factor, spec.down_factor, spec.conv_clamp
        k = spec.conv_kernel
        self.affine = FullyConnectedLayer(w_dim, spec.in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([spec.out_channels, spec.in_channels, k, k]))
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", lowpass_filter(
            spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, spec.tmp_sampling_rate))
        self.register_buffer("down_filter", lowpass_filter(
            spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, spec.tmp_sampling_rate,
            radial=spec.down_radial))
        self.gain = 1.0 if spec.is_torgb else SQRT2
        self.slope = 1.0 if spec.is_torgb else 0.2
        self.style_gain = 1 / math.sqrt(spec.in_channels * k * k) if spec.is_torgb else 1.0

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """x [N, I, H, W], w [N, w_dim] (or [N, O, w_dim], W++) -> [N, O, H', W']."""
        styles = self.affine(w) * self.style_gain                            # [N, I] or [N, O, I]
        x = modulated_conv2d(x.to(self.weight.dtype), self.weight, styles, demodulate=not self.is_torgb,
                             input_gain=self.magnitude_ema.rsqrt())
        return filtered_lrelu(x, self.bias, self.up_filter, self.down_filter, self.up_factor,
                              self.down_factor, self.padding, self.gain, self.slope, self.conv_clamp)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, C, R, R] (0.25 x the toRGB output)."""

    def __init__(self, cfg: StyleGAN3Config, input_spec: InputSpec, layers: tuple[LayerSpec, ...]):
        super().__init__()
        self.w_dim, self.num_ws, self.img_resolution = cfg.w_dim, len(layers) + 1, cfg.img_resolution
        self.img_channels, self.output_scale = cfg.img_channels, cfg.output_scale
        self.input = SynthesisInput(cfg.w_dim, input_spec)
        self.layer_names = [spec.name for spec in layers]
        for spec in layers:
            setattr(self, spec.name, SynthesisLayer(cfg.w_dim, spec))

    def layers(self) -> list[SynthesisLayer]:
        return [getattr(self, name) for name in self.layer_names]

    def modulated_layers(self) -> list[ModulatedLayer]:
        """L0 .. toRGB with their ws rows (row 0 is the input's) and filter counts."""
        return [ModulatedLayer(name, i + 1, layer.spec.out_channels)
                for i, (name, layer) in enumerate(zip(self.layer_names, self.layers()))]

    @property
    def max_channels(self) -> int:
        """F of the W++ layout: the widest layer's filter count."""
        return max(layer.filters for layer in self.modulated_layers())

    def forward(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        """noise_mode is accepted for the seam's sake: StyleGAN3 has no noise inputs."""
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be one of ('const', 'random', 'none'), got {noise_mode!r}")
        ws = latent_rows(ws, self.num_ws, self.w_dim, self.max_channels).to(self.input.weight.dtype)  # float32 as loaded; float64 after .double()
        if ws.dim() == 3:
            x = self.input(ws[:, 0])
            for i, layer in enumerate(self.layers()):
                x = layer(x, ws[:, i + 1])
        else:  # W++: the input reads its row's first code; a layer its row's first O codes
            x = self.input(ws[:, 0, 0])
            for i, layer in enumerate(self.layers()):
                x = layer(x, ws[:, i + 1, : layer.spec.out_channels])
        return x * self.output_scale


class Generator(MappedGenerator):
    """The StyleGAN3 generator: `mapping` (z -> ws) and `synthesis` (ws -> image in ~[-1, 1])."""

    def __init__(self, cfg: StyleGAN3Config, input_spec: Optional[InputSpec] = None,
                 layers: Optional[tuple[LayerSpec, ...]] = None):
        super().__init__()
        if (input_spec is None) != (layers is None):
            raise ValueError("pass both input_spec and layers, or neither (then they are designed from cfg)")
        if input_spec is None:
            input_spec, layers = design_layers(cfg)
        self.cfg = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(cfg, input_spec, layers)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg.z_dim, cfg.c_dim, cfg.w_dim, self.num_ws,
                                      cfg.mapping_layers, cfg.lr_multiplier)
