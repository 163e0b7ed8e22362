"""Hostile model files for tests/test_hostile_models.py: official-format pickles written by hand
(the official pickler's layout for records, plus raw opcodes), storage blobs, and a guard that
loads them in a forked child under memory and CPU limits, so that a loader that hangs or
allocates terabytes fails its test instead of exhausting the machine."""
from __future__ import annotations

import io
import json
import os
import pickle
import resource
import select
import signal
import struct
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from rusir.model.pkl import EasyDict, PersistentRecord

RECONSTRUCT = b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n"


class Raw:
    """Opcodes written verbatim where this object appears (they must push exactly one object)."""

    def __init__(self, ops: bytes):
        self.ops = ops


class Persistent:
    """A persistent object with a hand-made `meta` (version, class_name, state as given)."""

    def __init__(self, meta: dict):
        self.meta = meta


class Call:
    """`module.name(*args)` as GLOBAL + args + REDUCE."""

    def __init__(self, module: str, name: str, *args: Any):
        self.ops, self.args = f"c{module}\n{name}\n".encode(), args


class Build:
    """`obj` followed by BUILD with `state` (what a pickle does to restore an object's state)."""

    def __init__(self, obj: Any, state: Any):
        self.obj, self.state = obj, state


class _Writer(pickle._Pickler):
    """The official pickler's output for records (protocol 3, as tiny32.pkl), plus the above."""

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if not isinstance(obj, (PersistentRecord, Persistent, EasyDict, Raw, Call, Build)):
            return super().save(obj, save_persistent_id)
        x = self.memo.get(id(obj))
        if x is not None:
            self.write(self.get(x[0]))
            return
        if isinstance(obj, Raw):
            self.write(obj.ops)
        elif isinstance(obj, Call):
            self.write(obj.ops)
            self.save(obj.args)
            self.write(pickle.REDUCE)
        elif isinstance(obj, Build):
            self.save(obj.obj)
            self.save(obj.state)
            self.write(pickle.BUILD)
        elif isinstance(obj, EasyDict):
            self.write(b"cdnnlib.util\nEasyDict\n" + pickle.EMPTY_TUPLE + pickle.NEWOBJ)
            self.memoize(obj)
            self._batch_setitems(iter(obj.items()))
        else:
            meta = obj.meta if isinstance(obj, Persistent) else dict(
                type="class", version=6, module_src="# source omitted\n",
                class_name=obj.class_name, state=obj.state)
            self.write(RECONSTRUCT)
            self.save(meta)
            self.write(pickle.TUPLE1 + pickle.REDUCE)
            self.memoize(obj)


def dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    _Writer(buf, protocol=3).dump(obj)
    return buf.getvalue()


def write(path: Path, obj: Any) -> Path:
    path.write_bytes(dumps(obj))
    return path


def _str(text: str) -> bytes:
    data = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def put(i: int) -> bytes:
    return pickle.LONG_BINPUT + struct.pack("<I", i)


def get(i: int) -> bytes:
    return pickle.LONG_BINGET + struct.pack("<I", i)


def laughs(depth: int, memo: int = 1_000_000) -> Raw:
    """((((), ()), ((), ())), ...): `depth` levels, each two references to the level below: five
    bytes per level in a file, 2**depth leaves for anything that walks it as a tree (repr, str,
    hash, ==)."""
    ops = [pickle.EMPTY_TUPLE + put(memo)]
    for i in range(depth):
        ops.append(pickle.POP + get(memo + i) + get(memo + i) + pickle.TUPLE2 + put(memo + i + 1))
    return Raw(b"".join(ops))


def module_chain(depth: int, memo: int = 2_000_000) -> Raw:
    """A chain of `depth` persistent modules, each the only child of the next, written bottom-up
    (no recursion in the writer, as a hand-made file would be)."""
    def record(modules: bytes) -> bytes:
        return (RECONSTRUCT + pickle.EMPTY_DICT + pickle.MARK
                + _str("type") + _str("class") + _str("version") + pickle.BININT1 + b"\x06"
                + _str("module_src") + _str("") + _str("class_name") + _str("FullyConnectedLayer")
                + _str("state") + pickle.EMPTY_DICT + pickle.MARK + _str("_modules") + modules
                + pickle.SETITEMS + pickle.SETITEMS + pickle.TUPLE1 + pickle.REDUCE)
    ops = [record(pickle.EMPTY_DICT) + put(memo)]
    for i in range(1, depth):
        ops.append(pickle.POP + record(pickle.EMPTY_DICT + _str("x") + get(memo + i - 1) + pickle.SETITEM)
                   + put(memo + i))
    return Raw(b"".join(ops))


def module_dag(depth: int, width: int) -> Persistent:
    """`depth` levels of modules whose `width` children are all the same module: width**depth
    paths through depth + 1 records."""
    node = Persistent(dict(type="class", version=6, module_src="", class_name="FullyConnectedLayer",
                           state={"_parameters": {"bias": torch.zeros(1)}}))
    for _ in range(depth):
        node = Persistent(dict(type="class", version=6, module_src="", class_name="MappingNetwork",
                               state={"_modules": {f"c{i}": node for i in range(width)}}))
    return node


class _Pid(pickle.Pickler):
    def __init__(self, file: Any, pid: tuple):
        super().__init__(file, protocol=2)
        self.pid = pid

    def persistent_id(self, obj: Any) -> Any:
        return self.pid if obj == "the storage" else None


def storage_blob(numel: int, data: bytes, key: str = "94112004644000") -> bytes:
    """A legacy torch.save of one FloatStorage (spec 1.4) declaring `numel` elements."""
    out = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001,
                {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(obj, out, protocol=2)
    _Pid(out, ("storage", torch.FloatStorage, key, "cpu", numel, None)).dump("the storage")
    pickle.dump([key], out, protocol=2)
    return out.getvalue() + struct.pack("<q", numel) + data


def zip_storage_blob(nbytes: int) -> bytes:
    """torch's zip format for one storage of `nbytes` zero bytes, its data entry deflated: about
    1000x smaller than what it expands to."""
    small = io.BytesIO()
    torch.save(torch.zeros(1).untyped_storage(), small)  # 4 bytes: data.pkl says BININT1 4
    src = zipfile.ZipFile(io.BytesIO(small.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename.endswith("/data/0"):
                entry = zipfile.ZipInfo(info.filename)
                entry.compress_type = zipfile.ZIP_DEFLATED
                with dst.open(entry, "w", force_zip64=True) as f:
                    chunk = bytes(1 << 20)
                    for start in range(0, nbytes, len(chunk)):
                        f.write(chunk[: nbytes - start])
            elif info.filename.endswith("/data.pkl"):
                old = pickle.BININT1 + bytes([4]) + pickle.TUPLE
                data = src.read(info)
                assert data.count(old) == 1
                dst.writestr(info, data.replace(old, pickle.BININT + struct.pack("<i", nbytes) + pickle.TUPLE))
            else:
                dst.writestr(info, src.read(info))
    return out.getvalue()


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def guarded(fn: Callable[[], Any], mem: int = 2 << 30, cpu_s: int = 60, wall_s: float = 1800) -> dict:
    """Run fn() in a forked child allowed `mem` bytes of address space beyond what it starts
    with and `cpu_s` CPU seconds (what bounds a runaway computation, however busy the machine);
    `wall_s` only ends a child that blocks without computing. Returns {"raised": None, "value": fn()} (JSON-able values) or
    {"raised": class name, "mro": [class names], "message": str}, or {"raised": "killed",
    "signal": n} / {"raised": "timeout"} when the child died or had to be killed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into the caller (pytest)
        try:
            os.close(r)
            torch.set_num_threads(1)  # no OpenMP pool after fork (as torch's DataLoader workers)
            limit = _vm_bytes() + mem
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
            try:
                out = {"raised": None, "value": fn()}
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                out = {"raised": type(exc).__name__, "mro": [c.__name__ for c in type(exc).__mro__],
                       "message": str(exc)[:20000]}
            data = json.dumps(out, default=str).encode()
            while data:
                data = data[os.write(w, data):]
        finally:
            os._exit(0)
    os.close(w)
    chunks, deadline = [], time.monotonic() + wall_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return {"raised": "timeout"}
            ready, _, _ = select.select([r], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return {"raised": "killed", "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}
    return json.loads(b"".join(chunks))
