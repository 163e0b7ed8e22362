"""The restricted loader: official files load, anything else is refused without running code."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from conftest import fixture_path
from rusir.model.pkl import (NetworkPickleError, UnsafePickleError, load_network_pickle,
                       read_network_pickle)


@pytest.mark.parametrize("name", ["tiny32", "tiny64"])
def test_loads_g_ema_not_g(name):
    path = fixture_path(f"{name}.pkl")
    data = read_network_pickle(path)
    G = load_network_pickle(path)
    g_ema = data["G_ema"].state["_parameters"]
    assert not any(p.requires_grad for p in G.parameters())
    b4 = G.synthesis.b4
    assert torch.equal(b4.const, data["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b4"]
                       .state["_parameters"]["const"])
    g_raw = data["G"].state["_modules"]["synthesis"].state["_modules"]["b4"].state["_parameters"]["const"]
    assert not torch.equal(b4.const, g_raw)
    assert g_ema == {}  # the Generator itself owns no tensors


def test_resolved_configuration_is_read_from_submodules(tiny32, tiny64):
    assert tiny32.synthesis.b32.conv1.conv_clamp == 256 and tiny64.mapping.num_layers == 8
    assert [b.use_fp16 for b in tiny64.synthesis.blocks()] == [False, False, False, True, True]
    assert tiny32.mapping.w_avg_beta == pytest.approx(0.995)


class _Boom:
    """Pickling this emits a call to os.system: a loader that executes it would create a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_refuses_and_never_executes_foreign_globals(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Boom(marker)}, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        load_network_pickle(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the same bytes DO run code under plain pickle ...
    assert marker.exists()           # ... which proves the test payload was live


def test_refuses_builtins_eval(tmp_path):
    path = tmp_path / "eval.pkl"
    path.write_bytes(b"\x80\x04cbuiltins\neval\n(V1+1\ntR.")
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        read_network_pickle(path)


def test_truncated_corrupt_and_foreign_files(tmp_path):
    good = fixture_path("tiny32.pkl").read_bytes()
    (tmp_path / "trunc.pkl").write_bytes(good[: len(good) // 2])
    with pytest.raises(NetworkPickleError, match="truncated"):
        load_network_pickle(tmp_path / "trunc.pkl")
    (tmp_path / "text.pkl").write_text("hello, I am not a pickle")
    with pytest.raises(NetworkPickleError, match="not a pickle"):
        load_network_pickle(tmp_path / "text.pkl")
    (tmp_path / "dict.pkl").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(NetworkPickleError, match="no 'G_ema'"):
        load_network_pickle(tmp_path / "dict.pkl")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_network_pickle(tmp_path / "missing.pkl")


def test_other_architecture_is_refused():
    """A network record that is not a StyleGAN2 'Generator' (here the discriminator) is named."""
    from rusir.model.pkl import generator_config
    record = read_network_pickle(fixture_path("tiny32.pkl"))["D"]
    with pytest.raises(NetworkPickleError, match="'Discriminator'"):
        generator_config(record)
