"""Which code made a record: rusir's version and, in a git checkout, its commit.

Why: a record folder outlives the code that wrote it. The committed baselines comparison mixed
RUSIR items restored before and after a change of the method (settling, docs/method.md "Round
3c") and nothing in the records told them apart. Every item record now carries `code`
({rusir, commit, dirty}); an installed wheel has no checkout, so its commit is None.
"""
from __future__ import annotations

import subprocess
from importlib import metadata
from functools import lru_cache
from pathlib import Path
from typing import Optional

__all__ = ["code_version"]

PACKAGE = Path(__file__).resolve().parents[1]          # rusir/


def _git(*args: str) -> Optional[str]:
    """`git -C <package> args` output, or None when git or a checkout is not there."""
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE), *args], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def code_version() -> dict:
    """{"rusir": the installed version (None: not installed), "commit": HEAD of the checkout the
    package runs from (None: not one), "dirty": whether tracked files under rusir/ differ from
    it (None: unknown)}. Computed once per process: a run does not change its own code."""
    try:
        version: Optional[str] = metadata.version("rusir")      # the installed distribution's
    except metadata.PackageNotFoundError:                        # run from a bare source tree
        version = None
    top = _git("rev-parse", "--show-toplevel")
    if top is None or not (PACKAGE.parent.resolve() == Path(top).resolve()):
        return {"rusir": version, "commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no", "--", str(PACKAGE))
    return {"rusir": version, "commit": _git("rev-parse", "HEAD"),
            "dirty": None if status is None else bool(status)}
