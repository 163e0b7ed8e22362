"""Which run works on which item: one claim file per item, so that runs sharing an output folder
split the work instead of each redoing every item, and never both write the same file. An item is a
benchmark item (rusir.engine.runner) or an output file of `rusir restore` (rusir.data.outputs).

    .tmp/claims/<key with / as __>     holds the claiming run's token `<host>-<pid>+<random>`

A run claims an item before running it (`claim_item`: the file is created with one atomic
`os.link`, so of two runs exactly one gets it) and releases it after (`release_claim`). A claim
whose process is dead (same host) is stale and taken over. The liveness of another host's process
cannot be checked: its claims are respected on a run's first pass and taken over on its last
(`force=True`), so a run killed on another host never blocks an item for good; two hosts may then
run the same item, and the store keeps the first to finish (rusir.engine.records.write_item).
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Optional, Union

__all__ = ["TMP", "CLAIMS", "owner_tag", "alive", "claim_token", "claim_item", "claim_items",
           "release_claim", "claim_holder", "clean_stale_claims"]

TMP = ".tmp"          # an output folder's work space: temporary files and claims
CLAIMS = "claims"     # under TMP

PathLike = Union[str, Path]


def owner_tag() -> str:
    """`<host>-<pid>`: names temporary files and claims so that stale ones can be told apart."""
    return f"{socket.gethostname()}-{os.getpid()}"


def alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a zombie does not)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether `pid` has exited but is not yet reaped by its parent (Linux; False elsewhere):
    e.g. a Ray worker that died a moment ago."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def claim_token() -> str:
    """`<host>-<pid>+<random>`: one run's claims (two runs in one process differ)."""
    return f"{owner_tag()}+{uuid.uuid4().hex[:12]}"


def _path(out: PathLike, key: str) -> Path:
    return Path(out) / TMP / CLAIMS / key.replace("/", "__")


def claim_holder(out: PathLike, key: str) -> Optional[str]:
    """The token of the run holding the item's claim, or None."""
    return _read(_path(out, key))


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _state(token: str) -> str:
    """'live' (a live process of this host), 'stale' (dead, or not a token) or 'foreign'."""
    owner, sep, _ = token.partition("+")
    host, _, pid = owner.rpartition("-")
    if not sep or not host or not pid.isdigit():
        return "stale"
    if host != socket.gethostname():
        return "foreign"
    return "live" if alive(int(pid)) else "stale"


def claim_item(out: PathLike, key: str, token: str, force: bool = False) -> bool:
    """Claim item `key` for the run `token`: True when it is (now) this run's. False when a live
    process of this host holds it, or (unless `force`) a process of another host."""
    path = _path(out, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        holder = claim_holder(out, key)
        if holder == token:
            return True
        if holder is not None:
            state = _state(holder)
            if state == "live" or (state == "foreign" and not force):
                return False
            path.unlink(missing_ok=True)   # stale (or forced): free it
        tmp = path.with_name(f".{token}+{path.name}")
        tmp.write_text(token)
        try:
            os.link(tmp, path)             # atomic, and refused when another run claimed first
            return True
        except FileExistsError:
            continue
        finally:
            tmp.unlink(missing_ok=True)
    return claim_holder(out, key) == token


def claim_items(out: PathLike, items, token: str, force: bool = False) -> tuple[list, list]:
    """Claim each of `items` (having a `.key`): (those now this run's, those another run holds)."""
    mine, held = [], []
    for item in items:
        (mine if claim_item(out, item.key, token, force=force) else held).append(item)
    return mine, held


def release_claim(out: PathLike, key: str, token: str) -> None:
    """Remove the item's claim if it is this run's."""
    if claim_holder(out, key) == token:
        _path(out, key).unlink(missing_ok=True)


def clean_stale_claims(out: PathLike) -> None:
    """Remove the claims of dead processes of this host (killed runs)."""
    folder = Path(out) / TMP / CLAIMS
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        # a claim holds its token; a claim being written is named `.<token>+<item>`
        holder = entry.name[1:] if entry.name.startswith(".") else _read(entry)
        if holder is not None and _state(holder) == "stale":
            entry.unlink(missing_ok=True)
