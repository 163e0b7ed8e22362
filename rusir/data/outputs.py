"""Writing a user's files: every file rusir writes for a user goes through `write_file`.

Three guarantees, each against a way of losing data:

* atomic: the file is written as a temporary sibling and moved into place with one rename, so a
  crash or a full disk mid-write leaves the old file (or none), never half of one;
* no links: an output name that is a symbolic link, live or dangling, is refused (with
  `overwrite` too), and so is a sub-folder of the output folder on the way to it that is a link
  or not a folder (`folder=`): a file outside the output folder is never written through a
  link, and none is created where a dangling link points;
* one writer: `OutputClaims` claims a run's outputs before its compute (rusir.data.claims, the
  benchmark's per-item claims), so two runs into one folder cannot both write the same file: the
  second is refused, naming the output. Without `overwrite` the file is put in place only if its
  name is still free (a hard link, which never replaces), so a file that appeared meanwhile is
  kept.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Union

from . import claims

__all__ = ["OutputError", "check_output", "write_file", "write_text", "OutputClaims"]

PathLike = Union[str, Path]


class OutputError(OSError):
    """An output that cannot be written safely: a link, a folder, an existing file, or one that
    another run is writing (its message is one line naming the output)."""


def check_output(path: PathLike, overwrite: bool = False, folder: PathLike | None = None) -> Path:
    """Refuse `path` as an output: a symbolic link (live or dangling), a folder, anything but a
    regular file, or (unless `overwrite`) an existing file; given the output `folder` it lies
    in, also a sub-folder between the two that is a link or not a folder."""
    path = Path(path)
    if folder is not None:
        _check_subfolders(Path(folder), path)
    if path.is_symlink():
        raise OutputError(f"output {path} is a symbolic link: refusing to write through it "
                          "(remove the link or choose another output folder)")
    if path.is_dir():
        raise OutputError(f"output {path} is a folder; it cannot be written")
    if path.exists() and not path.is_file():
        raise OutputError(f"output {path} exists and is not a regular file; it cannot be written")
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} already exists: pass --overwrite (overwrite=True) to "
                          "replace it, or choose another output folder")
    return path


def _check_subfolders(folder: Path, path: Path) -> None:
    """Each folder from `folder` (excluded: the user named it) down to `path`'s parent is a real
    folder or does not exist yet: never a link (live or dangling) nor a file."""
    try:
        parts = path.parent.relative_to(folder).parts
    except ValueError:
        return
    current = folder
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise OutputError(f"output {path}: {current} is a symbolic link: refusing to write "
                              "through it (remove the link or choose another output folder)")
        if current.exists() and not current.is_dir():
            raise OutputError(f"output {path}: {current} exists and is not a folder")


def write_file(path: PathLike, write: Callable[[Path], object], overwrite: bool = True,
               folder: PathLike | None = None) -> Path:
    """Write one output atomically: `write(tmp)` writes a temporary sibling of `path` (same
    suffix, so writers that pick the format by extension still do), which then replaces `path`.
    `check_output` refuses a link, a folder, or (unless `overwrite`) an existing file; without
    `overwrite` an existing file is never replaced, even one created while writing. Parent folders
    are created; given the output `folder`, none of them may be a link (`check_output`).
    Returns `path`."""
    path = check_output(path, overwrite, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        check_output(path, True, folder)       # a link put there while writing
        if overwrite:
            os.replace(tmp, path)          # replaces the name itself, never a link's target
        else:
            _link_if_free(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: PathLike, text: str, overwrite: bool = True,
               folder: PathLike | None = None) -> Path:
    """`write_file` for a text file."""
    return write_file(path, lambda tmp: tmp.write_text(text), overwrite, folder)


def _link_if_free(tmp: Path, path: Path) -> None:
    """Put `tmp` at `path` unless something (a file, a dangling link) has that name by now."""
    try:
        os.link(tmp, path)                 # atomic; refused when the name exists in any form
    except FileExistsError:
        raise OutputError(f"output {path} appeared while it was being written (another run?): "
                          "it was kept, this run's version discarded") from None
    except OSError:                        # a file system without hard links
        check_output(path, overwrite=False)
        os.replace(tmp, path)


def _key(folder: Path, path: Path) -> str:
    """An output's claim key: its path inside `folder` (`x.faces/face_0.png`), else its name."""
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.name


class OutputClaims:
    """One run's claims on the outputs it will write into `folder` (`with OutputClaims(...)`).

    Claimed before the compute, each output is then checked with `check_output`, so a file that
    a run finished meanwhile is refused too; the claims are released when the block ends (killed
    runs' claims are stale and taken over). Raises OutputError naming the first output that
    another live run holds."""

    def __init__(self, folder: PathLike, outputs: Iterable[PathLike], overwrite: bool = False):
        self.folder = Path(folder)
        self.paths = [Path(p) for p in outputs]
        self.names = [_key(self.folder, p) for p in self.paths]
        self.overwrite = overwrite
        self.token = claims.claim_token()
        self._held: list[str] = []
        self._made_folder = False

    def __enter__(self) -> "OutputClaims":
        self._made_folder = not self.folder.exists()
        try:
            for name, path in zip(self.names, self.paths):
                if not claims.claim_item(self.folder, name, self.token):
                    raise OutputError(f"output {path} is being written by another run "
                                      f"({claims.claim_holder(self.folder, name)}): wait for it to "
                                      "finish or choose another output folder")
                self._held.append(name)
                check_output(path, self.overwrite, self.folder)
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Give back every claim this run holds; leave no empty work folder behind (nor the output
        folder, when the claims created it and nothing was written)."""
        for name in self._held:
            claims.release_claim(self.folder, name, self.token)
        self._held.clear()
        empty = [self.folder / claims.TMP / claims.CLAIMS, self.folder / claims.TMP]
        for folder in empty + ([self.folder] if self._made_folder else []):
            try:
                folder.rmdir()
            except OSError:
                pass
