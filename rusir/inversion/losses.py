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

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .. import metrics
from ..validation import MAX_LEVELS, MAX_SEED, number, side, whole
from .terms import (PREDICTION_TERMS, TERMS, GradientTerm, L1Term, L2Term, LPIPSTerm, MSSSIMTerm,
                    SSIMTerm, Term, Frozen, per_image_mean, make_term, unknown_term)

__all__ = [
    "Term", "L1Term", "L2Term", "GradientTerm", "SSIMTerm", "MSSSIMTerm", "LPIPSTerm",
    "WeightedTerms", "MultiResolutionLoss", "ConsistencyLoss", "CompositeLoss", "LossConfig",
    "TERMS", "make_term", "masked_mse",
]


def masked_mse(x: Tensor, y: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Per-image mean squared error [B] (the baselines' pixel term); with a mask [B, 1, h, w],
    unknown pixels count as equal (zero error, still counted in the mean)."""
    diff = x - y
    if mask is not None:
        diff = diff * mask.to(diff.dtype)
    return diff.square().flatten(1).mean(1)


def loss_weight(name: str, value: Any) -> float:
    """A loss weight (or scale) as a float: a finite number >= 0 (rusir.validation.number). A NaN
    weight made every loss NaN, which NGD takes as no gradient: the start image came back."""
    what = f"loss weight {str(name)[:60]!r}"
    if isinstance(value, str):              # YAML '1' is text, not a weight: say so
        raise ValueError(f"{what} must be a finite number >= 0, got {value[:60]!r}")
    return number(value, what, 0.0, math.inf, None, strict=False)


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


class Level(NamedTuple):
    """The target side of one pyramid level."""
    y: Tensor                      # [B, C, h, w] the target (masked) at this level
    m: Optional[Tensor]            # [B, 1, h, w] the mask at this level, or None
    hole: Optional[Tensor]         # 1 - m, the weight of the hole fill
    states: dict[str, Any]         # term name -> term.target(y), for every term whose target
                                   # side is constant (all but noise-filled terms under a mask)


class TargetSide(NamedTuple):
    """Everything the pyramid computes from the target and the mask alone."""
    levels: list[Level]
    m: Optional[Tensor]            # [B, 1, H, W] the full-resolution mask x is multiplied by
    coarse: Tensor                 # [B, C, h, w] y after the last pooling (the coarse L1's target)


class WeightedTerms(Frozen):
    """sum_i w_i * term_i(x, y) at one resolution, with the mask handling described above."""

    def __init__(self, terms: Mapping[str, Term], weights: Mapping[str, float]):
        super().__init__()
        self.terms = nn.ModuleDict(dict(terms))
        self.weights = {k: float(weights[k]) for k in self.terms}

    def level(self, y: Tensor, m: Optional[Tensor] = None) -> Level:
        """The target side at this level. A noise-filled term under a mask compares x + n with
        y + n, n fresh at every call: its target side is recomputed in `compare`."""
        states = {name: term.target(y) for name, term in self.terms.items()
                  if m is None or not term.noise_fill}
        return Level(y, m, None if m is None else 1 - m, states)

    def compare(self, x: Tensor, level: Level, noise: Optional[Callable[[Tensor], Tensor]]) -> Tensor:
        total = x.new_zeros(x.shape[0])
        filled = None
        for name, term in self.terms.items():
            if name in level.states:
                value = term.compare(x, level.states[name])
            else:
                if filled is None:  # one fresh noise per level, shared by x and y and the terms
                    n = level.hole * noise(level.y)
                    filled = (x + n, level.y + n)
                value = term(*filled)
            total = total + self.weights[name] * value
        return total

    def forward(self, x: Tensor, y: Tensor, m: Optional[Tensor] = None,
                noise: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
        return self.compare(x, self.level(y, m), noise)


class _Cached(NamedTuple):
    y: Tensor
    mask: Optional[Tensor]
    key: tuple
    side: TargetSide


def _cache_key(y: Tensor, mask: Optional[Tensor]) -> tuple:
    """What must not change for a cached target side to stay valid (besides y's and the mask's
    identity): in-place edits (versions) and autocast, which sets the features' dtype."""
    kind = y.device.type
    autocast = torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind)
    return (y._version, None if mask is None else mask._version, autocast)


class MultiResolutionLoss(Frozen):
    """The paper's pyramid around a term (or WeightedTerms).

    While the side of y is > levels_min_side (at most max_levels times): add term(x, y), then
    2x2 average-pool x, y and the mask. Finally add l1_weight * mean|x - y| on the pooled images.

    `cache_target` (default on): the target side (`target_side`: masked and pooled targets,
    masks, each term's `target(y)`, e.g. LPIPS features) is computed once and reused while the
    loss is called with the same target tensor and an equal mask, unmodified, under the same
    autocast -- what a restore does at every step. The result is bit-identical to recomputing
    it. What is not cached: under a mask, a noise-filled term (LPIPS) sees y + n with fresh
    noise n at every call, so its features of the target are recomputed (the masked, pooled
    target and the mask pyramid are still cached). `clear_target_cache()` frees it.
    """

    def __init__(self, term: Union[Term, WeightedTerms], levels_min_side: int = 16,
                 max_levels: int = 6, l1_weight: float = 0.1, seed: int = 0):
        super().__init__()
        self.terms = term if isinstance(term, WeightedTerms) else WeightedTerms({"term": term},
                                                                                {"term": 1.0})
        self.levels_min_side, self.max_levels, self.l1_weight = levels_min_side, max_levels, l1_weight
        self.noise = _NoiseSource(seed)
        self.cache_target = True
        self._cached: Optional[_Cached] = None

    def reset_noise(self, seed: Optional[int] = None) -> None:
        self.noise.reset(seed)

    def clear_target_cache(self) -> None:
        self._cached = None

    def target_side(self, y: Tensor, mask: Optional[Tensor] = None) -> TargetSide:
        """Mask y, then per level the term states and a 2x2 pooling of y and the mask."""
        m = full_m = _prepare_mask(mask, y)
        if m is not None:
            y = y * m
        levels: list[Level] = []
        while len(levels) < self.max_levels and min(y.shape[-2:]) > self.levels_min_side:
            levels.append(self.terms.level(y, m))
            y = F.avg_pool2d(y, 2)
            m = F.avg_pool2d(m, 2) if m is not None else None
        if not levels and not self.l1_weight:  # a constant loss would give no gradient at all
            raise ValueError(f"the loss compares nothing on {tuple(y.shape[-2:])} px targets: the "
                             f"pyramid only runs while the side is > min_side={self.levels_min_side} "
                             "and l1_weight is 0; lower min_side or set l1_weight > 0")
        return TargetSide(levels, full_m, y)

    def _target_side(self, y: Tensor, mask: Optional[Tensor]) -> TargetSide:
        if not self.cache_target or y.requires_grad:
            return self.target_side(y, mask)
        key, hit = _cache_key(y, mask), self._cached
        if hit is not None and hit.y is y and hit.key == key and (
                hit.mask is mask or (mask is not None and hit.mask is not None
                                     and hit.mask.shape == mask.shape and torch.equal(hit.mask, mask))):
            return hit.side
        with torch.no_grad():
            side = self.target_side(y, mask)
        self._cached = _Cached(y, mask, key, side)
        return side

    def forward(self, x: Tensor, y: Tensor, mask: Optional[Tensor] = None,
                prediction: Optional[Tensor] = None) -> Tensor:
        if x.shape != y.shape:
            raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must have one shape")
        side = self._target_side(y, mask)
        if side.m is not None:
            x = x * side.m
        total = x.new_zeros(x.shape[0])
        for level in side.levels:
            total = total + self.terms.compare(x, level, self.noise)
            x = F.avg_pool2d(x, 2)
        if self.l1_weight:
            total = total + self.l1_weight * per_image_mean((x - side.coarse).abs())
        return total


class ConsistencyLoss(Frozen):
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
        return per_image_mean((base - self.fn(prediction + self.sigma * eps)).abs())


class CompositeLoss(Frozen):
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
                raise unknown_term(name)
        terms = {k: make_term(k, **options.get(k, {})) for k in weights if k in TERMS}
        self.weights = {k: loss_weight(k, v) for k, v in weights.items()}
        l1_weight = loss_weight("l1_weight", l1_weight)
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

    @property
    def cache_target(self) -> bool:
        """Whether the pyramid reuses the target side (MultiResolutionLoss)."""
        return self.pyramid.cache_target

    @cache_target.setter
    def cache_target(self, on: bool) -> None:
        self.pyramid.cache_target = bool(on)

    def clear_target_cache(self) -> None:
        self.pyramid.clear_target_cache()

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
        if not isinstance(self.terms, Mapping):
            raise ValueError(f"loss terms must be a mapping {{term: weight}}, got {type(self.terms).__name__}")
        weights = [loss_weight(k, w) for k, w in self.terms.items()]
        l1 = loss_weight("l1_weight", self.l1_weight)
        loss_weight("consistency_sigma", self.consistency_sigma)
        self.min_side = side(self.min_side, "loss min_side")   # the pyramid's sizes and its seed
        self.max_levels = whole(self.max_levels, "loss max_levels", 1, MAX_LEVELS, "MAX_LEVELS")
        self.seed = whole(self.seed, "loss seed", 0, MAX_SEED, "MAX_SEED")
        if not any(weights) and not l1:
            raise ValueError("a loss needs a term with a weight > 0 or l1_weight > 0 (it would "
                             "compare nothing)")
        for k in list(self.terms) + list(self.options):
            if k not in TERMS and k not in PREDICTION_TERMS:
                raise unknown_term(k)

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
