"""Build degradations by name (or composition initials) and level.

``make("denoising", "M", seed=0)`` builds a task; ``make("UNAP", "M")`` a composition of
upsampling (U), denoising (N), deartifacting (A) and inpainting (P) in that fixed order, and
grayscale (G, after them: ``make("UG")`` is a black-and-white photo's upsampling);
``register("myblur", MyBlur)`` adds a user's class (any callable
``factory(level=..., seed=..., **kwargs) -> Degradation``) in this process; an installed
package's ``rusir.degradations`` entry points are registered the first time a name is looked up
(rusir.plugins), so they work from the CLI, the benchmark and Ray workers too.
"""

from __future__ import annotations

import inspect

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .. import plugins
from ..validation import MAX_BATCH, choice, side, whole
from .base import DEFAULT_SEED, LEVELS, Degradation, Seed
from .blur import GaussianBlur
from .composition import COMPOSITIONS, ORDER, Composition
from .deartifacting import Deartifacting
from .denoising import Denoising
from .grayscale import Grayscale
from .inpainting import Inpainting
from .upsampling import Upsampling
from .variants import (AveragePoolUpsampling, ClampedGaussianNoise, GaussianNoise, Identity,
                       NearestUpsampling, Uncropping)

TASKS: tuple[str, ...] = ("upsampling", "denoising", "deartifacting", "inpainting")  # the paper's
INITIALS: dict[str, str] = dict(zip(ORDER, TASKS + ("grayscale",)))

Factory = Callable[..., Degradation]
_REGISTRY: dict[str, Factory] = {}


def register(name: str, factory: Factory, *, overwrite: bool = False) -> None:
    """Make ``make(name, level, ...)`` build ``factory(level=level, seed=seed, **kwargs)``."""
    key = name.lower()
    if not key or not callable(factory):
        raise ValueError("register needs a non-empty name and a callable factory")
    if key.upper() in INITIALS or _is_initials(key.upper()):
        raise ValueError(f"{name!r} is reserved for task initials / compositions")
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"{name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[key] = factory


def _load_plugins() -> None:
    """Registers the installed packages' `rusir.degradations` entry points (once; a name already
    registered by rusir, or task initials, is refused: `plugins.clash`)."""
    for name, factory in plugins.load("rusir.degradations"):
        key = name.lower()
        if _REGISTRY.get(key) is factory:
            continue                    # registered by an earlier look-up
        if key in _REGISTRY:
            raise plugins.clash("rusir.degradations", name, f"the built-in task {key!r}")
        if key.upper() in INITIALS or _is_initials(key.upper()):
            raise plugins.clash("rusir.degradations", name, "task initials or a composition")
        register(name, factory)


def available() -> list[str]:
    """Registered names (plug-ins included), then the composition initials."""
    _load_plugins()
    return sorted(_REGISTRY) + list(ORDER) + list(COMPOSITIONS)


def _is_initials(name: str) -> bool:
    return len(name) >= 1 and all(c in ORDER for c in name) and name == "".join(
        c for c in ORDER if c in name)


def canonical_task(name: str) -> str:
    """The one spelling of a task everywhere (benchmark keys, tables, records): a registered
    name in lower case (`U` and `Upsampling` -> `upsampling`), or a composition's upper-case
    initials in the fixed order (`unap` -> `UNAP`)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a task name must be a non-empty string, got {name!r}")
    name = name.strip()
    if name.upper() in INITIALS:
        return INITIALS[name.upper()]
    if name.lower() not in _REGISTRY and not _is_initials(name.upper()):
        _load_plugins()
    if name.lower() in _REGISTRY:
        return name.lower()
    if len(name) > 1 and _is_initials(name.upper()):
        return name.upper()
    raise ValueError(f"unknown task {name!r}; valid: {available()}")


def task_names(task: str) -> set[str]:
    """The single tasks a task or composition is made of (`UN` -> {upsampling, denoising};
    `upsampling` -> {upsampling}; a registered custom task -> itself)."""
    task = canonical_task(task)
    return {INITIALS[c] for c in task} if is_composition(task) else {task}


def is_composition(task: str) -> bool:
    """True for a composition's initials (`UNAP`), False for a single task."""
    return len(task) > 1 and _is_initials(task.upper()) and task.upper() not in INITIALS


def with_grayscale(task: str) -> str:
    """The task as a black-and-white photo's: its initials with G added (`upsampling` -> `UG`,
    `UNAP` -> `UNAPG`, `identity` -> `grayscale`); a task already with G is returned as it is.
    A registered custom task has no initial to compose by: refused in one line."""
    task = canonical_task(task)
    if task == "identity":
        return "grayscale"
    initials = task if is_composition(task) else {v: k for k, v in INITIALS.items()}.get(task)
    if initials is None:
        raise ValueError(f"task {task!r} does not compose with grayscale (only the tasks "
                         f"{''.join(ORDER)} and their initials do): give a colour image, or "
                         "compose it yourself with rusir.degradations.Composition")
    return canonical_task(initials if "G" in initials else initials + "G")


def _check_options(name: str, factory: Any, kwargs: dict) -> None:
    """An option the task does not take (`make("grayscale", weights=...)`): one ValueError
    naming it, rather than the constructor's TypeError."""
    try:
        inspect.signature(factory).bind(level=None, seed=0, **kwargs)
    except TypeError as exc:
        raise ValueError(f"{name}: {exc}") from None
    except ValueError:      # a factory without a signature (a C callable): not checked
        pass


def make(name: str, level: str | None = "M", seed: Seed = DEFAULT_SEED,
         resolution: int | None = None, batch_size: int | None = None,
         **kwargs: Any) -> Degradation:
    """Build a degradation by name or initials at ``level`` (XS, S, M, L, XL).

    ``resolution`` builds the size-dependent state (masks, filter choices) eagerly for a
    square input of that side and ``batch_size`` images (default: the number of seeds given,
    or 1); otherwise it is built at first use.
    """
    if not isinstance(name, str):
        raise ValueError(f"degradation name must be a string, got {type(name).__name__}")
    key = name.lower()
    if key not in _REGISTRY and not _is_initials(name.upper()):
        _load_plugins()
    if key in _REGISTRY:
        _check_options(key, _REGISTRY[key], kwargs)
        deg = _REGISTRY[key](level=level, seed=seed, **kwargs)
        if not isinstance(deg, Degradation):
            raise ValueError(f"degradation {name!r} made a {type(deg).__name__}, not a "
                             "rusir.degradations.Degradation (a plug-in's factory must return one)")
        deg.name = key
    elif _is_initials(name.upper()):
        initials = name.upper()
        choice(level, "level", LEVELS)
        if kwargs and len(initials) > 1:
            raise ValueError(f"compositions take no task options, got {sorted(kwargs)}")
        stages = [_REGISTRY[INITIALS[c]](level=level, seed=seed, **kwargs) for c in initials]
        deg = stages[0] if len(stages) == 1 else Composition(stages, initials, level, seed)
    else:
        raise ValueError(f"unknown degradation {name!r}; valid: {available()}")
    if resolution is not None:
        resolution = side(resolution, "resolution")
        n = batch_size or (1 if isinstance(seed, (int, np.integer)) else len(list(seed)))
        n = whole(n, "batch_size", 1, MAX_BATCH, "MAX_BATCH")
        deg.prepare(resolution, resolution, deg.seeds_for(n), torch.device("cpu"))
    return deg


for _cls in (Upsampling, Denoising, Deartifacting, Inpainting, AveragePoolUpsampling,
             NearestUpsampling, GaussianNoise, ClampedGaussianNoise, Uncropping, Identity,
             GaussianBlur, Grayscale):
    register(_cls.name, _cls)
