"""A small StyleGAN2-style residual discriminator, used only to train the embedded generator.

Equalised learning rate everywhere (weights stored as N(0, 1) and scaled by 1/sqrt(fan_in) at
run time) so that Adam's per-parameter steps are balanced between layers, exactly as in the
generator. Down-sampling blurs with the same [1,3,3,1] filter as the generator's up-sampling,
which avoids aliasing artefacts that the generator would otherwise be pushed to imitate.
The minibatch-stddev layer lets D see batch diversity, which discourages mode collapse.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.stylegan2 import FullyConnectedLayer, lrelu_gain, resample_filter_kernel


def downsample2d(x: Tensor, f: Tensor, pad: int = 1) -> Tensor:
    """Blur with the 4x4 filter and keep every second pixel ([B,C,H,W] -> [B,C,H/2,W/2] for pad 1)."""
    c = x.shape[1]
    kernel = f.to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(x, [pad] * 4), kernel, stride=2, groups=c)


class Conv2dLayer(nn.Module):
    """Equalised-lr conv, optional 2x blur-down-sampling, optional leaky ReLU (gain sqrt 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", down: bool = False):
        super().__init__()
        self.activation, self.down, self.kernel_size = activation, down, kernel_size
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.register_buffer("resample_filter", resample_filter_kernel())

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.weight_gain
        if self.down and self.kernel_size == 1:
            x = F.conv2d(downsample2d(x, self.resample_filter, pad=1), w)
        elif self.down:  # blur to H+1 (pad 2), then a strided conv without padding -> H/2
            c = x.shape[1]
            blur = self.resample_filter.to(x.dtype)[None, None].repeat(c, 1, 1, 1)
            x = F.conv2d(F.conv2d(F.pad(x, [2] * 4), blur, groups=c), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.kernel_size // 2)
        if self.bias is not None:
            x = x + self.bias.view(1, -1, 1, 1)
        return lrelu_gain(x) if self.activation == "lrelu" else x


class DiscriminatorBlock(nn.Module):
    """conv 3x3, conv 3x3 down, plus a 1x1 down skip; the sum is scaled by sqrt(1/2) to keep variance."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = Conv2dLayer(in_channels, out_channels, 3, activation="lrelu", down=True)
        self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: Tensor) -> Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


def minibatch_stddev(x: Tensor, group_size: int = 4) -> Tensor:
    """Append one channel: the std over groups of samples, averaged over features and pixels."""
    b, c, h, w = x.shape
    g = min(group_size, b)
    if b % g:
        g = 1  # odd final batches: fall back to per-sample groups (stddev of a single sample = 0)
    y = x.reshape(g, -1, c, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # [B/g, C, H, W]
    y = y.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)  # [B, 1, H, W]
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Image [B, C, R, R] in [-1, 1] -> logit [B]. Residual architecture, channels min(base/r, max)."""

    def __init__(self, img_resolution: int = 64, img_channels: int = 3, channel_base: int = 2048,
                 channel_max: int = 128, mbstd_group: int = 4):
        super().__init__()
        self.init_kwargs = dict(img_resolution=img_resolution, img_channels=img_channels,
                                channel_base=channel_base, channel_max=channel_max,
                                mbstd_group=mbstd_group)
        log2 = int(math.log2(img_resolution))
        ch = {2 ** i: min(channel_base // 2 ** i, channel_max) for i in range(2, log2 + 1)}
        self.mbstd_group = mbstd_group
        self.fromrgb = Conv2dLayer(img_channels, ch[img_resolution], 1, activation="lrelu")
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(ch[2 ** i], ch[2 ** (i - 1)]) for i in range(log2, 2, -1))
        c4 = ch[4]
        self.conv = Conv2dLayer(c4 + 1, c4, 3, activation="lrelu")
        self.fc = FullyConnectedLayer(c4 * 16, c4, activation="lrelu")
        self.out = FullyConnectedLayer(c4, 1)

    def forward(self, img: Tensor, group_size: Optional[int] = None) -> Tensor:
        x = self.fromrgb(img)
        for block in self.blocks:
            x = block(x)
        x = minibatch_stddev(x, self.mbstd_group if group_size is None else group_size)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1))).squeeze(1)
