"""Loss terms: per-image distances (x, y) -> [B] between a degraded prediction and its target.

A term is split in two halves so the target's side can be computed once per restore:

    state = term.target(y)       what the term needs of the target (LPIPS: its normalised
                                 VGG features; gradient: its Sobel maps; pixel terms: y itself)
    term.compare(x, state) -> [B]

and `term(x, y) == term.compare(x, term.target(y))` bit for bit (the same operations in the same
order; the lpips package also runs its backbone on the two images separately). The target is
constant over a restore, so `rusir.inversion.losses.MultiResolutionLoss` caches `target(y)` per
pyramid level, except where y changes at every step (the hole-filled target under a mask).

Networks are built once in __init__, frozen, kept in eval mode, and follow `.to(device)`.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .. import metrics

__all__ = ["Term", "L1Term", "L2Term", "GradientTerm", "SSIMTerm", "MSSSIMTerm", "LPIPSTerm",
           "TERMS", "PREDICTION_TERMS", "make_term", "Frozen", "per_image_mean"]


class Frozen(nn.Module):
    """Base of all loss modules: always in eval mode (dropout in LPIPS must stay off)."""

    def train(self, mode: bool = True):
        return super().train(False)


def per_image_mean(t: Tensor) -> Tensor:
    """[B, ...] -> [B]: one value per image, so a batch sums independent objectives."""
    return t.flatten(1).mean(1)


class Term(Frozen):
    """A per-image distance (x, y) -> [B]. `noise_fill`: holes are filled with shared noise
    before the call (perceptual terms) instead of being left at 0. Subclasses write `compare`
    and, when the target side costs something, `target`."""
    noise_fill = False

    def target(self, y: Tensor) -> Any:
        """What `compare` needs of the target; by default the target itself."""
        return y

    def compare(self, x: Tensor, state: Any) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.compare(x, self.target(y))


class L1Term(Term):
    def compare(self, x: Tensor, y: Tensor) -> Tensor:
        return per_image_mean((x - y).abs())


class L2Term(Term):
    def compare(self, x: Tensor, y: Tensor) -> Tensor:
        return per_image_mean((x - y).square())


class GradientTerm(Term):
    """Mean L1 between Sobel gradients (kernels / 8, i.e. per-pixel slope; replicate padding),
    averaged over the horizontal and vertical maps and the channels."""

    def __init__(self):
        super().__init__()
        k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
        self.register_buffer("kernel", torch.stack([k, k.t()]).unsqueeze(1), persistent=False)

    def _grad(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        x = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
        return F.conv2d(x, self.kernel.to(x.dtype)).reshape(b, c * 2, h, w)

    def target(self, y: Tensor) -> Tensor:
        return self._grad(y)                                   # [B, 2C, h, w]

    def compare(self, x: Tensor, grad_y: Tensor) -> Tensor:
        return per_image_mean((self._grad(x) - grad_y).abs())


class SSIMTerm(Term):
    """1 - SSIM (window 11, shrunk at tiny sides; see metrics.ssim). Its target statistics are
    recomputed at every call (cheap next to the generator)."""

    def __init__(self, win_size: int = 11):
        super().__init__()
        self.win_size = win_size

    def compare(self, x: Tensor, y: Tensor) -> Tensor:
        return 1 - metrics.ssim(x, y, data_range=1.0, win_size=self.win_size)


class MSSSIMTerm(Term):
    """1 - MS-SSIM with as many scales as the side allows (metrics.ms_ssim: window 11 gives
    3 scales at 64 px, 2 at 32 px, plain SSIM at 16 px; standard weights truncated and
    renormalised; equals standard MS-SSIM at >= 176 px). Gradients stay finite."""

    def __init__(self, win_size: int = 11, weights: Optional[list[float]] = None):
        super().__init__()
        self.win_size, self.weights = win_size, weights

    def compare(self, x: Tensor, y: Tensor) -> Tensor:
        return 1 - metrics.ms_ssim(x, y, data_range=1.0, win_size=self.win_size,
                                   weights=self.weights)


class LPIPSTerm(Term):
    """LPIPS (lpips package, v0.1 heads, inputs [0, 1] normalised, spatial mean, no resize).

    `target(y)` is y's list of channel-normalised backbone features, `compare` runs the backbone
    on x and the linear heads on the squared differences: lpips.LPIPS.forward split in two,
    the same operations in the same order.

    The ImageNet backbone comes from `rusir.model.weights` and is required: when it is absent this
    raises MissingWeightsError (file, URL, destination) before lpips could download anything.
    `_allow_random_backbone_for_tests=True` builds lpips' random backbone -- for tests only.
    """
    noise_fill = True

    def __init__(self, net: str = "vgg", *, _allow_random_backbone_for_tests: bool = False):
        super().__init__()
        self.net_name = net
        self.model = metrics.lpips_network(
            net, _allow_random_backbone_for_tests=_allow_random_backbone_for_tests)

    def _check_side(self, x: Tensor) -> None:
        if min(x.shape[-2:]) < metrics.LPIPS_MIN_SIDE[self.net_name]:
            raise ValueError(f"LPIPS-{self.net_name} needs images of side >= "
                             f"{metrics.LPIPS_MIN_SIDE[self.net_name]} px, got {tuple(x.shape[-2:])}")

    def target(self, y: Tensor) -> list[Tensor]:
        import lpips   # loaded with the network (metrics.lpips_network)

        self._check_side(y)
        outs = self.model.net.forward(self.model.scaling_layer(2 * y - 1))
        return [lpips.normalize_tensor(o) for o in outs]      # one [B, C_k, h_k, w_k] per layer

    def compare(self, x: Tensor, feats_y: list[Tensor]) -> Tensor:
        feats_x = self.target(x)
        value = 0
        for head, fx, fy in zip(self.model.lins, feats_x, feats_y):
            value = value + head((fx - fy) ** 2).mean([2, 3], keepdim=True)   # [B, 1, 1, 1]
        return value.reshape(x.shape[0])


TERMS: dict[str, Callable[..., Term]] = {
    "l1": L1Term,
    "l2": L2Term,
    "grad": GradientTerm,
    "ssim": SSIMTerm,
    "ms_ssim": MSSSIMTerm,
    "lpips_vgg": lambda **kw: LPIPSTerm("vgg", **kw),
    "lpips_alex": lambda **kw: LPIPSTerm("alex", **kw),
    "lpips_squeeze": lambda **kw: LPIPSTerm("squeeze", **kw),
}
PREDICTION_TERMS = ("consistency",)  # computed on the clean prediction, outside the pyramid


def unknown_term(name: str) -> ValueError:
    return ValueError(f"unknown loss term {name!r}; valid terms: {sorted(TERMS)} "
                      f"(+ {list(PREDICTION_TERMS)} with a degradation)")


def make_term(name: str, **options) -> Term:
    """A term by name (TERMS), with its constructor options."""
    if name not in TERMS:
        raise unknown_term(name)
    return TERMS[name](**options)
