"""The command line's refusals: every bad input ends in exit 2 with one line on stderr that names
the problem, and every check that can run before the compute runs before it (before the generator
is loaded); an unexpected exception still shows its traceback."""
from __future__ import annotations

import os
import pickle
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from rusir.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "rusir" / "assets" / "toyfaces64.safetensors"


# --- helpers ----------------------------------------------------------------------------------

def png(path: Path, size=(64, 64), color=(200, 120, 60)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def restore_args(*images, out, extra=()) -> list[str]:
    return ["restore", *map(str, images), "--task", "denoising", "--out", str(out),
            "--steps", "1,1,1", *extra]


def one_line_error(capsys, *words: str) -> str:
    """The single stderr line of a refusal; it names every one of `words`."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("rusir ") and "error:" in lines[0], lines[0]
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture
def no_generator(monkeypatch):
    """Fail the test if anything loads a generator: the refusal must come before the compute."""
    import rusir.demo  # noqa: F401  (load every module that imports load_generator)
    import rusir.engine.runner  # noqa: F401
    import rusir.restore_files  # noqa: F401
    from rusir.model import generators
    original = generators.load_generator

    def refuse(*args, **kwargs):
        raise AssertionError("the generator was loaded: the check came after the compute started")

    for module in list(sys.modules.values()):
        if getattr(module, "load_generator", None) is original:
            monkeypatch.setattr(module, "load_generator", refuse)


def can_write_in(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def read_only_dir(tmp_path: Path) -> Path:
    """A folder this process cannot write in (a chmod 555 folder; as root, /sys)."""
    d = tmp_path / "read-only"
    d.mkdir()
    d.chmod(0o555)
    for candidate in (d, Path("/sys")):
        if candidate.is_dir() and not can_write_in(candidate):
            return candidate
    pytest.skip("no read-only folder available (root, and /sys is writable)")


# --- --out --------------------------------------------------------------------------------------

def test_out_that_is_a_file(tmp_path, capsys, no_generator):
    image, out = png(tmp_path / "x.png"), tmp_path / "out.txt"
    out.write_text("keep me")
    assert main(restore_args(image, out=out)) == 2
    one_line_error(capsys, str(out), "file")
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("command", ["bench", "demo"])
def test_out_that_is_a_file_for_bench_and_demo(tmp_path, capsys, no_generator, command):
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    assert main([command, "--out", str(out), "--steps", "1,1,1"]) == 2
    one_line_error(capsys, str(out), "file")
    assert out.read_text() == "keep me"


def test_out_under_a_file(tmp_path, capsys, no_generator):
    image, blocker = png(tmp_path / "x.png"), tmp_path / "blocker"
    blocker.write_text("keep me")
    assert main(restore_args(image, out=blocker / "sub")) == 2
    one_line_error(capsys, str(blocker), "file")
    assert blocker.read_text() == "keep me"


def test_out_read_only_refused_before_the_compute(tmp_path, capsys, no_generator):
    image, folder = png(tmp_path / "x.png"), read_only_dir(tmp_path)
    assert main(restore_args(image, out=folder / "restored")) == 2
    one_line_error(capsys, str(folder), "write")
    assert not (folder / "restored").exists()


# --- existing and colliding outputs ------------------------------------------------------------

def test_existing_outputs_are_not_overwritten(tmp_path, capsys, no_generator):
    image, out = png(tmp_path / "x.png"), tmp_path / "out"
    out.mkdir()
    (out / "x_phases.png").write_bytes(b"old")
    assert main(restore_args(image, out=out)) == 2
    one_line_error(capsys, str(out / "x_phases.png"), "--overwrite")
    assert (out / "x_phases.png").read_bytes() == b"old" and not (out / "x_restored.png").exists()


def test_overwrite_replaces_existing_outputs(tmp_path, capsys):
    image, out = png(tmp_path / "x.png"), tmp_path / "out"
    out.mkdir()
    (out / "x_restored.png").write_bytes(b"old")
    assert main(restore_args(image, out=out, extra=["--overwrite"])) == 0
    assert (out / "x_restored.png").read_bytes() != b"old"
    assert Image.open(out / "x_restored.png").size == (64, 64)


@pytest.mark.parametrize("second", ["b/x.png", "b/x.jpg", "a/x.png"])
def test_inputs_with_the_same_name_are_refused(tmp_path, capsys, no_generator, second):
    first = png(tmp_path / "a" / "x.png")
    other = tmp_path / second
    if not other.exists():
        png(other)
    assert main(restore_args(first, other, out=tmp_path / "out")) == 2
    one_line_error(capsys, str(first), str(other), "x_restored.png")
    assert not (tmp_path / "out").exists()


# --- --device ----------------------------------------------------------------------------------

def _devices():
    import torch
    bad = ["bogus", "cuda:99"]
    if not torch.cuda.is_available():
        bad.append("cuda")
    return bad


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("command", ["restore", "bench"])
def test_unusable_device(tmp_path, capsys, no_generator, device, command):
    image, out = png(tmp_path / "x.png"), tmp_path / "out"
    args = {"restore": restore_args(image, out=out),
            "bench": ["bench", "--out", str(out), "--steps", "1,1,1"]}[command]
    assert main(args + ["--device", device]) == 2
    one_line_error(capsys, "--device", device)
    assert not out.exists()


# --- --loss ------------------------------------------------------------------------------------

def test_loss_malformed_yaml(tmp_path, capsys, no_generator):
    image, loss = png(tmp_path / "x.png"), tmp_path / "loss.yaml"
    loss.write_text("loss: {terms: [l2\n")
    assert main(restore_args(image, out=tmp_path / "out", extra=["--loss", str(loss)])) == 2
    one_line_error(capsys, str(loss), "YAML")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("body", ["- l2\n", "name: x\n", "loss: {terms: 5}\n",
                                  "loss: {terms: {nonesuch: 1}}\n"])
def test_loss_yaml_that_is_not_a_loss(tmp_path, capsys, no_generator, body):
    image, loss = png(tmp_path / "x.png"), tmp_path / "loss.yaml"
    loss.write_text(body)
    assert main(restore_args(image, out=tmp_path / "out", extra=["--loss", str(loss)])) == 2
    one_line_error(capsys, str(loss))


def test_bench_config_malformed_yaml(tmp_path, capsys, no_generator):
    cfg = tmp_path / "bench.yaml"
    cfg.write_text("tasks: [upsampling@M\n")
    assert main(["bench", "--config", str(cfg), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, str(cfg), "YAML")


# --- generator files ---------------------------------------------------------------------------

class _Boom:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refused_pickle_is_one_line(tmp_path, capsys):
    image, marker, evil = png(tmp_path / "x.png"), tmp_path / "executed", tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": _Boom(marker)}, protocol=4))
    assert main(restore_args(image, out=tmp_path / "out", extra=["--generator", str(evil)])) == 2
    one_line_error(capsys, "refusing", "system", str(evil))
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_unexpected_exception_keeps_its_traceback(tmp_path, monkeypatch):
    import rusir.restore_files

    def bug(*args, **kwargs):
        raise RuntimeError("a real bug")

    monkeypatch.setattr(rusir.restore_files, "restore_files", bug)
    with pytest.raises(RuntimeError, match="a real bug"):
        main(restore_args(png(tmp_path / "x.png"), out=tmp_path / "out"))


def test_shipped_generator_by_its_path_uses_its_own_preset(tmp_path, capsys, monkeypatch):
    if not SHIPPED.is_file():
        pytest.skip("embedded generator not shipped")
    import rusir.inversion.method as method
    used = []
    real = method.load_preset

    def spy(name):
        used.append(str(name))
        return real(name)

    monkeypatch.setattr(method, "load_preset", spy)
    monkeypatch.chdir(ROOT)
    image, out = png(tmp_path / "x.png"), tmp_path / "out"
    assert main(restore_args(image, out=out, extra=[
        "--generator", "rusir/assets/toyfaces64.safetensors", "--steps", "1,1,1"])) == 0
    assert used == ["offline"]       # the shipped file's preset, as by name (not the paper's VGG one)
    assert (out / "x_restored.png").is_file()


# --- steps and rates ---------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [
    ("--steps", "-1,1,1"), ("--steps", "1.5,1,1"), ("--steps", "1,1"), ("--steps", "a,b,c"),
    ("--steps", ""), ("--lr-scale", "nan"), ("--lr-scale", "inf"), ("--lr-scale", "-1"),
    ("--lr-scale", "0")])
def test_restore_refuses_bad_steps_and_rates(tmp_path, capsys, no_generator, option, value):
    image, out = png(tmp_path / "x.png"), tmp_path / "out"
    assert main(restore_args(image, out=out) + [f"{option}={value}"]) == 2
    one_line_error(capsys, option)
    assert not out.exists()


@pytest.mark.parametrize("option, value", [
    ("--steps", "-1,1,1"), ("--steps", "1,1,1.5"), ("--steps", "0,-5,1"),
    ("--baseline-steps", "-3"), ("--n-images", "0"), ("--max-items", "-1"), ("--batch", "0"),
    ("--batch", "2.5")])
def test_bench_refuses_bad_numbers_before_any_item(tmp_path, capsys, no_generator, option, value):
    out = tmp_path / "out"
    args = ["bench", "--images", "heldout:1", "--tasks", "denoising@XS", "--out", str(out),
            "--no-progress", "--device", "cpu"]
    assert main(args + [f"{option}={value}"]) == 2
    one_line_error(capsys, option)
    assert not out.exists()


@pytest.mark.parametrize("line, option", [("steps: [-1, 1, 1]", "steps"), ("steps: [1, 1.5, 1]", "steps"),
                                          ("device: bogus", "device"), ("n_images: 0", "n_images")])
def test_bench_config_values_are_checked_like_options(tmp_path, capsys, no_generator, line, option):
    cfg, out = tmp_path / "bench.yaml", tmp_path / "out"
    cfg.write_text(f"images: heldout:1\ntasks: [denoising@XS]\n{line}\n")
    assert main(["bench", "--config", str(cfg), "--out", str(out)]) == 2
    one_line_error(capsys, str(cfg), option)
    assert not out.exists()


def test_demo_refuses_negative_steps(tmp_path, capsys, no_generator):
    assert main(["demo", "--out", str(tmp_path / "out"), "--steps=-1,1,1"]) == 2
    one_line_error(capsys, "--steps")


# --- image files -------------------------------------------------------------------------------

def huge_png(path: Path, side: int = 20000) -> Path:
    """A tiny PNG whose header claims side x side pixels: over Pillow's decompression-bomb limit."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("kind", ["bomb", "corrupt", "directory", "missing", "truncated"])
def test_unreadable_images_refused_before_the_compute(tmp_path, capsys, no_generator, kind):
    bad = tmp_path / "bad.png"
    if kind == "bomb":
        huge_png(bad)
    elif kind == "corrupt":
        bad.write_text("not an image")
    elif kind == "directory":
        bad.mkdir()
    elif kind == "truncated":
        png(tmp_path / "full.png", (64, 64))
        bad.write_bytes((tmp_path / "full.png").read_bytes()[:60])
    good = png(tmp_path / "good.png")
    out = tmp_path / "out"
    assert main(restore_args(good, bad, out=out)) == 2
    line = one_line_error(capsys, str(bad))
    assert kind != "bomb" or "too large" in line
    assert not out.exists()     # nothing written, not even the first (good) image


# --- --mask ------------------------------------------------------------------------------------

def test_mask_with_another_aspect_ratio_is_refused(tmp_path, capsys, no_generator):
    image, mask = png(tmp_path / "x.png", (64, 64)), png(tmp_path / "m.png", (48, 32), (255, 255, 255))
    args = ["restore", str(image), "--task", "inpainting", "--mask", str(mask), "--out",
            str(tmp_path / "out"), "--steps", "1,1,1"]
    assert main(args) == 2
    line = one_line_error(capsys, str(mask), "48x32", "64x64")
    assert "aspect ratio" in line
    assert not (tmp_path / "out").exists()


def test_mask_with_the_same_aspect_ratio_is_resized(tmp_path, capsys):
    image = png(tmp_path / "x.png", (64, 64))
    mask = Image.new("L", (32, 32), 255)
    mask.paste(0, (8, 8, 24, 24))
    mask.save(tmp_path / "m.png")
    args = ["restore", str(image), "--task", "inpainting", "--mask", str(tmp_path / "m.png"),
            "--out", str(tmp_path / "out"), "--steps", "1,1,1"]
    assert main(args) == 0
    assert (tmp_path / "out" / "x_restored.png").is_file()


def test_float_tiff_with_a_nan_pixel_is_refused_before_the_generator(tmp_path, capsys, no_generator):
    import numpy as np
    a = np.full((16, 16), 0.5, dtype=np.float32)
    a[2, 2] = np.nan
    path = tmp_path / "nan.tiff"
    Image.fromarray(a, "F").save(path)
    assert main(restore_args(path, out=tmp_path / "out")) == 2
    one_line_error(capsys, "nan.tiff", "non-finite pixel")


def test_an_all_black_mask_is_refused_in_one_line(tmp_path, capsys):
    """Nothing known: the restore used to give back the untouched start image with exit 0."""
    image, mask = png(tmp_path / "face.png"), png(tmp_path / "mask.png", color=(0, 0, 0))
    args = ["restore", str(image), "--task", "inpainting", "--mask", str(mask), "--out", str(tmp_path / "out"),
            "--steps", "1,1,1"]
    assert main(args) == 2
    one_line_error(capsys, "no known pixel")
    assert not (tmp_path / "out").exists()


def test_a_nan_loss_ends_the_restore_in_one_line(tmp_path, capsys, monkeypatch):
    """A loss that turns NaN (here every loss, patched) used to give back the start image, exit 0."""
    from rusir.inversion.losses import CompositeLoss
    original = CompositeLoss.forward
    monkeypatch.setattr(CompositeLoss, "forward", lambda self, *a, **k: original(self, *a, **k) * float("nan"))
    out = tmp_path / "out"
    assert main(restore_args(png(tmp_path / "face.png"), out=out)) == 2
    err = capsys.readouterr().err        # what a terminal shows: the progress bar was cleared by \r
    visible = [line.rsplit("\r", 1)[-1] for line in err.split("\n") if line.strip()]
    assert len(visible) == 1 and visible[0].startswith("rusir restore: error: W step 0: the loss is NaN"), err
    assert "image(s) [0]" in visible[0] and "Traceback" not in err
    assert not out.exists()
