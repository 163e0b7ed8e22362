"""Tests of rusir.data: shipped held-out set, image loading, the avatar renderer."""

import hashlib
import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from rusir import data
from rusir.data import avatars

# Golden values of the shipped held-out set (computed once when it was generated with
# `python -m rusir.train.build_data --png --out rusir/assets/heldout --n 64 --start-seed 2000000000`).
HELDOUT_COUNT = 64
HELDOUT_PIXEL_SUM = 108507313  # sum of all uint8 values of the 64 images
HELDOUT_LISTING_SHA = "efe15cf93c51e1496bb1963d8121f1febdbf76e4fdfb306a68c7ca0404ea1660"

HAVE_RENDERER = (
    importlib.util.find_spec("py_avataaars") is not None
    and importlib.util.find_spec("cairosvg") is not None
)
needs_renderer = pytest.mark.skipif(not HAVE_RENDERER, reason="py-avataaars/cairosvg not installed (rusir[train])")


def _listing_sha(paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).hexdigest().encode() + b"\n")
    return h.hexdigest()


# ---------------------------------------------------------------- held-out set
def test_heldout_paths_sorted_and_complete():
    paths = data.heldout_paths()
    assert [p.name for p in paths] == [f"{i:04d}.png" for i in range(HELDOUT_COUNT)]
    assert _listing_sha(paths) == HELDOUT_LISTING_SHA


def test_heldout_shape_range_dtype_and_content():
    x = data.heldout()
    assert x.shape == (HELDOUT_COUNT, 3, 64, 64)
    assert x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert int(torch.round(x * 255).to(torch.int64).sum()) == HELDOUT_PIXEL_SUM
    # images differ from each other (not 64 copies of one)
    assert (x[1:] - x[:1]).abs().flatten(1).mean(1).min() > 0.02


def test_heldout_prefix_and_size():
    x = data.heldout()
    x5 = data.heldout(5)
    assert x5.shape == (5, 3, 64, 64)
    assert torch.equal(x5, x[:5])
    y = data.heldout(2, size=32)
    assert y.shape == (2, 3, 32, 32)
    # box downsampling: close to average pooling of the 64 px version
    assert (y - torch.nn.functional.avg_pool2d(x[:2], 2)).abs().max() < 1.5 / 255
    assert data.heldout(0).shape == (0, 3, 64, 64)


def test_heldout_too_many_errors():
    with pytest.raises(ValueError, match="only 64"):
        data.heldout(HELDOUT_COUNT + 1)
    with pytest.raises(ValueError):
        data.heldout(-1)


def test_a_missing_heldout_folder_is_named_in_one_error(monkeypatch):
    """An installation without the package data: a FileNotFoundError naming it, no NameError."""
    from rusir.data import images
    monkeypatch.setattr(images, "HELDOUT_DIR", "assets/no-such-folder")
    with pytest.raises(FileNotFoundError, match="no held-out PNGs found .* missing from this installation"):
        images.heldout_paths()


# ---------------------------------------------------------------- load_image
def _pattern(h, w):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_load_image_rgb_path_roundtrip(tmp_path):
    a = _pattern(16, 16)
    p = tmp_path / "a.png"
    Image.fromarray(a).save(p)
    x = data.load_image(p, 16)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    assert torch.equal(torch.round(x[0] * 255).to(torch.uint8).permute(1, 2, 0), torch.from_numpy(a))
    assert torch.equal(data.load_image(str(p), 16), x)  # str paths too


def test_load_image_non_square_center_crop_and_box_resize():
    a = np.zeros((8, 16, 3), dtype=np.uint8)  # wide: the centre 8x8 is columns 4..11
    a[:, 4:12] = 200
    a[:, 6:8] = 100
    x = data.load_image(Image.fromarray(a), 4)
    assert x.shape == (1, 3, 4, 4)
    # centre crop removes the black borders entirely; 2x2 box average of columns 6,7 = 100
    expected = np.array([200, 100, 200, 200], dtype=np.float32) / 255
    assert torch.allclose(x[0, 0, 0], torch.from_numpy(expected), atol=1e-6)
    tall = data.load_image(Image.fromarray(np.ascontiguousarray(a.transpose(1, 0, 2))), 4)
    assert torch.allclose(tall[0, 0, :, 0], torch.from_numpy(expected), atol=1e-6)


def test_load_image_modes(tmp_path):
    gray = Image.fromarray(np.full((10, 10), 77, dtype=np.uint8), "L")
    x = data.load_image(gray, 10)
    assert x.shape == (1, 3, 10, 10)
    assert torch.allclose(x, torch.full_like(x, 77 / 255))

    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:5, :, 3] = 255  # top half opaque red, bottom half fully transparent
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(p)
    x = data.load_image(p, 10)
    assert x.shape == (1, 3, 10, 10)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(x[0, :, 9, 0], torch.tensor([1.0, 1.0, 1.0]))  # over white

    pal = Image.fromarray(_pattern(12, 12)).convert("P", palette=Image.ADAPTIVE, colors=8)
    x = data.load_image(pal, 6)
    assert x.shape == (1, 3, 6, 6) and 0 <= float(x.min()) <= float(x.max()) <= 1


def test_load_image_errors(tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_text("this is not a PNG")
    with pytest.raises(ValueError, match="cannot read"):
        data.load_image(bad, 64)
    with pytest.raises(FileNotFoundError):
        data.load_image(tmp_path / "missing.png", 64)
    with pytest.raises(TypeError):
        data.load_image(123, 64)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_float_image_with_a_non_finite_pixel_is_refused(tmp_path, value):
    """One NaN or Inf pixel in a float TIFF made the whole image read as almost black (its
    maximum sets the scale); the restore then ran on it with exit 0."""
    a = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    ok = tmp_path / "ok.tiff"
    Image.fromarray(a, "F").save(ok)
    assert float(data.load_image(ok, 8).max()) == 1.0          # a float TIFF in [0, 1] reads as such
    a[3, 5] = value
    path = tmp_path / "float.tiff"
    Image.fromarray(a, "F").save(path)
    with pytest.raises(ValueError, match=r"float\.tiff has 1 non-finite pixel\(s\) \(NaN or infinity\)"):
        data.load_image(path, 8)
    with pytest.raises(ValueError, match=r"non-finite pixel"):
        data.load_image(Image.fromarray(a, "F"), 8)             # a PIL image given directly


# ---------------------------------------------------------------- seeds and renderer
def test_seed_ranges_disjoint_and_documented():
    assert data.TRAIN_SEED_START == 0 and data.TRAIN_SEEDS.start == 0
    assert data.HELDOUT_SEED_START == 2_000_000_000 == data.HELDOUT_SEEDS.start
    assert data.TRAIN_SEEDS.stop <= data.HELDOUT_SEEDS.start  # disjoint
    assert data.split_of_seed(0) == "train"
    assert data.split_of_seed(10**9 - 1) == "train"
    assert data.split_of_seed(10**9) is None
    assert data.split_of_seed(2_000_000_063) == "heldout"


def test_render_missing_backend_raises_install_hint(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("py_avataaars"):
            raise ImportError("No module named 'py_avataaars'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"rusir\[train\]"):
        data.render(0)


@needs_renderer
def test_render_deterministic_and_varied():
    a, b = data.render(123), data.render(123)
    assert isinstance(a, Image.Image) and a.mode == "RGB" and a.size == (64, 64)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    c = data.render(124)
    assert np.abs(np.asarray(a, dtype=np.int16) - np.asarray(c, dtype=np.int16)).mean() > 5
    assert data.render(5, size=32).size == (32, 32)


@needs_renderer
def test_render_randomises_every_enum_attribute():
    import py_avataaars as pa

    names = {n for n, _, _ in avatars._enum_arguments(pa)} - set(avatars.FIXED_ARGUMENTS)
    seen = {n: set() for n in names}
    for seed in range(300):
        attrs = avatars.sample_attributes(seed)
        assert set(attrs) == names | {"background"}
        for n in names:
            seen[n].add(attrs[n])
    for n, _cls, default in avatars._enum_arguments(pa):
        if n in names and len(type(default)) > 1:
            assert len(seen[n]) >= min(len(type(default)), 5), n
    kinds = {avatars.sample_attributes(s)["background"]["kind"] for s in range(50)}
    assert kinds == {"solid", "vertical", "diagonal"}


@needs_renderer
def test_shipped_heldout_matches_renderer():
    x = data.heldout(4)
    for i in range(4):
        r = data.load_image(data.render(data.HELDOUT_SEED_START + i), 64)
        # exact with the versions used to make them; tolerate small cairo differences
        assert (r[0] - x[i]).abs().mean() < 2 / 255, i


def test_load_image_refuses_unreadable_paths_in_one_line(tmp_path, monkeypatch):
    """A decompression bomb, a directory, a corrupt or missing file: one-line ValueError naming it."""
    from PIL import Image as PILImage
    big = tmp_path / "big.png"
    PILImage.new("RGB", (64, 64)).save(big)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)   # 64 x 64 is now over 2x the limit
    cases = {"big": big, "folder": tmp_path, "corrupt": tmp_path / "c.png",
             "missing": tmp_path / "missing.png", "empty": tmp_path / "e.png"}
    cases["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cases["empty"].write_bytes(b"")
    for what, path in cases.items():
        with pytest.raises(ValueError) as caught:
            data.load_image(path, 64)
        message = str(caught.value)
        assert str(path) in message and "\n" not in message, (what, message)
    assert "pixels" in str(pytest.raises(ValueError, data.load_image, big).value)
    with pytest.raises(FileNotFoundError):   # still a FileNotFoundError too
        data.load_image(tmp_path / "missing.png", 64)
    monkeypatch.undo()
    assert data.load_image(big, 8).shape == (1, 3, 8, 8)
