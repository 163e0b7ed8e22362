"""A pure-PyTorch StyleGAN2-ADA generator, weight-compatible with the official `G_ema`.

Parameter names, shapes and order equal the official `state_dict()`, so official weights load
with `strict=True`. The maths follows ../shared/spec/stylegan2-ada-format.md section 2 and
runs in the dtype of the parameters: fp32 as loaded (the official fp16 path is a speed trick
that changes values by ~1e-2); `G.double()` gives a float64 generator (inputs are cast to it),
which measures what float32 rounding does to a result.

Synthesis takes three latent layouts (RUSIR's phases):
    W    [B, w_dim]              one code, repeated for every layer
    W+   [B, num_ws, w_dim]      one code per ws row
    W++  [B, num_ws, F, w_dim]   one code per output filter of every layer (F = max width)
The generator knows nothing about restoration; it only turns codes into images in ~[-1, 1].
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .family import MappedGenerator, ModulatedLayer, latent_rows, to_unit_range

SQRT2 = math.sqrt(2.0)
NOISE_MODES = ("const", "random", "none")


def resample_filter_kernel() -> Tensor:
    """The [1,3,3,1] outer-product FIR filter, normalised to sum 1 ([4, 4])."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f)
    return f / f.sum()


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """2x FIR up-sampling with gain 4 (zero insertion, pad 2/1, filter) as one transposed conv."""
    c = x.shape[1]
    kernel = (f * 4).to(x.dtype)[None, None].repeat(c, 1, 1, 1)  # [C, 1, 4, 4]
    return F.conv_transpose2d(x, kernel, stride=2, padding=1, groups=c)


def lrelu_gain(x: Tensor, gain: float = 1.0, clamp: Optional[float] = None) -> Tensor:
    """Leaky ReLU (0.2) times sqrt(2)*gain, optionally clamped to +-clamp*gain."""
    x = F.leaky_relu(x, 0.2) * (SQRT2 * gain)
    if clamp is not None:
        x = x.clamp(-clamp * gain, clamp * gain)
    return x


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate: weights stored unscaled, scaled at run time."""

    def __init__(self, in_features: int, out_features: int, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:  # [..., in] -> [..., out]
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu_gain(x) if self.activation == "lrelu" else x


def _normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z (+ optional label c) -> w, with the tracked average w_avg used for truncation and init."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 8,
                 embed_features: Optional[int] = None, layer_features: Optional[int] = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01,
                 w_avg_beta: Optional[float] = 0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = (w_dim if embed_features is None else embed_features) if c_dim else 0
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            layer = FullyConnectedLayer(features[i], features[i + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{i}", layer)
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Tensor, c: Optional[Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, update_w_avg: bool = False) -> Tensor:
        """[B, z_dim] -> [B, num_ws, w_dim]. w_avg changes only when update_w_avg (training)."""
        dtype = self.fc0.weight.dtype  # fp32 as loaded; fp64 after .double()
        x = _normalize_2nd_moment(z.to(dtype)) if self.z_dim > 0 else None
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"this generator is conditional (c_dim={self.c_dim}): pass c")
            y = _normalize_2nd_moment(self.embed(c.to(dtype)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_w_avg and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ValueError("truncation needs w_avg, which this mapping does not track")
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = x.clone()
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
        return x


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True,
                     up: bool = False, padding: int = 0, resample_filter: Optional[Tensor] = None
                     ) -> Tensor:
    """Per-sample modulated convolution.

    x [B, I, H, W]; weight [O, I, k, k]; styles [B, I] (W/W+) or [B, O, I] (W++: one style
    vector per output filter). Returns [B, O, H', W'] (H' = 2H when up). W/W+ styles use the
    official training formulation (scale activations, one shared-weight conv, scale outputs),
    2-3x faster on CPU; W++ styles need per-sample weights, hence one grouped conv (the
    official "fused" path). The two agree to ~1e-5 (fixture README).
    """
    if styles.dim() == 2:
        return _modconv_shared_weight(x, weight, styles, demodulate, up, padding, resample_filter)
    return _modconv_grouped(x, weight, styles, demodulate, up, padding, resample_filter)


def _up_blur(x: Tensor, resample_filter: Tensor) -> Tensor:
    """The 4*f blur with padding 1 that follows conv0's stride-2 transposed conv."""
    c = x.shape[1]
    blur = (resample_filter * 4).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(x, [1, 1, 1, 1]), blur, groups=c)


def _modconv_shared_weight(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool,
                           up: bool, padding: int, resample_filter: Optional[Tensor]) -> Tensor:
    b, i = styles.shape
    o = weight.shape[0]
    x = x * styles.view(b, i, 1, 1)
    if up:  # transposed conv with in/out swapped and no spatial flip, then the blur
        x = _up_blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2), resample_filter)
    else:
        x = F.conv2d(x, weight, padding=padding)
    if demodulate:
        d = ((weight.unsqueeze(0) * styles.view(b, 1, i, 1, 1)).square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        x = x * d.view(b, o, 1, 1)
    return x


def _modconv_grouped(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool, up: bool,
                     padding: int, resample_filter: Optional[Tensor]) -> Tensor:
    b, i, h, w_ = x.shape
    o, _, kh, kw = weight.shape
    wgt = weight.unsqueeze(0) * styles.view(b, o, i, 1, 1)  # [B, O, I, k, k]
    if demodulate:
        wgt = wgt * (wgt.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    x = x.reshape(1, b * i, h, w_)
    if up:
        wt = wgt.transpose(1, 2).reshape(b * i, o, kh, kw)
        x = _up_blur(F.conv_transpose2d(x, wt, stride=2, groups=b), resample_filter)  # [1, B*O, 2H, 2W]
    else:
        x = F.conv2d(x, wgt.reshape(b * o, i, kh, kw), padding=padding, groups=b)
    return x.reshape(b, o, x.shape[2], x.shape[3])


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x up-sampling), noise, bias, leaky ReLU, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 up: bool = False, use_noise: bool = True, conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.use_noise, self.conv_clamp = resolution, up, use_noise, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        if use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", resample_filter_kernel())
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))

    def forward(self, x: Tensor, styles: Tensor, noise_mode: str = "const", gain: float = 1.0) -> Tensor:
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up,
                             padding=1, resample_filter=self.resample_filter)
        if self.use_noise and noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution])
            x = x + noise.to(x.device, x.dtype) * self.noise_strength
        return lrelu_gain(x + self.bias.view(1, -1, 1, 1), gain, self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to RGB: no demodulation, no noise, no activation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int,
                 conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels, self.out_channels, self.conv_clamp = in_channels, out_channels, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, styles: Tensor) -> Tensor:
        x = modulated_conv2d(x, self.weight, styles * self.weight_gain, demodulate=False)
        x = x + self.bias.view(1, -1, 1, 1)
        return x.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else x


class SynthesisBlock(nn.Module):
    """One resolution of the skip architecture: [conv0 (up)], conv1, toRGB added to the image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 img_channels: int, use_fp16: bool = False, conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.use_fp16 = use_fp16  # recorded from official files; we always compute in fp32
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        self.register_buffer("resample_filter", resample_filter_kernel())
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True,
                                        conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution,
                                    conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def layers(self) -> list[nn.Module]:
        """Modulated layers in the order they read ws rows: conv0, conv1, torgb."""
        convs = [self.conv1] if self.in_channels == 0 else [self.conv0, self.conv1]
        return convs + [self.torgb]

    def forward(self, x: Optional[Tensor], img: Optional[Tensor], styles: list[Tensor],
                noise_mode: str = "const") -> tuple[Tensor, Tensor]:
        if self.in_channels == 0:
            batch = styles[0].shape[0]
            x = self.const.unsqueeze(0).repeat(batch, 1, 1, 1)
            x = self.conv1(x, styles[0], noise_mode)
        else:
            x = self.conv0(x, styles[0], noise_mode)
            x = self.conv1(x, styles[1], noise_mode)
        y = self.torgb(x, styles[-1])
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (W, W+ or W++) -> image [B, img_channels, R, R], skip architecture."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int,
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 0,
                 conv_clamp: Optional[float] = None, architecture: str = "skip", **unused):
        super().__init__()
        if architecture != "skip":
            raise ValueError(f"only the 'skip' synthesis architecture is supported, got {architecture!r}")
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        fp16_from = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for r in self.block_resolutions:
            block = SynthesisBlock(channels.get(r // 2, 0) if r > 4 else 0, channels[r], w_dim, r,
                                   img_channels, use_fp16=(r >= fp16_from), conv_clamp=conv_clamp)
            setattr(self, f"b{r}", block)
            self.num_ws += block.num_conv
        self.num_ws += 1  # the last toRGB reads the row after the last conv
        self.max_channels = max(channels.values())  # F of the W++ layout

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{r}") for r in self.block_resolutions]

    def layer_rows(self) -> list[tuple[nn.Module, int]]:
        """(layer, ws row) for every modulated layer; a toRGB shares its row with the next conv0."""
        out, row = [], 0
        for block in self.blocks():
            for layer in block.layers():
                out.append((layer, row))
                if not isinstance(layer, ToRGBLayer):
                    row += 1
        return out

    def modulated_layers(self) -> list[ModulatedLayer]:
        """Every modulated layer (convs and toRGBs) with its ws row and filter count."""
        names = {id(module): name for name, module in self.named_modules()}
        return [ModulatedLayer(names[id(layer)], row, layer.out_channels)
                for layer, row in self.layer_rows()]

    def styles(self, ws: Tensor) -> list[Tensor]:
        """Affine styles per modulated layer: [B, I] for W/W+, [B, O, I] for W++."""
        ws = latent_rows(ws, self.num_ws, self.w_dim, self.max_channels)
        styles = []
        for layer, row in self.layer_rows():
            if ws.dim() == 3:
                styles.append(layer.affine(ws[:, row]))  # [B, I]
            else:
                styles.append(layer.affine(ws[:, row, : layer.out_channels]))  # [B, O, I]
        return styles

    def forward(self, ws: Tensor, noise_mode: str = "const", **unused) -> Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        styles = iter(self.styles(ws.to(self.blocks()[0].const.dtype)))  # fp32 unless .double()
        x = img = None
        for block in self.blocks():
            block_styles = [next(styles) for _ in block.layers()]
            x, img = block(x, img, block_styles, noise_mode)
        return img


class Generator(MappedGenerator):
    """StyleGAN2-ADA generator: `mapping` (z -> w) then `synthesis` (w -> image).

    Constructor arguments are the official ones, so configurations read from official pickles
    (or our own checkpoints) rebuild the same network.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict] = None, synthesis_kwargs: Optional[dict] = None):
        super().__init__()
        mapping_kwargs, synthesis_kwargs = dict(mapping_kwargs or {}), dict(synthesis_kwargs or {})
        self.init_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, mapping_kwargs=mapping_kwargs,
                                synthesis_kwargs=synthesis_kwargs)
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)
