"""A bounded, exec-free unpickler for official StyleGAN2-ADA and StyleGAN3 network pickles
(rusir.model.pkl).

Official pickles rebuild every network by executing Python source embedded in the file, so a plain
`pickle.load` is arbitrary code execution. This unpickler resolves only the globals such files
legitimately reference (../shared/spec/stylegan2-ada-format.md 1.5, stylegan3-format.md 1.5;
StyleGAN3 adds numpy arrays: the layers keep their sizes as int64 arrays), turns each persistent
module into a plain record (class name + saved state), and stays bounded in time and memory on a
hostile file: it counts opcodes and nesting, only ever hashes plain atoms, builds no objects
but the allow-listed ones, and reads each storage from the exact bytes the file holds.

It is over 400 lines because it is one guard: the allow-list, the opcode handlers it overrides
and the storage reader must be read together to see that nothing slips between them.
"""
from __future__ import annotations

import io
import mmap
import os
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from .safety import ModelFileError, as_int, clip, describe, view_problem

MAX_FILE_BYTES = 4 << 30  # ~10x the largest official file (ffhq.pkl, ~380 MB)
MAX_OPS = 2_000_000        # pickle opcodes per file (tiny32/tiny64 fixtures, G + D + G_ema: 24k/31k)
MAX_MARK_DEPTH = 200       # nested MARKs (fixtures: 16)
MAX_TENSOR_DIMS = 8


class NetworkPickleError(ModelFileError):
    """The file is not a (complete, supported, sane) StyleGAN2-ADA / StyleGAN3 network pickle."""


class UnsafePickleError(NetworkPickleError, pickle.UnpicklingError):
    """The file references a global, or uses a construct, that official StyleGAN pickles
    never use."""


@dataclass
class PersistentRecord:
    """Stand-in for an official persistent module: its class name and saved `__dict__`."""
    class_name: str
    state: dict

    def child(self, name: str) -> "PersistentRecord":
        """Sub-module `name` of the saved module (NetworkPickleError naming it when absent):
        the loaders of every family read the object tree through this."""
        modules = self.state.get("_modules")
        if modules is not None and not isinstance(modules, dict):
            raise NetworkPickleError(f"{self.class_name}._modules is {describe(modules)}, not a dict")
        child = (modules or {}).get(name)
        if not isinstance(child, PersistentRecord):
            raise NetworkPickleError(f"{self.class_name} has no sub-module {name!r}")
        return child

    def attr(self, name: str) -> Any:
        """Saved attribute `name` (NetworkPickleError naming it when absent)."""
        if name not in self.state:
            raise NetworkPickleError(f"{self.class_name} has no attribute {name!r}")
        return self.state[name]


_ATOMS = (str, int, float, bool, bytes, type(None))


def _atom(key: Any, what: str) -> Any:
    """Keys of dicts and elements of sets must be atoms: hashing anything else can take
    exponential time (memo-shared nested tuples) or overflow the C stack (deep nesting)."""
    if type(key) not in _ATOMS:
        raise UnsafePickleError(f"{what} is {describe(key)}; official network pickles only use "
                                "strings and numbers there")
    return key


def _atom_pairs(items: Any) -> list:
    if isinstance(items, dict):
        return list(items.items())
    if type(items) not in (list, tuple):
        raise UnsafePickleError(f"mapping built from {describe(items)}")
    pairs = []
    for pair in items:
        if type(pair) not in (list, tuple) or len(pair) != 2:
            raise UnsafePickleError(f"mapping item is {describe(pair)}, not a (key, value) pair")
        pairs.append((_atom(pair[0], "a dict key"), pair[1]))
    return pairs


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*(_atom_pairs(a) for a in args), **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def _ordered_dict(*args: Any) -> OrderedDict:
    """Replaces collections.OrderedDict (official files call it without arguments)."""
    if len(args) > 1:
        raise UnsafePickleError(f"OrderedDict called with {len(args)} arguments")
    return OrderedDict(*(_atom_pairs(a) for a in args))


def _set(items: Any = ()) -> set:
    """Replaces builtins.set (protocol <= 3 files): a set of strings or numbers."""
    if type(items) not in (list, tuple, set, frozenset):
        raise UnsafePickleError(f"set built from {describe(items)}")
    return {_atom(x, "a set element") for x in items}


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    """Replaces torch_utils.persistence._reconstruct_persistent_obj: never runs module_src."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise NetworkPickleError("unexpected persistent object (type is not 'class')")
    version = meta.get("version")
    if type(version) is not int or version != 6:
        raise NetworkPickleError(f"unsupported persistence format version {describe(version)} (expected 6)")
    name, state = meta.get("class_name"), meta.get("state")
    if type(name) is not str or not name.isidentifier() or len(name) > 100:
        raise NetworkPickleError(f"persistent object with class name {describe(name)}")
    if not isinstance(state, dict):
        raise NetworkPickleError(f"persistent {name} has state {describe(state)}, not a dict")
    return PersistentRecord(name, dict(state))


# ---------------------------------------------------------------------------------------------
# Tensors and storages

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_VERSION = 1001
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    """What `torch.FloatStorage` & co. resolve to inside a storage blob: only a dtype."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


_STORAGE_TYPES = {("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()}


def _load_storage(blob: Any) -> torch.storage.TypedStorage:
    """Replaces torch.storage._load_from_bytes: parse the legacy single-storage blob of official
    files (spec 1.4) by hand and take the elements from its own bytes, so that a storage can
    never be larger than what the file holds (torch.load would also accept zip archives,
    whose compressed entries expand ~1000x, and allocates a declared size before reading)."""
    if type(blob) is not bytes:
        raise NetworkPickleError(f"storage blob is {describe(blob)}, not bytes")
    if not blob.startswith(b"\x80\x02\x8a\x0a"):  # PROTO 2, LONG1 of 10 bytes: the magic number
        raise NetworkPickleError("a storage is not in the legacy torch format of official network "
                                 "pickles (e.g. a zip archive, whose compressed entries can expand ~1000x)")
    f = io.BytesIO(blob)
    header = _BlobUnpickler(f)
    try:
        magic, version, sys_info = header.load(), header.load(), header.load()
        if type(magic) is not int or magic != _LEGACY_MAGIC or type(version) is not int \
                or version != _LEGACY_VERSION:
            raise NetworkPickleError("a storage is not in the legacy torch format of official "
                                     "network pickles")
        header.load()  # the storage itself: a persistent id, captured by persistent_load
        keys = header.load()
        count = struct.unpack("<q", f.read(8))[0] if len(blob) - f.tell() >= 8 else -1
    except (EOFError, pickle.UnpicklingError, struct.error, IndexError, TypeError,
            ValueError) as exc:
        if isinstance(exc, NetworkPickleError):
            raise
        raise NetworkPickleError(f"malformed storage blob ({type(exc).__name__}: "
                                 f"{clip(str(exc), 120)})") from None
    if header.pid is None:
        raise NetworkPickleError("storage blob holds no storage")
    dtype, key, numel = header.pid
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise NetworkPickleError("storage blob is not little-endian")
    if type(keys) is not list or keys != [key] or count != numel:
        raise NetworkPickleError("storage blob is not a single storage")
    data = blob[f.tell():]
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(data) != numel * itemsize:
        raise NetworkPickleError(f"storage blob declares {numel} elements but holds "
                                 f"{len(data)} bytes")
    t = torch.frombuffer(bytearray(data), dtype=dtype) if numel else torch.empty(0, dtype=dtype)
    return torch.storage.TypedStorage(wrap_storage=t.untyped_storage(), dtype=dtype, _internal=True)


def _ints(value: Any, name: str, hi: int) -> tuple:
    if type(value) not in (tuple, list, torch.Size) or len(value) > MAX_TENSOR_DIMS:
        raise NetworkPickleError(f"tensor {name} is {describe(value)}")
    return tuple(as_int(v, f"tensor {name}", 0, hi, NetworkPickleError) for v in value)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any,
                    requires_grad: Any = False, backward_hooks: Any = None,
                    metadata: Any = None) -> torch.Tensor:
    """Replaces torch._utils._rebuild_tensor(_v2): a checked, plain view of a storage."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise NetworkPickleError(f"tensor built on {describe(storage)}, not a storage")
    if type(requires_grad) is not bool or metadata is not None \
            or (backward_hooks is not None and (not isinstance(backward_hooks, dict) or backward_hooks)):
        raise UnsafePickleError("tensor with hooks or metadata (official files have none)")
    offset = as_int(storage_offset, "storage offset", 0, 2 ** 62, NetworkPickleError)
    size, stride = _ints(size, "size", 2 ** 40), _ints(stride, "stride", 2 ** 40)
    if len(size) != len(stride):
        raise NetworkPickleError("tensor size and stride differ in length")
    t = torch.empty((0,), dtype=storage.dtype)
    # torch checks that the view stays inside the storage; view_problem also refuses overlaps
    try:
        t = t.set_(storage._untyped_storage, offset, size, stride)
    except RuntimeError as exc:
        raise NetworkPickleError(f"tensor does not fit its storage ({clip(str(exc), 120)})") from None
    problem = view_problem(t)
    if problem:
        raise NetworkPickleError(f"a tensor of shape {list(size)} {problem}")
    return t


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any = None) -> torch.Tensor:
    """Replaces torch._utils._rebuild_parameter: the tensor itself (we never train it)."""
    if not isinstance(data, torch.Tensor) or type(requires_grad) is not bool \
            or (backward_hooks is not None and (not isinstance(backward_hooks, dict) or backward_hooks)):
        raise UnsafePickleError(f"parameter built from {describe(data)} or with hooks")
    return torch.nn.Parameter(data, requires_grad=requires_grad)


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """Replaces numpy.dtype: a plain numeric scalar type only (official files: 'f8')."""
    if type(spec) is not str or len(spec) > 16:
        raise UnsafePickleError(f"numpy dtype from {describe(spec)}")
    try:
        dtype = np.dtype(spec)
    except TypeError as exc:
        raise NetworkPickleError(f"numpy dtype {clip(spec)}: {clip(str(exc), 80)}") from None
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsafePickleError(f"numpy dtype {clip(spec)} is not a plain number type")
    return dtype


def _numpy_scalar(dtype: Any, data: Any = b"") -> np.generic:
    """Replaces numpy's scalar reconstructor: decode the raw bytes with the dtype."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or type(data) is not bytes \
            or len(data) != dtype.itemsize:
        raise NetworkPickleError(f"numpy scalar of {describe(dtype)} from {describe(data)}")
    return np.frombuffer(data, dtype=dtype)[0]


MAX_ARRAY_BYTES = 1024  # numpy arrays in official files: the SG3 layer sizes, 16 bytes each


def _numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    """Replaces numpy's array reconstructor: an empty plain ndarray that a BUILD then fills
    (official files: `_reconstruct(ndarray, (0,), b'b')`); no subclass, no allocation."""
    if subtype is not np.ndarray or shape != (0,) or dtype_code not in (b"b", "b"):
        raise UnsafePickleError(f"numpy array reconstructed as {describe(subtype)} {describe(shape)}")
    return np.empty((0,), dtype=np.int8)


def _fill_array(inst: np.ndarray, state: Any) -> None:
    """BUILD of an array from (version, shape, dtype, fortran, raw bytes): a small plain-number
    array whose bytes are exactly the ones the file holds (never an object array, whose state
    would be a list of arbitrary objects)."""
    if type(state) is not tuple or len(state) != 5 or type(state[0]) is not int \
            or type(state[1]) is not tuple or len(state[1]) > MAX_TENSOR_DIMS \
            or any(type(d) is not int or d < 0 for d in state[1]) or not isinstance(state[2], np.dtype) \
            or state[2].kind not in "biufc" or state[2].fields is not None or state[2].subdtype is not None \
            or type(state[3]) is not bool or type(state[4]) is not bytes or inst.size:
        raise UnsafePickleError(f"BUILD of a numpy array from {describe(state)}")
    count = int(np.prod(state[1], dtype=np.int64)) if state[1] else 1
    if len(state[4]) > MAX_ARRAY_BYTES or len(state[4]) != count * state[2].itemsize:
        raise NetworkPickleError(f"numpy array of shape {list(state[1])} from {len(state[4])} bytes")
    inst.__setstate__(state)


# module, name -> the object it resolves to. Nothing else may be referenced.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): _set,
    ("__builtin__", "set"): _set,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,  # only as _reconstruct's argument: never called
}
_CALLABLE = {id(f) for f in ALLOWED_GLOBALS.values() if f is not np.ndarray}  # what REDUCE may call
_NEWOBJ_CLASSES = (EasyDict,)                           # what NEWOBJ may instantiate


# ---------------------------------------------------------------------------------------------
# The unpickler

def _refuse(what: str) -> Callable:
    def load(self: "RestrictedUnpickler") -> None:
        raise UnsafePickleError(f"the pickle uses {what}, which official network pickles never do")
    return load


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only ALLOWED_GLOBALS and refuses everything else by name.

    The pure-Python unpickler, so that each opcode that could do unbounded work can be checked:
    at most MAX_OPS opcodes and MAX_MARK_DEPTH nested marks; dict keys and set elements must be
    atoms; REDUCE only calls the allow-listed stand-ins, NEWOBJ only builds EasyDicts, BUILD only
    finishes numpy dtypes and small numpy arrays; BYTEARRAY8, out-of-band buffers, INST/OBJ are refused. (The C
    unpickler also sizes its memo by the largest index in the file: one LONG_BINPUT of 2**30
    costs it 8 GiB.)"""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: Any, max_ops: int = MAX_OPS):
        super().__init__(file)
        self.max_ops = self.ops_left = max_ops

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"refusing to load global {clip(f'{module}.{name}', 100)}: official StyleGAN2-ADA/StyleGAN3 "
                "pickles never reference it, so the file is not one (or has been tampered with)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids are not used by StyleGAN network pickles")

    # -- opcodes that could do unbounded work ------------------------------------------------
    def _count(self, n: int = 1) -> None:
        self.ops_left -= n
        if self.ops_left < 0:
            raise UnsafePickleError(f"more than {self.max_ops:,} pickle operations (official "
                                    "network pickles need a few ten thousand)")

    def load_mark(self) -> None:
        self._count()
        if len(self.metastack) >= MAX_MARK_DEPTH:
            raise UnsafePickleError(f"pickle nested deeper than {MAX_MARK_DEPTH} marks")
        pickle._Unpickler.load_mark(self)

    def _target(self, types: tuple, what: str) -> Any:
        target = self.stack[-1]
        if type(target) not in types:
            raise UnsafePickleError(f"{what} on {describe(target)}")
        return target

    def load_setitem(self) -> None:
        self._count()
        value, key = self.stack.pop(), self.stack.pop()
        self._target((dict, OrderedDict, EasyDict), "SETITEM")[_atom(key, "a dict key")] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        self._count(len(items))
        target = self._target((dict, OrderedDict, EasyDict), "SETITEMS")
        if len(items) % 2:
            raise NetworkPickleError("SETITEMS with an odd number of items")
        for i in range(0, len(items), 2):
            target[_atom(items[i], "a dict key")] = items[i + 1]

    def load_dict(self) -> None:
        items = self.pop_mark()
        self._count(len(items))
        if len(items) % 2:
            raise NetworkPickleError("DICT with an odd number of items")
        self.append({_atom(items[i], "a dict key"): items[i + 1] for i in range(0, len(items), 2)})

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._count(len(items))
        self._target((set,), "ADDITEMS").update(_atom(x, "a set element") for x in items)

    def load_frozenset(self) -> None:
        items = self.pop_mark()
        self._count(len(items))
        self.append(frozenset(_atom(x, "a set element") for x in items))

    def load_append(self) -> None:
        self._count()
        value = self.stack.pop()
        self._target((list,), "APPEND").append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._count(len(items))
        self._target((list,), "APPENDS").extend(items)

    def load_reduce(self) -> None:
        self._count()
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in _CALLABLE or type(args) is not tuple:
            raise UnsafePickleError(f"REDUCE of {describe(func)}: only allow-listed globals may be called")
        self.stack[-1] = func(*args)

    def load_newobj(self) -> None:
        self._count()
        args = self.stack.pop()
        cls = self.stack.pop()
        if cls not in _NEWOBJ_CLASSES or args != ():
            raise UnsafePickleError(f"NEWOBJ of {describe(cls)}: official files only create EasyDicts")
        self.append(cls.__new__(cls))

    def load_build(self) -> None:
        self._count()
        state = self.stack.pop()
        inst = self.stack[-1]
        # official files BUILD only numpy dtypes, from a short tuple of atoms, and (SG3) small
        # numpy arrays made by _numpy_reconstruct
        if type(inst) is np.ndarray:
            _fill_array(inst, state)
            return
        if not isinstance(inst, np.dtype) or type(state) is not tuple or len(state) > 9 \
                or any(type(x) not in _ATOMS for x in state):
            raise UnsafePickleError(f"BUILD of {describe(inst)} from {describe(state)}")
        inst.__setstate__(state)
        if inst.kind not in "biufc":
            raise UnsafePickleError("BUILD made a numpy dtype that is not a plain number type")

    dispatch[pickle.MARK[0]] = load_mark
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.DICT[0]] = load_dict
    dispatch[pickle.ADDITEMS[0]] = load_additems
    dispatch[pickle.FROZENSET[0]] = load_frozenset
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.NEWOBJ_EX[0]] = _refuse("NEWOBJ_EX")
    dispatch[pickle.INST[0]] = _refuse("INST")
    dispatch[pickle.OBJ[0]] = _refuse("OBJ")
    dispatch[pickle.BYTEARRAY8[0]] = _refuse("BYTEARRAY8")
    dispatch[pickle.NEXT_BUFFER[0]] = _refuse("out-of-band buffers")
    dispatch[pickle.READONLY_BUFFER[0]] = _refuse("out-of-band buffers")
    for _op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = _refuse("the extension registry")
    # every other opcode pushes or moves at most one object: count it
    for _key, _load in list(dispatch.items()):
        if _load is getattr(pickle._Unpickler, _load.__name__, None):
            def _counted(self: "RestrictedUnpickler", _load: Callable = _load) -> None:
                self.ops_left -= 1
                if self.ops_left < 0:
                    self._count(0)
                _load(self)
            dispatch[_key] = _counted
    del _key, _load, _op, _counted


class _BlobUnpickler(RestrictedUnpickler):
    """The header pickles of one legacy storage blob: plain data plus one persistent id,
    ('storage', <torch.XStorage>, key, 'cpu', numel, None), kept in `pid`."""

    def __init__(self, file: Any):
        super().__init__(file, max_ops=200)
        self.pid: Optional[tuple] = None

    def find_class(self, module: str, name: str) -> Any:
        found = _STORAGE_TYPES.get((module, name)) if type(module) is str and type(name) is str else None
        if found is None:
            raise UnsafePickleError(f"a storage blob references the global {clip(f'{module}.{name}', 80)}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        if self.pid is not None or type(pid) is not tuple or len(pid) != 6 or pid[0] != "storage" \
                or not isinstance(pid[1], _StorageType) or type(pid[2]) is not str \
                or type(pid[3]) is not str or pid[5] is not None:  # any location: we load to the CPU
            raise NetworkPickleError(f"unexpected storage record in a storage blob ({describe(pid)})")
        numel = as_int(pid[4], "storage size", 0, 2 ** 40, NetworkPickleError)
        self.pid = (pid[1].dtype, pid[2], numel)
        return None


def read_network_pickle(path: Union[str, Path]) -> dict:
    """Unpickle a network file safely; return its top-level dict of records."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"network pickle not found: {path}")
    with open(path, "rb") as f:
        head = f.read(2)
        if len(head) < 2 or head[0] != 0x80:
            raise NetworkPickleError(f"{path} is not a pickle file (no pickle protocol header)")
        size = os.fstat(f.fileno()).st_size
        if size > MAX_FILE_BYTES:  # its tensors would take about as much memory again
            raise NetworkPickleError(f"{path} is {size / 2**30:.1f} GiB, more than any StyleGAN "
                                     f"network pickle this loader accepts ({MAX_FILE_BYTES >> 30} GiB)")
        try:
            # a read-only map: reads are C-speed and never return (or allocate) more than the
            # file holds, whatever length a frame or string claims
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
                data = RestrictedUnpickler(view).load()
        except NetworkPickleError as e:
            raise type(e)(f"{path}: {e}") from None
        except (EOFError, struct.error) as e:
            raise NetworkPickleError(f"{path} is truncated (unexpected end of file)") from e
        except Exception as e:  # anything else while parsing an untrusted file: it is not valid
            raise NetworkPickleError(f"{path} is corrupt or not a network pickle "
                                     f"({type(e).__name__}: {clip(str(e), 200)})") from None
    if not isinstance(data, dict) or "G_ema" not in data:
        raise NetworkPickleError(f"{path} holds no 'G_ema': not a StyleGAN network pickle")
    return data
