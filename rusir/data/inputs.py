"""Reading a user's files: only regular files are opened.

A named pipe called `x.png` blocks `open()` until some process writes to it (forever, usually),
`/dev/zero` never ends and a folder cannot be read: each is refused by its kind, in one line,
before it is opened. A link to a regular file is a regular file.
"""
from __future__ import annotations

import stat
from pathlib import Path
from typing import Union

__all__ = ["regular_file"]

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def regular_file(path: Union[str, Path], what: str = "file", error: type = ValueError) -> Path:
    """`path`, if it is a regular file (or a link to one). A missing path is a FileNotFoundError;
    any other kind raises `error` (a ValueError subclass) naming the kind and `what`."""
    path = Path(path)
    try:
        mode = path.stat().st_mode          # stat never opens, so it never blocks
    except FileNotFoundError:
        raise FileNotFoundError(f"no such {what}: {path}") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise error(f"{what} {path} is {kind}, not a regular file")
    return path
