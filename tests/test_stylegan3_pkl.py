"""The exec-free loader on StyleGAN3 files: what SG3 pickles need (numpy arrays) is allowed and no
more; foreign globals, callable array types, oversized or non-numeric arrays and inconsistent
layer designs are refused."""
from __future__ import annotations

import copy
import io
import pickle

import pytest

from rusir.model.pkl import load_network_pickle
from rusir.model.stylegan3_pkl import is_stylegan3, load_stylegan3_pickle, stylegan3_design
from rusir.model.unpickler import (NetworkPickleError, RestrictedUnpickler, UnsafePickleError,
                                   read_network_pickle)
from conftest import fixture_path
from test_stylegan3 import sg3_fixture


def _loads(payload: bytes):
    return RestrictedUnpickler(io.BytesIO(payload)).load()


@pytest.mark.parametrize("original,foreign,named", [
    (b"\x8c\x0c_reconstruct", b"\x8c\x0c__builtins__", "numpy.core.multiarray.__builtins__"),
    (b"\x8c\x07ndarray", b"\x8c\x07ndindex", "numpy.ndindex")])
def test_foreign_global_in_an_sg3_file_is_refused(tmp_path, original, foreign, named):
    data = sg3_fixture("sg3t32.pkl").read_bytes()
    assert data.count(original) == 1
    path = tmp_path / "tampered.pkl"
    path.write_bytes(data.replace(original, foreign))  # same length: the file stays well-formed
    with pytest.raises(UnsafePickleError, match=f"refusing to load global '?{named}"):
        load_stylegan3_pickle(path)


def test_both_numpy_spellings_load():
    """sg3t32 was written under numpy 1.x (numpy.core.*), sg3r64 under numpy 2 (numpy._core.*)."""
    assert b"numpy.core.multiarray" in sg3_fixture("sg3t32.pkl").read_bytes()
    assert b"numpy._core.multiarray" in sg3_fixture("sg3r64.pkl").read_bytes()
    for name in ("sg3t32", "sg3r64"):
        layer = read_network_pickle(sg3_fixture(f"{name}.pkl"))["G_ema"].state["_modules"]["synthesis"] \
            .state["_modules"]["L0_36_32"]
        assert layer.state["in_size"].tolist() == [36, 36] and bool(layer.state["use_fp16"]) is True


def test_ndarray_is_never_called():
    """numpy.ndarray is resolvable only as _reconstruct's argument: calling it would allocate any
    declared size (here 1 GiB)."""
    with pytest.raises(UnsafePickleError, match="REDUCE of"):
        _loads(b"\x80\x04cnumpy\nndarray\nJ\x00\x00\x00\x40\x85R.")


def test_reconstruct_accepts_only_plain_ndarray():
    payload = (b"\x80\x04cnumpy.core.multiarray\n_reconstruct\n(cdnnlib.util\nEasyDict\n"
               b"K\x00\x85C\x01btR.")
    with pytest.raises(UnsafePickleError, match="numpy array reconstructed"):
        _loads(payload)


def _array_payload(shape: bytes, dtype: bytes, raw: bytes) -> bytes:
    """_reconstruct(ndarray, (0,), b'b') then BUILD (1, shape, dtype(<dtype>), False, raw)."""
    return (b"\x80\x04cnumpy._core.multiarray\n_reconstruct\n(cnumpy\nndarray\nK\x00\x85C\x01btR"
            b"(K\x01" + shape + b"cnumpy\ndtype\n(X" + bytes([len(dtype), 0, 0, 0]) + dtype
            + b"K\x00K\x01tR\x89C" + bytes([len(raw)]) + raw + b"tb.")


def test_array_build_is_checked():
    good = _loads(_array_payload(b"K\x02\x85", b"i8", b"\x24" + b"\0" * 7 + b"\x24" + b"\0" * 7))
    assert good.tolist() == [36, 36]
    with pytest.raises(NetworkPickleError, match="numpy array of shape"):  # 10**12 elements from 16 bytes
        _loads(_array_payload(b"\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85", b"i8", b"\0" * 16))
    with pytest.raises(UnsafePickleError, match="BUILD of a numpy array"):  # negative dimension
        _loads(_array_payload(b"J\xff\xff\xff\xff\x85", b"i8", b""))
    with pytest.raises(UnsafePickleError, match="not a plain number type"):  # object arrays never
        _loads(_array_payload(b"K\x01\x85", b"O", b"\0" * 8))


def test_families_are_told_apart_by_structure():
    sg3 = read_network_pickle(sg3_fixture("sg3t32.pkl"))
    sg2_path = fixture_path("tiny32.pkl")
    assert is_stylegan3(sg3["G_ema"]) and not is_stylegan3(read_network_pickle(sg2_path)["G_ema"])
    assert not is_stylegan3(sg3["D"])  # StyleGAN2's classes inside an SG3 file
    with pytest.raises(NetworkPickleError, match="not a StyleGAN3 Generator"):
        load_stylegan3_pickle(sg2_path)
    with pytest.raises(NetworkPickleError, match="block_resolutions"):  # the SG2 loader names what is missing
        load_network_pickle(sg3_fixture("sg3t32.pkl"))


def _layer(record, name: str):
    return record.state["_modules"]["synthesis"].state["_modules"][name]


@pytest.mark.parametrize("attr,value,message", [
    ("padding", [0, 0, 0, 0], "padding"),
    ("in_channels", 31, "takes 31 channels"),
    ("up_factor", 10 ** 6, "up_factor must be an integer"),
    ("in_size", "36", "not a \\[width, height\\] pair"),
    ("use_fp16", None, None),  # not read: fp16 is never used
])
def test_inconsistent_layer_designs_are_refused(attr, value, message):
    record = copy.deepcopy(read_network_pickle(sg3_fixture("sg3t32.pkl"))["G_ema"])
    _layer(record, "L3_36_32").state[attr] = value
    if message is None:
        stylegan3_design(record)
        return
    with pytest.raises(NetworkPickleError, match=message):
        stylegan3_design(record)


def test_refuses_without_running_code(tmp_path):
    """An SG3-shaped dict whose G_ema is a live payload: refused, nothing runs."""
    marker = tmp_path / "executed"

    class Boom:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G": None, "D": None, "G_ema": Boom()}, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        load_stylegan3_pickle(path)
    assert not marker.exists()
