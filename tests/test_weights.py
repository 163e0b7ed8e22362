"""rusir.model.weights: cache lookup, checksums, atomic downloads, clear errors offline."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rusir.model import weights
from rusir.model.weights import CorruptWeightsError, MissingWeightsError, WeightFile


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    """A private, empty TORCH_HOME with downloads forbidden."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_registry_has_backbones_and_inception():
    vgg = weights.get("vgg16")
    assert vgg.url == "https://download.pytorch.org/models/vgg16-397923af.pth"
    assert vgg.filename == "vgg16-397923af.pth" and vgg.sha256 == "397923af"
    alex = weights.get("alexnet")
    assert alex.url == "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    assert alex.sha256 == "7be5be79"
    assert weights.get("squeezenet1_1").filename == "squeezenet1_1-b8a52dc0.pth"
    inc = weights.get("pt_inception")
    assert inc.url == ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                       "pt_inception-2015-12-05-6726825d.pth")
    with pytest.raises(KeyError, match="registered"):
        weights.get("nope")


def test_missing_file_offline_names_file_url_and_destination(offline_home):
    with pytest.raises(MissingWeightsError) as info:
        weights.fetch("vgg16")
    msg = str(info.value)
    assert "vgg16-397923af.pth" in msg
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in msg
    assert str(offline_home / "vgg16-397923af.pth") in msg
    assert "RUSIR_OFFLINE" in msg
    assert isinstance(info.value, FileNotFoundError)
    assert not offline_home.exists() or not any(offline_home.iterdir())


def test_download_false_refuses_even_when_online(tmp_path, monkeypatch):
    monkeypatch.delenv("RUSIR_OFFLINE", raising=False)
    src = tmp_path / "blob.bin"
    src.write_bytes(b"x")
    entry = WeightFile("t", src.as_uri(), "blob.bin", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(MissingWeightsError, match="download=False"):
        weights.fetch(entry, download=False)


def test_present_file_with_wrong_checksum_errors(tmp_path, offline_home):
    # torchvision-style prefix in the name: a junk file under the right name is rejected
    offline_home.mkdir(parents=True)
    (offline_home / "alexnet-owt-7be5be79.pth").write_bytes(b"not alexnet")
    with pytest.raises(CorruptWeightsError, match="sha256"):
        weights.fetch("alexnet")
    # full digest
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "f.bin").write_bytes(b"abc")
    entry = WeightFile("t", "file:///nowhere", "f.bin", sha256=_sha(b"abd"), cache_dir=str(tmp_path / "c"))
    with pytest.raises(MissingWeightsError):
        weights.fetch(entry)


def test_correct_file_is_returned(tmp_path, offline_home):
    data = b"weights!"
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "f.bin").write_bytes(data)
    for sha in (_sha(data), _sha(data)[:8], None):
        entry = WeightFile("t", "file:///nowhere", "f.bin", sha256=sha, cache_dir=str(tmp_path / "c"))
        assert weights.fetch(entry) == tmp_path / "c" / "f.bin"


def test_atomic_download_from_file_url(tmp_path, monkeypatch):
    monkeypatch.delenv("RUSIR_OFFLINE", raising=False)
    data = bytes(range(256)) * 5000
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    cache = tmp_path / "cache"
    entry = WeightFile("t", src.as_uri(), "dst.bin", sha256=_sha(data)[:8], cache_dir=str(cache))
    path = weights.fetch(entry)
    assert path == cache / "dst.bin" and path.read_bytes() == data
    assert sorted(p.name for p in cache.iterdir()) == ["dst.bin"]  # no temp file left

    bad = WeightFile("t2", src.as_uri(), "bad.bin", sha256="00000000", cache_dir=str(cache))
    with pytest.raises(CorruptWeightsError) as info:
        weights.fetch(bad)
    assert src.as_uri() in str(info.value)
    assert sorted(p.name for p in cache.iterdir()) == ["dst.bin"]  # nothing half-written


def test_failed_download_is_missing_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("RUSIR_OFFLINE", raising=False)
    url = (tmp_path / "absent.bin").as_uri()
    entry = WeightFile("t", url, "x.bin", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(MissingWeightsError) as info:
        weights.fetch(entry)
    assert "download failed" in str(info.value) and url in str(info.value)
    assert not (tmp_path / "cache" / "x.bin").exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_offline_env_forbids_download(tmp_path, monkeypatch):
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    entry = WeightFile("t", src.as_uri(), "x.bin", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(MissingWeightsError, match="RUSIR_OFFLINE"):
        weights.fetch(entry)
    assert weights.fetch(entry, download=True).read_bytes() == b"x"  # explicit override


def test_cache_dir_expands_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RUSIR_TEST_CACHE", str(tmp_path))
    entry = WeightFile("t", "file:///x", "f.bin", cache_dir="$RUSIR_TEST_CACHE/sub")
    assert entry.path() == Path(tmp_path) / "sub" / "f.bin"
