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

    A plug-in that fails to import (or exits while importing), and two plug-ins with one name,
    are refused in one line naming them and their packages, rather than hiding the built-in
    names, ending the process or surfacing later as an unknown name."""
    if group not in GROUPS:
        raise ValueError(f"unknown plug-in group {group!r}; valid: {GROUPS}")
    found, seen = [], {}
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        dist = getattr(ep.dist, "name", "?")
        if ep.name.lower() in seen:     # which one wins would depend on the install order
            raise ValueError(f"plug-ins {seen[ep.name.lower()]} and {ep.value} (package {dist}) "
                             f"both register {ep.name!r} in {group}: uninstall or rename one")
        seen[ep.name.lower()] = f"{ep.value} (package {dist})"
        try:
            found.append((ep.name, ep.load()))
        except (Exception, SystemExit) as exc:  # a broken plug-in package: one line, its name and why
            raise ValueError(f"plug-in {ep.name!r} ({group}, package {dist}: {ep.value}) failed to "
                             f"load: {type(exc).__name__}: {exc}") from None
    return tuple(found)


def clash(group: str, name: str, builtin: str) -> ValueError:
    """The error for a plug-in that registers a name rusir has built in (`builtin` says what it
    is): refused rather than silently ignored or silently replacing the built-in."""
    return ValueError(f"plug-in {name!r} ({group}) has the name of {builtin}: the built-in is "
                      "kept; rename the plug-in in its package's entry points, or uninstall it")
