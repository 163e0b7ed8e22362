"""Plug-ins: degradations, methods and generator families from other installed packages.

A package extends rusir by declaring entry points in its own pyproject.toml:

    [project.entry-points."rusir.degradations"]
    myblur = "mypkg.blur:MyBlur"          # a factory(level=..., seed=..., **kw) -> Degradation
    [project.entry-points."rusir.methods"]
    mymethod = "mypkg.method:restore"     # restore's call shape, returns a RestoreResult
    [project.entry-points."rusir.families"]
    mygan = "mypkg.family:FAMILY"         # a rusir.model.family.Family

The registries (`degradations.make`, `baselines.get_method`, `load_generator`) ask here the
first time a name or a file is not one of theirs, so a plug-in works wherever rusir runs in a
fresh process: the CLI, the benchmark, sweeps and Ray workers, where no user code could call
`register` first. Loading is lazy (nothing is imported until a registry needs it) and happens
once per process. This module sits at the bottom of the layers: it imports nothing of rusir.
"""
from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

GROUPS = ("rusir.degradations", "rusir.methods", "rusir.families")


@lru_cache(maxsize=None)
def load(group: str) -> tuple[tuple[str, object], ...]:
    """(name, object) of every entry point of `group`, imported once per process.

    A plug-in that fails to import is refused in one line naming it and its package, rather
    than hiding the built-in names or surfacing later as an unknown name."""
    if group not in GROUPS:
        raise ValueError(f"unknown plug-in group {group!r}; valid: {GROUPS}")
    found = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            found.append((ep.name, ep.load()))
        except Exception as exc:  # a broken plug-in package: one line, its name and why
            dist = getattr(ep.dist, "name", "?")
            raise ValueError(f"plug-in {ep.name!r} ({group}, package {dist}: {ep.value}) failed to "
                             f"load: {type(exc).__name__}: {exc}") from None
    return tuple(found)
