"""rusir.model.checkpoint: safetensors round trip, clear errors, and the shipped default generator."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rusir.model.checkpoint import CheckpointError, load_generator_file, read_metadata, save_generator
from rusir.model.stylegan2 import Generator

SHIPPED = Path(__file__).resolve().parents[1] / "rusir" / "assets" / "toyfaces64.safetensors"


def tiny_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(16, 0, 16, 16, 3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16, conv_clamp=256))
    with torch.no_grad():  # non-trivial values for the buffers that training changes
        G.mapping.w_avg.normal_()
        for p in G.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return G.eval()


def test_round_trip_identical_outputs(tmp_path: Path) -> None:
    G = tiny_generator()
    path = save_generator(G, tmp_path / "g.safetensors", {"images_seen": 123, "hardware": "test"})
    H = load_generator_file(path)
    assert H.init_kwargs == G.init_kwargs
    assert not H.training and not any(p.requires_grad for p in H.parameters())
    torch.testing.assert_close(H.w_avg, G.w_avg, rtol=0, atol=0)
    ws = torch.randn(2, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(H.synthesis(ws, noise_mode="const"),
                                   G.synthesis(ws, noise_mode="const"), rtol=0, atol=0)
    info = read_metadata(path)
    assert info["meta"] == {"images_seen": 123, "hardware": "test"}
    assert info["config"] == json.loads(json.dumps(G.init_kwargs))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_generator_file(tmp_path / "nope.safetensors")


def test_not_a_safetensors_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a safetensors file at all" * 10)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_generator_file(bad)


def test_truncated_file(tmp_path: Path) -> None:
    path = save_generator(tiny_generator(), str(tmp_path / "g.safetensors"))   # a str path too
    assert path == tmp_path / "g.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_generator_file(path)


def test_missing_config(tmp_path: Path) -> None:
    path = tmp_path / "noconfig.safetensors"
    save_file({"x": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="no generator 'config'"):
        load_generator_file(path)


def test_wrong_tensors(tmp_path: Path, monkeypatch) -> None:
    """Refused from the header, before any tensor is read (a file may hold far more than its
    config asks for)."""
    def no_reading(*args, **kwargs):
        raise AssertionError("tensors were read before their names and shapes were checked")
    monkeypatch.setattr("rusir.model.checkpoint.load_file", no_reading)
    G = tiny_generator()
    state = {k: v.contiguous() for k, v in G.state_dict().items()}
    name = next(k for k in state if k.endswith("weight"))
    state[name] = torch.zeros(7, 7)  # wrong shape
    state.pop("mapping.w_avg")  # missing
    path = tmp_path / "wrong.safetensors"
    save_file(state, str(path), metadata={"config": json.dumps(G.init_kwargs)})
    with pytest.raises(CheckpointError, match="missing .*mapping.w_avg.*wrong shape"):
        load_generator_file(path)


def test_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "badcfg.safetensors"
    save_file({"x": torch.zeros(3)}, str(path), metadata={"config": json.dumps({"foo": 1})})
    with pytest.raises(CheckpointError, match="config"):
        load_generator_file(path)


@pytest.mark.skipif(not SHIPPED.exists(), reason="rusir/assets/toyfaces64.safetensors not shipped yet")
def test_shipped_default_generator() -> None:
    assert SHIPPED.stat().st_size <= 20 * 2 ** 20
    G = load_generator_file(SHIPPED)
    meta = read_metadata(SHIPPED)["meta"]
    assert meta["images_seen"] > 0 and "command" in meta and "hardware" in meta
    z = torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = G.synthesis(G.mapping(z, None), noise_mode="const")
        one = G(z[:1])
    assert one.shape == (1, 3, 64, 64) and torch.isfinite(img).all()
    assert 0.1 < img.std().item() < 2.0  # not a constant image, not blown up
    # different latents give different images (no complete collapse)
    assert (img[0] - img[1]).abs().mean().item() > 0.01
    assert G.w_avg.abs().sum() > 0  # w_avg was tracked during training
