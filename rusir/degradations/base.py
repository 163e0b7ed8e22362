"""The degradation base class and the helpers every task shares.

A degradation has two faces (spec 5.1):

* ``degrade_ground_truth(x)`` -- the *true* operator used to make targets and to measure
  fidelity. It may be non-differentiable (Pillow resize, libjpeg, Poisson draws), is
  deterministic given the seed, and its result is cycled through 8-bit serialisation exactly
  as when the degraded image is saved to a file.
* ``degrade_prediction(x)`` -- the differentiable approximation used inside the loss.

Subclasses write two methods, :meth:`Degradation.true_degradation` and
:meth:`Degradation.approximation`; the base class does input checks, clamping, per-image
seeding, lazy per-size preparation (masks, filter choices) and the 8-bit cycle.

Seeding: an ``int`` seed ``s`` applied to a batch of ``B`` images means per-image seeds
``s, s+1, ..., s+B-1``; a sequence gives one seed per image. Every random draw comes from an
explicit generator derived from those seeds and a per-task *salt* (:func:`derive_seed`), so
the same seed drives independent streams in different stages of a composition, and image
``i`` of a batch degraded with seed ``s`` equals that image alone degraded with seed ``s+i``.
The approximation's fresh randomness (denoising's noise and dead pixels) follows the same rule:
each image draws from its own stream (:meth:`Degradation.prediction_generators`), so what
image ``i`` sees never depends on its batch neighbours or on the batch size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

LEVELS: tuple[str, ...] = ("XS", "S", "M", "L", "XL")
DEFAULT_SEED = 2023  # the authors' per-object seed (spec 5.1)

Seed = int | Sequence[int]


# ----------------------------------------------------------------------------- checks / seeds
def check_image(x: torch.Tensor, what: str = "image") -> None:
    """Raise a clear ValueError unless ``x`` is a float tensor [B, 3, H, W]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{what} must have shape [B, 3, H, W], got {list(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{what} must be a float tensor in [0, 1], got dtype {x.dtype}")
    if x.shape[0] < 1 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{what} is empty: shape {list(x.shape)}")


def check_known_pixels(mask: torch.Tensor, what: str = "mask") -> None:
    """Refuse a mask [B, 1, h, w] (1 = known) that leaves some image no known pixel: the loss
    is then 0 for every latent and the start image would come back, with exit 0."""
    empty = (mask.detach().flatten(1) <= 0).all(1).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"{what}: the mask of image(s) {empty[:10]} has no known pixel (all zero): "
                         "there is nothing to restore from (white = known, black = missing)")


def check_seed(seed: Any) -> None:
    """Refuse a seed that is not a whole number or a sequence of them (NaN, 1.5, "3", True)."""
    items = [seed] if isinstance(seed, (int, np.integer, float, str, bool)) or seed is None else seed
    try:
        items = list(items)
    except TypeError:
        items = [seed]
    if not items or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in items):
        raise ValueError(f"seed must be a whole number or a list of them, got {seed!r}")


def per_image_seeds(seed: Seed, batch_size: int) -> list[int]:
    """Seeds for each image of a batch: ``s, s+1, ...`` for an int, or the sequence itself."""
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(batch_size)]
    seeds = [int(s) for s in seed]
    if len(seeds) != batch_size:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {batch_size} images")
    return seeds


def per_image_draw(draw, shape: Sequence[int], generators: list[torch.Generator],
                   device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``draw`` (torch.randn / torch.rand) of ``shape`` per image from that image's own
    generator, stacked to [B, *shape]: image ``i``'s values never depend on the others."""
    return torch.stack([draw(tuple(shape), generator=g, device=device, dtype=dtype)
                        for g in generators])


def derive_seed(seed: int, salt: str) -> int:
    """A 63-bit seed from (seed, salt), stable across runs and platforms (not ``hash()``)."""
    digest = hashlib.sha256(f"{salt}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


# ------------------------------------------------------------------------------------ 8 bits
def to_uint8(x: torch.Tensor, rounding: str = "truncate") -> torch.Tensor:
    """Float [0, 1] -> uint8, clamping first.

    The authors' "cycle to file" converts by truncation of x*255 (spec 5.1); a 1e-3 guard
    keeps the cycle idempotent (k/255*255 may land a hair below k in float32).
    """
    y = x.detach().clamp(0, 1) * 255
    if rounding == "truncate":
        y = torch.floor(y + 1e-3)
    elif rounding == "round":
        y = torch.round(y)
    else:
        raise ValueError(f"rounding must be 'truncate' or 'round', got {rounding!r}")
    return y.clamp(0, 255).to(torch.uint8)


def cycle_8bit(x: torch.Tensor, rounding: str = "truncate") -> torch.Tensor:
    """What saving to an 8-bit PNG and reading it back does: clamp and quantise."""
    return to_uint8(x, rounding).to(x.dtype) / 255


def to_pil(img: torch.Tensor, rounding: str = "truncate") -> Image.Image:
    """[3, H, W] float in [0, 1] -> 8-bit RGB PIL image, the one conversion rusir has.

    "truncate" (default) is the authors' cycle to file, which degraded targets go through;
    "round" (to nearest) is what rusir writes for people: restored images, figures, records.
    """
    arr = to_uint8(img, rounding).permute(1, 2, 0).cpu().numpy()  # [H, W, 3]
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")


def from_pil(im: Image.Image, like: torch.Tensor) -> torch.Tensor:
    """8-bit PIL image -> [3, H, W] float in [0, 1] with ``like``'s dtype and device."""
    arr = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()  # [H, W, 3]
    return torch.from_numpy(arr).permute(2, 0, 1).to(like.device, like.dtype) / 255


# --------------------------------------------------------------------------- surrogate clamp
class _SurrogateClamp(torch.autograd.Function):
    """Forward: clamp to [0, 1]. Backward: d/dx sigmoid(k (x - 1/2)) = k s (1 - s).

    The true noise acts on [0, 1] images, so the approximation clamps too, but a hard clamp
    would zero the gradient of every saturated pixel; the sigmoid slope never vanishes
    (spec 5.4: with k = 2 it is 0.5 at 1/2, 0.393 at 0 and 1, 0.090 at -1 and 2).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.k = k
        return x.clamp(0, 1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.k * (x - 0.5))
        return grad * ctx.k * s * (1 - s), None


def surrogate_clamp(x: torch.Tensor, k: float = 2.0) -> torch.Tensor:
    """Clamp to [0, 1] whose backward pass is the derivative of sigmoid(k (x - 1/2))."""
    return _SurrogateClamp.apply(x, k)


# ------------------------------------------------------------------------------- base class
class Degradation:
    """Base class of every degradation.

    To add a task, subclass and write :meth:`true_degradation` (may be non-differentiable;
    receives the clamped input and one seed per image) and :meth:`approximation`
    (differentiable). Optionally override :meth:`target_size` (default: unchanged size),
    :meth:`prepare` (per-size state such as masks) and :meth:`params` (for ``describe()``).
    Register it with :func:`rusir.degradations.register` so ``make(name, level)`` finds it.

    Class attributes: ``name`` (registry name), ``salt`` (independent random stream per task;
    defaults to ``name``), ``serialise`` (8-bit cycle the ground truth; only the idealised
    unclamped-Gaussian variant turns it off), ``LEVEL_PARAMS`` (level -> parameter, or None
    for level-free tasks).
    """

    name: str = "degradation"
    salt: str | None = None
    serialise: bool = True
    LEVEL_PARAMS: dict[str, Any] | None = None

    def __init__(self, level: str | None = None, seed: Seed = DEFAULT_SEED) -> None:
        if self.LEVEL_PARAMS is not None:
            if level not in self.LEVEL_PARAMS:
                raise ValueError(
                    f"unknown level {level!r} for {self.name}; valid: {list(self.LEVEL_PARAMS)}"
                )
        elif level is not None and level not in LEVELS:   # level-free: still a level's name
            raise ValueError(f"unknown level {level!r} for {self.name}; valid: {list(LEVELS)}")
        check_seed(seed)
        self.level = level
        self.seed = seed
        self._mask: torch.Tensor | None = None  # last mask at the target size, [B, 1, h, w]
        self._seen: tuple[int, int, int] | None = None  # (B, H, W) of the last input
        # the approximation's per-image streams: device -> (image seed, occurrence) -> stream
        self._pred_generators: dict[str, dict[tuple[int, int], torch.Generator]] = {}

    # -- the two methods a subclass writes -------------------------------------------------
    def true_degradation(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """True degradation of a clamped batch [B, 3, H, W]; one seed per image."""
        raise NotImplementedError

    def approximation(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable approximation of a batch [B, 3, H, W] (not clamped)."""
        raise NotImplementedError

    # -- optional hooks -----------------------------------------------------------------
    def prepare(self, height: int, width: int, seeds: list[int], device: torch.device) -> None:
        """Build per-size state (masks, per-image choices) for inputs of this size."""

    def target_shape(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the degraded image for an input of size (height, width)."""
        return height, width

    def target_size(self, input_size: int) -> int:
        """Side of the (square) target for a square input of side ``input_size``."""
        return self.target_shape(input_size, input_size)[0]

    def params(self) -> dict[str, Any]:
        """Task parameters recorded by ``describe()`` (overridden by subclasses)."""
        return {}

    # -- public API -----------------------------------------------------------------------
    @property
    def mask(self) -> torch.Tensor | None:
        """Known pixels (1 = known) [B, 1, h, w] at the target size, or None. A mask that leaves
        an image no known pixel is refused (ValueError) when first read: the loss would be 0 for
        every latent and the start image would come back as the restoration, with no error."""
        mask = self._mask
        if mask is not None and mask is not getattr(self, "_checked_mask", None):
            check_known_pixels(mask, self.name)
            self._checked_mask = mask      # each new mask is checked once (one device sync)
        return mask

    def seeds_for(self, batch_size: int) -> list[int]:
        return per_image_seeds(self.seed, batch_size)

    def stream_seed(self, seed: int) -> int:
        """Seed of this task's random stream for one image seed."""
        return derive_seed(seed, self.salt or self.name)

    def _prepare_for(self, x: torch.Tensor) -> list[int]:
        b, _, h, w = x.shape
        seeds = self.seeds_for(b)
        self.prepare(h, w, seeds, x.device)
        self._seen = (b, h, w)
        return seeds

    def degrade_ground_truth(self, x: torch.Tensor) -> torch.Tensor:
        """True degradation [B, 3, H, W] -> [B, 3, h, w], 8-bit cycled, seeded per image."""
        check_image(x)
        seeds = self._prepare_for(x)
        with torch.no_grad():
            y = self.true_degradation(x.detach().clamp(0, 1), seeds)
            return cycle_8bit(y) if self.serialise else y

    def redraw(self, x: torch.Tensor, draw: int = 0) -> torch.Tensor:
        """The true degradation of ``x`` with its random draws made afresh (draw ``draw``):
        what another capture of the same scene would give. What the method knows (the state
        ``prepare`` builds for the batch's seeds: an inpainting mask) is kept; what it does
        not (noise, dead pixels, the resampling filter) is drawn from seeds derived from each
        image's seed and ``draw``. `rusir.inversion.discrepancy` uses it to measure how well
        the truth itself could fit a target."""
        check_image(x)
        seeds = self._prepare_for(x)
        fresh = [derive_seed(s, f"redraw:{draw}") for s in seeds]
        with torch.no_grad():
            y = self.true_degradation(x.detach().clamp(0, 1), fresh)
            return cycle_8bit(y) if self.serialise else y

    def degrade_prediction(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable approximation [B, 3, H, W] -> [B, 3, h, w] used in the loss."""
        check_image(x)
        self._prepare_for(x)
        return self.approximation(x)

    def prediction_generators(self, batch_size: int, device: torch.device) -> list[torch.Generator]:
        """One seeded stream per image for the approximation's fresh randomness.

        Image ``i``'s stream is seeded by its own seed alone (``derive_seed(seed_i,
        "<salt>:prediction")``) and advances only with that image's draws, so image ``i`` of a
        batch sees exactly the noise it would see alone with seed ``seed_i`` (the rule of the
        true degradation). A seed repeated within one sequence gets one stream per occurrence,
        so each copy still behaves as if alone. For a single image the stream is the one a
        single shared stream used to give, so batch-1 results are unchanged.
        """
        streams = self._pred_generators.setdefault(str(device), {})
        seen: dict[int, int] = {}
        out = []
        for s in self.seeds_for(batch_size):
            key = (s, seen.get(s, 0))
            seen[s] = key[1] + 1
            if key not in streams:
                gen = torch.Generator(device=device)
                gen.manual_seed(derive_seed(s, f"{self.salt or self.name}:prediction"))
                streams[key] = gen
            out.append(streams[key])
        return out

    def describe(self) -> dict[str, Any]:
        """Name, level, seed and parameters, for benchmark records."""
        seed = self.seed if isinstance(self.seed, (int, np.integer)) else list(self.seed)
        return {"name": self.name, "level": self.level, "seed": seed, **self.params()}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.describe().items())
        return f"{type(self).__name__}({fields})"
