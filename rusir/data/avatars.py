"""Offline training domain: random cartoon faces rendered with ``py-avataaars``.

Every image is a pure function of an integer seed. The attributes are drawn from
``random.Random(seed)``:

* every enum-valued argument of ``py_avataaars.PyAvataaar`` (skin, hair style and
  colour, facial hair and its colour, hat colour, eyes, eyebrows, mouth, nose,
  glasses, clothes type, clothes colour, clothes graphic...), found *dynamically* from
  the constructor's signature and the enum's members, so attributes or members added
  by a future release of the package are covered too. ``style`` is fixed to the
  non-circle style and the package's ``background_color`` (only drawn in the circle
  style) is replaced by our own background;
* a background: a solid colour or a vertical / diagonal two-colour gradient.

The avatar is rendered at ``RENDER_SIZE`` pixels straight from a cropped SVG view box
(head and shoulders, face centred) and downsampled to the requested size with Lanczos.

Seed ranges (documented contract, relied upon by the tests and the training script):

* training images use seeds ``TRAIN_SEEDS = range(0, 10**9)``, starting at 0;
* held-out ground truth uses seeds from ``HELDOUT_SEED_START = 2_000_000_000``
  (``HELDOUT_SEEDS = range(2_000_000_000, 2**31 - 1)``); the 64 PNGs shipped in
  ``rusir/assets/heldout/`` are seeds ``2_000_000_000 + i``.

``py-avataaars`` and ``cairosvg`` are only needed to *render*
(``pip install rusir[train]``); the shipped held-out set is read without them.
"""

from __future__ import annotations

import contextlib
import colorsys
import enum
import inspect
import io
import random
import re
from typing import Any

import numpy as np
from PIL import Image

from ..validation import side

TRAIN_SEED_START = 0
TRAIN_SEEDS = range(TRAIN_SEED_START, 10**9)
HELDOUT_SEED_START = 2_000_000_000
HELDOUT_SEEDS = range(HELDOUT_SEED_START, 2**31 - 1)

RENDER_SIZE = 256
# Square crop of the avataaars SVG canvas (user units; the canvas is 264 x 280 and the
# head spans x 66..198, y 36..194 before hair/hats). Centred on the face, it keeps the
# hair and hats on top and a little of the shoulders below.
CROP_BOX = (22.0, 8.0, 220.0)  # x0, y0, side
# Five facial landmarks in SVG canvas units, read off py-avataaars' templates (every avatar
# shares the head): the face group sits at translate(76, 82); eyes at (30, 22) and (82, 22) in
# the eyes group, translate(0, 8); the default mouth runs from (40, 15) to (68, 15) in the mouth
# group, translate(2, 52); the nose's centre is (28, 12) in the nose group, translate(28, 40).
# Order: the eye on the image's left, the other eye, nose tip, the mouth corner on the image's
# left, the other corner (YuNet's order for an upright, unmirrored face).
LANDMARKS_CANVAS = ((106.0, 112.0), (158.0, 112.0), (132.0, 134.0), (118.0, 149.0), (146.0, 149.0))
# Probability of the "none" member (DEFAULT) for attributes where uniform sampling
# would almost always add an occluder (6 of 7 accessories are glasses, 5 of 6 facial
# hair types are beards): most faces get none.
NONE_PROBABILITY = {"accessories_type": 0.6, "facial_hair_type": 0.6}
# Arguments that are not drawn at random: the style is fixed to the non-circle one and
# the package's background colour is replaced by our own background.
FIXED_ARGUMENTS = ("style", "background_color")

_INSTALL_HINT = (
    "rendering the avatar domain needs the optional training extra: "
    "pip install 'rusir[train]'  (installs py-avataaars and cairosvg)"
)


def import_backend():
    """(py_avataaars, cairosvg), the optional rendering backend; ImportError with the install hint
    when it is missing (so callers can fail early, before any work)."""
    try:  # optional (the `train` extra): loaded on use
        import py_avataaars
        import cairosvg
    except ImportError as exc:  # also OSError from a missing libcairo, see below
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    except OSError as exc:  # cairocffi could not find the cairo shared library
        raise ImportError(f"{_INSTALL_HINT}; the cairo library failed to load ({exc})") from exc
    return py_avataaars, cairosvg


def split_of_seed(seed: int) -> str | None:
    """``"train"``, ``"heldout"`` or ``None`` (a seed in neither documented range)."""
    if seed in TRAIN_SEEDS:
        return "train"
    if seed in HELDOUT_SEEDS:
        return "heldout"
    return None


def _enum_arguments(pa) -> list[tuple[str, type[enum.Enum], enum.Enum]]:
    """(name, enum class, default) of every enum argument of ``PyAvataaar``, in order."""
    out = []
    for name, p in inspect.signature(pa.PyAvataaar.__init__).parameters.items():
        if isinstance(p.default, enum.Enum):
            out.append((name, type(p.default), p.default))
    return out


def sample_attributes(seed: int) -> dict[str, Any]:
    """The random attributes of ``seed``: enum members by argument name, plus
    ``"background"`` (a dict). Deterministic; needs ``py_avataaars``."""
    pa, _ = import_backend()
    rng = random.Random(seed)
    attrs: dict[str, Any] = {}
    for name, cls, default in _enum_arguments(pa):
        members = list(cls)
        if name in FIXED_ARGUMENTS:
            continue
        p_none = NONE_PROBABILITY.get(name)
        none = cls.__members__.get("DEFAULT")
        if p_none is not None and none is not None:
            if rng.random() < p_none:
                attrs[name] = none
                continue
            members = [m for m in members if m is not none]
        attrs[name] = rng.choice(members)
    attrs["background"] = _sample_background(rng)
    return attrs


def _random_colour(rng: random.Random) -> tuple[int, int, int]:
    h = rng.random()
    s = rng.uniform(0.0, 0.85)
    v = rng.uniform(0.3, 1.0)
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def _sample_background(rng: random.Random) -> dict[str, Any]:
    kind = rng.choices(["solid", "vertical", "diagonal"], weights=[0.4, 0.3, 0.3])[0]
    bg = {"kind": kind, "colours": [_random_colour(rng)]}
    if kind != "solid":
        bg["colours"].append(_random_colour(rng))
    if kind == "diagonal":
        bg["direction"] = rng.choice(["down-right", "down-left"])
    return bg


def _background(bg: dict[str, Any], size: int) -> Image.Image:
    c0 = np.asarray(bg["colours"][0], dtype=np.float64)
    if bg["kind"] == "solid":
        return Image.new("RGB", (size, size), tuple(int(v) for v in c0))
    c1 = np.asarray(bg["colours"][1], dtype=np.float64)
    u = (np.arange(size, dtype=np.float64) + 0.5) / size
    yy, xx = np.meshgrid(u, u, indexing="ij")
    if bg["kind"] == "vertical":
        t = yy
    elif bg.get("direction") == "down-left":
        t = (yy + (1.0 - xx)) / 2.0
    else:
        t = (yy + xx) / 2.0
    img = c0 * (1.0 - t[..., None]) + c1 * t[..., None]
    return Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8), "RGB")


_SVG_HEADER = re.compile(r'width="280px" height="280px" viewBox="[^"]*"')


def _avatar_rgba(attrs: dict[str, Any], render_size: int) -> Image.Image:
    pa, cairosvg = import_backend()
    kwargs = {k: v for k, v in attrs.items() if k != "background"}
    kwargs["style"] = pa.AvatarStyle.TRANSPARENT
    avatar = pa.PyAvataaar(**kwargs)
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints id warnings
        svg = avatar.render_svg()
    x0, y0, side = CROP_BOX
    header = f'width="{render_size}px" height="{render_size}px" viewBox="{x0} {y0} {side} {side}"'
    svg, count = _SVG_HEADER.subn(header, svg, count=1)
    if count != 1:
        raise RuntimeError("unexpected py-avataaars SVG header; cannot crop the avatar")
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"))
    img = Image.open(io.BytesIO(png))
    img.load()
    return img.convert("RGBA")


def render(seed: int, size: int = 64, render_size: int = RENDER_SIZE) -> Image.Image:
    """Render the avatar of ``seed`` as an RGB ``PIL.Image`` of ``size`` x ``size``.

    Rendered at ``render_size`` pixels (antialiased by cairo) and downsampled with
    Lanczos. Raises ``ImportError`` with an install hint if the renderer is missing.
    """
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    size, render_size = side(size, "size"), side(render_size, "render_size")
    attrs = sample_attributes(seed)
    fg = _avatar_rgba(attrs, render_size)
    img = _background(attrs["background"], render_size).convert("RGBA")
    img.alpha_composite(fg)
    img = img.convert("RGB")
    if size != render_size:
        img = img.resize((size, size), Image.LANCZOS)
    return img


def landmarks(size: int = 64) -> np.ndarray:
    """The five landmarks of every avatar in a ``size`` x ``size`` render, [5, 2] pixels (x, y),
    with (0, 0) the top-left corner of the top-left pixel. Mouth types other than the default
    put their corners within a few canvas units of these (the eyes and nose never move)."""
    x0, y0, side = CROP_BOX
    canvas = np.asarray(LANDMARKS_CANVAS, dtype=np.float64)
    return (canvas - (x0, y0)) * (size / side)


def describe(seed: int) -> dict[str, Any]:
    """Human-readable attributes of ``seed`` (member names instead of enum objects)."""
    return {
        k: (v.name if isinstance(v, enum.Enum) else v) for k, v in sample_attributes(seed).items()
    }
