"""Losses between the degraded prediction x = f_hat(G(latent)) and the target y.

Every loss is a callable `loss(x, y, mask=None, prediction=None) -> Tensor[B]` (one value per
image; x, y ~[0, 1]; mask [B, 1, h, w] with 1 = known pixel, or None). Losses that need the clean
prediction G(latent) itself (consistency) say so with `needs_prediction = True`; the restore loop
then passes `prediction=`. Networks are built once in __init__, frozen, kept in eval mode, and
follow `.to(device)`.

The paper's loss (spec section 4) is `MultiResolutionLoss(LPIPSTerm("vgg"))`: LPIPS at every
dyadic level while the side is > 16 (at most 6 levels, weight 1 each, summed), then
0.1 * mean|x - y| on the images left after the last 2x2 pooling. `CompositeLoss` generalises it
to a weighted sum of named terms inside one pyramid, configured as data (`LossConfig`).

Masks: the mask is area-resized to y's size and both x and y are multiplied by it at full
resolution, then pooled with it (identical to the reference, whose inpainting approximation
already masks x). Before every call of a noise-filled term (LPIPS) the same fresh noise
n = (N(0, 1) + 0.5) / 2 is added to both images weighted by (1 - m), so holes hold identical
texture instead of black; the noise comes from a seeded generator owned by the loss
(`reset_noise(seed)` restarts it). Weight-free terms see the masked images (holes 0 in both), so
content inside holes never contributes. The coarse L1 is taken on the pooled masked images.

Batch independence: a loss's own noise (hole fill, consistency) is ONE draw of a single image's
shape per call, broadcast over the batch, so the stream advances by the same amount whatever
the batch size and every image sees exactly the noise it would see alone (the noise depends on
the loss's seed and call count, never on the other images). Nothing reduces over the batch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .. import metrics

__all__ = [
    "Term", "L1Term", "L2Term", "GradientTerm", "SSIMTerm", "MSSSIMTerm", "LPIPSTerm",
    "WeightedTerms", "MultiResolutionLoss", "ConsistencyLoss", "CompositeLoss", "LossConfig",
    "TERMS", "make_term", "masked_mse",
]


class _Frozen(nn.Module):
    """Base of all loss modules: always in eval mode (dropout in LPIPS must stay off)."""

    def train(self, mode: bool = True):
        return super().train(False)


def _per_image_mean(t: Tensor) -> Tensor:
    return t.flatten(1).mean(1)


def masked_mse(x: Tensor, y: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Per-image mean squared error [B] (the baselines' pixel term); with a mask [B, 1, h, w],
    unknown pixels count as equal (zero error, still counted in the mean)."""
    diff = x - y
    if mask is not None:
        diff = diff * mask.to(diff.dtype)
    return diff.square().flatten(1).mean(1)


# --- terms: (x, y) -> [B], no mask ------------------------------------------------------------

class Term(_Frozen):
    """A per-image distance (x, y) -> [B]. `noise_fill`: holes are filled with shared noise
    before the call (perceptual terms) instead of being left at 0."""
    noise_fill = False


class L1Term(Term):
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return _per_image_mean((x - y).abs())


class L2Term(Term):
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return _per_image_mean((x - y).square())


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

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return _per_image_mean((self._grad(x) - self._grad(y)).abs())


class SSIMTerm(Term):
    """1 - SSIM (window 11, shrunk at tiny sides; see metrics.ssim)."""

    def __init__(self, win_size: int = 11):
        super().__init__()
        self.win_size = win_size

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return 1 - metrics.ssim(x, y, data_range=1.0, win_size=self.win_size)


class MSSSIMTerm(Term):
    """1 - MS-SSIM with as many scales as the side allows (metrics.ms_ssim: window 11 gives
    3 scales at 64 px, 2 at 32 px, plain SSIM at 16 px; standard weights truncated and
    renormalised; equals standard MS-SSIM at >= 176 px). Gradients stay finite."""

    def __init__(self, win_size: int = 11, weights: Optional[list[float]] = None):
        super().__init__()
        self.win_size, self.weights = win_size, weights

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return 1 - metrics.ms_ssim(x, y, data_range=1.0, win_size=self.win_size,
                                   weights=self.weights)


class LPIPSTerm(Term):
    """LPIPS (lpips package, v0.1 heads, inputs [0, 1] normalised, spatial mean, no resize).

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

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if min(x.shape[-2:]) < metrics.LPIPS_MIN_SIDE[self.net_name]:
            raise ValueError(f"LPIPS-{self.net_name} needs images of side >= "
                             f"{metrics.LPIPS_MIN_SIDE[self.net_name]} px, got {tuple(x.shape[-2:])}")
        return self.model(x, y, normalize=True).reshape(x.shape[0])


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


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown loss term {name!r}; valid terms: {sorted(TERMS)} "
                      f"(+ {list(PREDICTION_TERMS)} with a degradation)")


def make_term(name: str, **options) -> Term:
    """A term by name (TERMS), with its constructor options."""
    if name not in TERMS:
        raise _unknown(name)
    return TERMS[name](**options)


# --- masking, noise, pyramid -----------------------------------------------------------------

class _NoiseSource:
    """Seeded per-device generators for the loss's noise, so runs are reproducible.

    Each draw is one image's worth ([1, C, H, W]) expanded over the batch: drawing [B, C, H, W]
    from one stream would give image i noise that depends on its position and on B (and the
    stream would advance B times as fast), coupling the images of a batch. For B = 1 the values
    are those of the former full-shape draw."""

    def __init__(self, seed: int):
        self.seed = seed
        self._gens: dict[str, torch.Generator] = {}

    def reset(self, seed: Optional[int] = None) -> None:
        self.seed = self.seed if seed is None else seed
        self._gens.clear()

    def randn(self, like: Tensor) -> Tensor:
        key = str(like.device)
        if key not in self._gens:
            self._gens[key] = torch.Generator(device=like.device).manual_seed(self.seed)
        one = torch.randn((1, *like.shape[1:]), generator=self._gens[key], device=like.device,
                          dtype=like.dtype)
        return one.expand(like.shape)

    def __call__(self, like: Tensor) -> Tensor:
        """The hole fill: (N(0, 1) + 0.5) / 2, mean 0.25, std 0.5."""
        return (self.randn(like) + 0.5) / 2


def _prepare_mask(mask: Optional[Tensor], y: Tensor) -> Optional[Tensor]:
    if mask is None:
        return None
    mask = mask.to(dtype=y.dtype, device=y.device)
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be [B, 1, h, w], got {tuple(mask.shape)}")
    if mask.shape[-2:] != y.shape[-2:]:
        mask = F.interpolate(mask, size=y.shape[-2:], mode="area")
    return mask


class WeightedTerms(_Frozen):
    """sum_i w_i * term_i(x, y) at one resolution, with the mask handling described above."""

    def __init__(self, terms: Mapping[str, Term], weights: Mapping[str, float]):
        super().__init__()
        self.terms = nn.ModuleDict(dict(terms))
        self.weights = {k: float(weights[k]) for k in self.terms}

    def forward(self, x: Tensor, y: Tensor, m: Optional[Tensor] = None,
                noise: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
        total = x.new_zeros(x.shape[0])
        filled = None
        for name, term in self.terms.items():
            a, b = x, y
            if m is not None and term.noise_fill:
                if filled is None:  # one fresh noise per level, shared by x and y and the terms
                    n = (1 - m) * noise(y)
                    filled = (x + n, y + n)
                a, b = filled
            total = total + self.weights[name] * term(a, b)
        return total


class MultiResolutionLoss(_Frozen):
    """The paper's pyramid around a term (or WeightedTerms).

    While the side of y is > levels_min_side (at most max_levels times): add term(x, y), then
    2x2 average-pool x, y and the mask. Finally add l1_weight * mean|x - y| on the pooled images.
    """

    def __init__(self, term: Union[Term, WeightedTerms], levels_min_side: int = 16,
                 max_levels: int = 6, l1_weight: float = 0.1, seed: int = 0):
        super().__init__()
        self.terms = term if isinstance(term, WeightedTerms) else WeightedTerms({"term": term},
                                                                                {"term": 1.0})
        self.levels_min_side, self.max_levels, self.l1_weight = levels_min_side, max_levels, l1_weight
        self.noise = _NoiseSource(seed)

    def reset_noise(self, seed: Optional[int] = None) -> None:
        self.noise.reset(seed)

    def forward(self, x: Tensor, y: Tensor, mask: Optional[Tensor] = None,
                prediction: Optional[Tensor] = None) -> Tensor:
        if x.shape != y.shape:
            raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must have one shape")
        m = _prepare_mask(mask, y)
        if m is not None:
            x, y = x * m, y * m
        total = x.new_zeros(x.shape[0])
        levels = 0
        while levels < self.max_levels and min(y.shape[-2:]) > self.levels_min_side:
            total = total + self.terms(x, y, m, self.noise)
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
            m = F.avg_pool2d(m, 2) if m is not None else None
            levels += 1
        if levels == 0 and not self.l1_weight:  # a constant loss would give no gradient at all
            raise ValueError(f"the loss compares nothing on {tuple(y.shape[-2:])} px targets: the "
                             f"pyramid only runs while the side is > min_side={self.levels_min_side} "
                             "and l1_weight is 0; lower min_side or set l1_weight > 0")
        if self.l1_weight:
            total = total + self.l1_weight * _per_image_mean((x - y).abs())
        return total


class ConsistencyLoss(_Frozen):
    """Consistency of the degradation approximation around the prediction (IQA follow-up):
    mean |f_hat(x) - f_hat(x + sigma * N(0, 1))| per image, x = the CLEAN generator output.

    Call as `loss(x_degraded, y, mask=None, prediction=x)` (`needs_prediction = True`).
    f_hat(x) is taken from `x_degraded` (what the main loss saw; for a stochastic f_hat, the same
    draw) or recomputed when x_degraded is None; y and mask are unused. `degradation_fn` is a
    callable or an object with `degrade_prediction`.
    """
    needs_prediction = True

    def __init__(self, degradation_fn, sigma: float = 0.01, seed: int = 0):
        super().__init__()
        self.fn = getattr(degradation_fn, "degrade_prediction", degradation_fn)
        if not callable(self.fn):
            raise TypeError("degradation_fn must be callable or have degrade_prediction")
        self.sigma = sigma
        self.noise = _NoiseSource(seed)

    def reset_noise(self, seed: Optional[int] = None) -> None:
        self.noise.reset(seed)

    def forward(self, x_degraded: Optional[Tensor], y: Optional[Tensor] = None,
                mask: Optional[Tensor] = None, prediction: Optional[Tensor] = None) -> Tensor:
        if prediction is None:
            raise ValueError("ConsistencyLoss needs the clean prediction: loss(x, y, prediction=G(w))")
        base = x_degraded if x_degraded is not None else self.fn(prediction)
        eps = self.noise.randn(prediction)
        return _per_image_mean((base - self.fn(prediction + self.sigma * eps)).abs())


class CompositeLoss(_Frozen):
    """Weighted sum of named terms inside one multiresolution pyramid (as the paper's loss),
    plus optionally `consistency` (needs `degradation_fn`; computed on the prediction).

    Because the pyramid is linear, the result equals sum_i w_i * MultiResolutionLoss(term_i,
    l1_weight=0) + MultiResolutionLoss(nothing, l1_weight). multiresolution=False evaluates the
    terms once at full resolution (the coarse L1 then sees the once-pooled images).
    """

    def __init__(self, weights: Mapping[str, float], multiresolution: bool = True,
                 l1_weight: float = 0.1, min_side: int = 16, max_levels: int = 6, seed: int = 0,
                 options: Optional[Mapping[str, dict]] = None, degradation_fn=None,
                 consistency_sigma: float = 0.01):
        super().__init__()
        options = dict(options or {})
        for name in list(weights) + list(options):
            if name not in TERMS and name not in PREDICTION_TERMS:
                raise _unknown(name)
        terms = {k: make_term(k, **options.get(k, {})) for k in weights if k in TERMS}
        self.weights = {k: float(v) for k, v in weights.items()}
        self.pyramid = MultiResolutionLoss(
            WeightedTerms(terms, self.weights), levels_min_side=min_side if multiresolution else 0,
            max_levels=max_levels if multiresolution else 1, l1_weight=l1_weight, seed=seed)
        self.consistency = None
        if "consistency" in weights:
            if degradation_fn is None:
                raise ValueError("the 'consistency' term needs the degradation: "
                                 "build_loss(spec, degradation_fn=degradation)")
            self.consistency = ConsistencyLoss(degradation_fn, consistency_sigma, seed=seed + 1)
        self.needs_prediction = self.consistency is not None

    def reset_noise(self, seed: Optional[int] = None) -> None:
        """Restart the hole-fill noise at `seed` and the consistency noise at seed + 1 (as built)."""
        self.pyramid.reset_noise(seed)
        if self.consistency is not None:
            self.consistency.reset_noise(None if seed is None else seed + 1)

    def forward(self, x: Tensor, y: Tensor, mask: Optional[Tensor] = None,
                prediction: Optional[Tensor] = None) -> Tensor:
        total = self.pyramid(x, y, mask)
        if self.consistency is not None:
            total = total + self.weights["consistency"] * self.consistency(x, y, mask, prediction)
        return total


# --- configuration as data -------------------------------------------------------------------

@dataclass
class LossConfig:
    """A loss as data (presets are YAML files of these fields under `loss:`)."""
    terms: dict[str, float]
    multiresolution: bool = True
    l1_weight: float = 0.1
    min_side: int = 16
    max_levels: int = 6
    seed: int = 0
    options: dict[str, dict] = field(default_factory=dict)
    consistency_sigma: float = 0.01
    name: str = ""
    description: str = ""

    def __post_init__(self):
        if not self.terms and not self.l1_weight:
            raise ValueError("a loss needs at least one term or l1_weight > 0")
        for k in list(self.terms) + list(self.options):
            if k not in TERMS and k not in PREDICTION_TERMS:
                raise _unknown(k)

    @classmethod
    def from_dict(cls, d: Mapping) -> "LossConfig":
        valid = set(cls.__dataclass_fields__)
        extra = set(d) - valid
        if extra:
            raise ValueError(f"unknown loss config key(s) {sorted(extra)}; valid: {sorted(valid)}")
        return cls(**dict(d))

    def to_dict(self) -> dict:
        return asdict(self)

    def weight_files(self) -> list[str]:
        """Registry names (rusir.model.weights) this loss needs, e.g. ['vgg16'] for LPIPS-VGG."""
        nets = {k.split("_", 1)[1] for k in self.terms if k.startswith("lpips_")}
        return sorted(metrics.LPIPS_BACKBONES[n] for n in nets)

    def build(self, degradation_fn=None) -> CompositeLoss:
        return CompositeLoss(self.terms, multiresolution=self.multiresolution,
                             l1_weight=self.l1_weight, min_side=self.min_side,
                             max_levels=self.max_levels, seed=self.seed, options=self.options,
                             degradation_fn=degradation_fn, consistency_sigma=self.consistency_sigma)
