"""One validation layer (rusir.validation) for every number, size, name and YAML document, shared
by the command line, the YAML configurations and the Python API: a value past a limit is refused
in one line that states the limit, before anything is allocated or computed from it.

Cases that would hang or take all memory if the check were missing run in a child process under
a memory limit and a generous timeout (hang guards only)."""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rusir import degradations, validation
from rusir.cli import COMMANDS, main
from rusir.data import avatars
from rusir.data.images import load_image
from rusir.faces import align as A
from rusir.faces import photo as P
from rusir.inversion.restore import restore

from conftest import small_generator
from test_cli_errors import no_generator, one_line_error, png  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
LOL = ", ".join(['"lol"'] * 9)


def alias_bomb(key: str) -> str:
    """A "billion laughs" YAML value under `key`: 9 levels of 9 aliases, 9^9 strings expanded,
    a few hundred bytes as written."""
    levels = [f"&l0 [{LOL}]"] + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return f"{key}: [{', '.join(levels)}]\n"


def guarded(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`rusir ARGS` in a child limited to 6 GiB of address space and 120 s (a hang guard)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    code = "import sys; from rusir.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, preexec_fn=limit, env=env)


def refused(result: subprocess.CompletedProcess, *words: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr[-2000:])
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# --- the checkers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["-1", "1.5", "nan", "1e20", "x", "", "True", "1" + "0" * 40])
def test_whole_refuses_what_is_not_a_bounded_whole_number(text):
    with pytest.raises(ValueError, match="count"):
        validation.whole(text, "count", 0, 10, None)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 0.0, 1e300, "1e309", True, None])
def test_number_refuses_what_is_not_a_bounded_finite_number(value):
    with pytest.raises(ValueError, match="rate"):
        validation.number(value, "rate", 0.0, 1e3, "MAX_RATE")


def test_a_limit_is_stated_in_the_error():
    with pytest.raises(ValueError, match=r"limit rusir\.validation\.MAX_STEPS = 100000"):
        validation.step_counts([10 ** 20, 0, 0], 3)
    assert validation.step_counts("1, 2,0", 3) == (1, 2, 0)


def test_a_bad_json_file_is_named_by_its_path_unless_told_otherwise(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match=r"^.*bad\.json: not valid JSON"):
        validation.read_json(bad)
    with pytest.raises(ValueError, match=r"^the manifest: not valid JSON"):
        validation.read_json(bad, "the manifest")


def test_yaml_alias_bomb_is_refused_before_it_is_built():
    with pytest.raises(ValueError, match="f.yaml: .*MAX_YAML_NODES"):
        validation.load_yaml(alias_bomb("steps"), "f.yaml")
    assert validation.load_yaml("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}


@pytest.mark.parametrize("text, words", [
    ("&a [*a]", "recursive"), ("[" * 3000 + "]" * 3000, "MAX_YAML_DEPTH"),
    ("a: !!python/object/apply:os.system ['true']", "!!python"), ("a: [1", "line 1"),
    ("x: " + "1" * (2 << 20), "MAX_DOCUMENT_BYTES")])
def test_yaml_problems_are_one_line(text, words):
    with pytest.raises(ValueError) as info:
        validation.load_yaml(text, "f.yaml")
    message = str(info.value)
    assert message.startswith("f.yaml: ") and "\n" not in message and words in message


def test_grid_size_is_counted_from_the_axes_and_templates_cannot_be_wide():
    assert validation.grid_size([3, 4]) == 12
    with pytest.raises(ValueError, match="1e\\+12 combinations.*MAX_GRID_SETS"):
        validation.grid_size([10] * 12)
    with pytest.raises(ValueError, match="MAX_NAME_LENGTH"):
        validation.name_template("{task:2000000000}")
    with pytest.raises(ValueError, match="MAX_NAME_LENGTH"):
        validation.name_template("{task:.2000000000}")
    assert validation.name_template("{task}_{level:>3}") == "{task}_{level:>3}"
    with pytest.raises(ValueError, match=r"^bad name template '\{task_\{level\}' \(.*\)$"):
        validation.name_template("{task_{level}")      # unbalanced braces: one line, no traceback


# --- every numeric command-line option and config key is bounded -----------------------------------

def _typed_options():
    for name, (_, setup) in COMMANDS.items():
        parser = argparse.ArgumentParser()
        setup(parser)
        for action in parser._actions:
            if action.type is not None and action.type is not Path:
                yield f"{name} {action.option_strings[0] if action.option_strings else action.dest}", action.type


@pytest.mark.parametrize("option, convert", list(_typed_options()), ids=lambda v: str(v))
def test_every_typed_option_refuses_huge_and_non_finite_numbers(option, convert):
    """A class test: every option with a type refuses 10^30 and NaN with argparse's one-line
    error (bare int/float types let 10^30 through to the compute)."""
    for text in ("1" + "0" * 30, "nan", "-1e300"):
        with pytest.raises(argparse.ArgumentTypeError):
            convert(text)


@pytest.mark.parametrize("option, value, words", [
    ("--factor", "300", "MAX_FACTOR"), ("--factor", "1e300", "MAX_FACTOR"),
    ("--steps", "100000000000000000000,0,0", "MAX_STEPS"), ("--lr-scale", "1e300", "MAX_RATE"),
    ("--seed", "99999999999999999999", "MAX_SEED"), ("--discrepancy", "1e300", "MAX_TAU")])
def test_restore_refuses_huge_numbers_in_one_line(tmp_path, capsys, no_generator, option, value, words):
    image, out = png(tmp_path / "x.png"), tmp_path / "out"
    args = ["restore", str(image), "--task", "upsampling", "--align", "--out", str(out), f"{option}={value}"]
    assert main(args) == 2
    one_line_error(capsys, option, words)
    assert not out.exists()


@pytest.mark.parametrize("option, value", [("--crops", "-5"), ("--crops", "0"), ("--crop-size", "0")])
def test_report_refuses_zero_and_negative_crops(tmp_path, capsys, option, value):
    """0 used to mean "default" silently; None (the option left out) is the only default."""
    assert main(["report", str(tmp_path), f"{option}={value}"]) == 2
    one_line_error(capsys, option, "whole number >= 1")
    from rusir.report import set_metrics_for
    with pytest.raises(ValueError, match="crop"):
        set_metrics_for(None, [], crops=0)
    with pytest.raises(ValueError, match="crop size"):
        set_metrics_for(None, [], crop_size=0)


@pytest.mark.parametrize("line, option, words", [("batch: 100000000", "batch", "MAX_BATCH"),
                                                 ("seed: 1.0e+30", "seed", "MAX_SEED"),
                                                 ("fail_fast: maybe", "fail_fast", "true or false")])
def test_bench_config_numbers_are_bounded_like_options(tmp_path, capsys, no_generator, line, option, words):
    cfg, out = tmp_path / "bench.yaml", tmp_path / "out"
    cfg.write_text(f"images: heldout:1\ntasks: [denoising@XS]\n{line}\n")
    assert main(["bench", "--config", str(cfg), "--out", str(out)]) == 2
    one_line_error(capsys, str(cfg), option, words)


@pytest.mark.parametrize("spec, words", [("heldout:62-65", "0-63"), ("heldout:1000", "there are 64"),
                                         ("heldout:5-2", "0-63"), ("heldout:0", "1 <= N <= 64")])
def test_heldout_beyond_the_64_faces_is_an_error(tmp_path, capsys, no_generator, spec, words):
    """heldout:62-65 ran 2 faces and heldout:1000 ran 64, silently."""
    assert main(["bench", "--images", spec, "--tasks", "denoising@XS", "--out", str(tmp_path / "o"),
                 "--no-progress", "--device", "cpu"]) == 2
    one_line_error(capsys, spec, words)
    from rusir.engine.plan import resolve_images
    assert [n for n, _ in resolve_images("heldout:60-63")] == [f"{i:04d}.png" for i in range(60, 64)]


# --- documents that would hang or take all memory: in a guarded child -------------------------------

def test_bench_config_alias_bomb(tmp_path):
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(alias_bomb("tasks"))
    refused(guarded(["bench", "--config", str(cfg), "--out", str(tmp_path / "o")], tmp_path),
            str(cfg), "MAX_YAML_NODES")


def sweep_file(tmp_path: Path, body: str) -> Path:
    (tmp_path / "nb.ipynb").write_text("{}")
    path = tmp_path / "s.yaml"
    path.write_text("notebook: nb.ipynb\n" + body)
    return path


def test_sweep_file_alias_bomb(tmp_path):
    path = sweep_file(tmp_path, "grid: {a: [1]}\nparameters:\n  " + alias_bomb("b"))
    refused(guarded(["sweep", str(path), "--dry-run"], tmp_path), str(path), "MAX_YAML_NODES")


def test_sweep_grid_of_a_trillion_sets_is_refused_in_dry_run(tmp_path):
    axes = ", ".join(f"a{i}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" for i in range(12))
    path = sweep_file(tmp_path, f"grid: {{{axes}}}\n")
    refused(guarded(["sweep", str(path), "--dry-run"], tmp_path), str(path), "MAX_GRID_SETS")


def test_sweep_name_template_with_a_huge_field_width(tmp_path):
    path = sweep_file(tmp_path, 'name: "{a:2000000000}"\ngrid: {a: [1]}\n')
    refused(guarded(["sweep", str(path), "--dry-run"], tmp_path), str(path), "MAX_NAME_LENGTH")


# --- the Python API -------------------------------------------------------------------------------

def test_load_image_refuses_a_huge_size_before_resizing(monkeypatch):
    def resize(*args, **kwargs):
        raise AssertionError("resized: the size was not checked first")
    monkeypatch.setattr(Image.Image, "resize", resize)
    with pytest.raises(ValueError, match="MAX_IMAGE_SIDE"):
        load_image(Image.new("RGB", (8, 8)), size=200000)


def test_degradation_options_are_bounded():
    for name, kwargs, words in [("upsampling", dict(factor=1e300), "MAX_FACTOR"),
                                ("inpainting", dict(strokes=10 ** 9), "MAX_STROKES"),
                                ("blur", dict(sigma=float("inf")), "sigma"),
                                ("denoising", dict(photons=float("nan")), "photons"),
                                ("deartifacting", dict(quality=0), "JPEG quality")]:
        with pytest.raises(ValueError, match=words):
            degradations.make(name, "M", **kwargs)
    with pytest.raises(ValueError, match="MAX_IMAGE_SIDE"):
        degradations.make("denoising", "M", resolution=10 ** 6)


def test_restore_refuses_huge_steps_and_rates_before_any_step():
    G, target = small_generator(resolution=8), torch.rand(1, 3, 8, 8)
    deg = degradations.make("denoising", "M")
    with pytest.raises(ValueError, match="MAX_STEPS"):
        restore(G, target, deg, steps=(10 ** 20, 0, 0), progress=False)
    with pytest.raises(ValueError, match="MAX_RATE"):
        restore(G, target, deg, lr_scale=1e300, progress=False)
    with pytest.raises(ValueError, match="MAX_BATCH"):
        restore(G, target, deg, batch_size=10 ** 9, progress=False)


@pytest.mark.parametrize("kwargs, words", [(dict(factor=300), "MAX_FACTOR"), (dict(seed=-1), "seed"),
                                           (dict(files_per_call=10 ** 9, align=False), "MAX_BATCH")])
def test_restore_files_bounds_its_numbers_before_the_generator(tmp_path, no_generator, kwargs, words):
    from rusir.restore_files import restore_files
    with pytest.raises(ValueError, match=words):
        restore_files([png(tmp_path / "x.png")], "upsampling", **{"align": True, **kwargs},
                      out=tmp_path / "out")


def test_an_8px_generator_at_xl_names_the_factor_and_the_resolution(tmp_path, monkeypatch):
    """It said "size must be positive, got 0"."""
    import rusir.restore_files as rf
    monkeypatch.setattr(rf, "setup", lambda *a, **k: (small_generator(resolution=8), None, (1, 0, 0)))
    with pytest.raises(ValueError, match=r"upsampling by 32 \(level XL\) needs images of at least "
                                         r"32 px, got 8x8 px"):
        rf.restore_files([png(tmp_path / "x.png")], "upsampling", "XL", out=tmp_path / "out")


# --- photos -----------------------------------------------------------------------------------

def face_photo(size: int = 64) -> tuple[Image.Image, np.ndarray]:
    """A plain photo with one avatar's landmarks (photo pixels)."""
    return Image.new("RGB", (size, size), (200, 120, 60)), avatars.landmarks(64) * size / 64


@pytest.fixture
def no_restore(monkeypatch):
    """Fail the test if a face is restored: the refusal must come before the compute."""
    def refuse(*args, **kwargs):
        raise AssertionError("a face was restored before the input was checked")
    monkeypatch.setattr(P, "restore", refuse)


def test_restore_photo_takes_a_pil_image(no_restore):
    _, lm = face_photo()
    with pytest.raises(TypeError, match="restore_photo takes .*PIL.Image.*got Tensor"):
        P.restore_photo(small_generator(resolution=8), torch.rand(1, 3, 64, 64), "denoising",
                        landmarks=[lm])


@pytest.mark.parametrize("factor, words", [(200, "MAX_FACTOR"), (1e300, "MAX_FACTOR")])
def test_restore_photo_refuses_a_huge_factor_before_restoring(no_restore, factor, words):
    photo, lm = face_photo()
    with pytest.raises(ValueError, match=words):
        P.restore_photo(small_generator(resolution=16), photo, "upsampling", landmarks=[lm],
                        factor=factor, template="toyfaces64")


def test_restore_photo_refuses_an_output_over_the_megapixel_limit_before_restoring(no_restore):
    photo, lm = face_photo(400)          # 400 px enlarged 64x: 25600 px square, 655 MP
    with pytest.raises(ValueError, match="655 MP.*MAX_OUTPUT_MEGAPIXELS"):
        P.restore_photo(small_generator(resolution=16), photo, "upsampling", landmarks=[lm],
                        factor=64, template="toyfaces64", output=P.PhotoOutput(scale=64))


@pytest.mark.parametrize("change, words", [
    (lambda lm: np.vstack([lm[:1], lm[:1] + [1e-5, 0], lm[2:]]), "1e-05 px apart"),
    (lambda lm: lm + [1000, 0], "outside the 64x64 px photo"),
    (lambda lm: lm[:4], "5 \\(x, y\\) points")])
def test_bad_landmarks_are_refused_before_restoring(no_restore, change, words):
    """Eyes 1e-5 px apart used to be restored, then lost in a crash before anything was written."""
    photo, lm = face_photo()
    with pytest.raises(ValueError, match=words):
        P.restore_photo(small_generator(resolution=16), photo, "upsampling", landmarks=[change(lm)],
                        template="toyfaces64")


def test_landmarks_as_xy_objects_are_read_as_points(tmp_path):
    photo, lm = face_photo()
    objects = [{"x": float(x), "y": float(y)} for x, y in lm]
    np.testing.assert_array_equal(A.check_landmarks(objects, photo.size), lm)
    from rusir.restore_files import read_landmarks
    path = tmp_path / "x.png"
    photo.save(path)                     # the landmarks are checked against the image they name
    assert np.array_equal(P.find_faces(photo, read_landmarks([objects], [path])[path])[0][1], lm)
    with pytest.raises(ValueError, match="5 \\(x, y\\) points"):
        A.check_landmarks([{"x": 1}] * 5)


@pytest.mark.parametrize("line, words", [("seed: 1.0e+30", "MAX_SEED"), ("max_levels: 1000000000", "MAX_LEVELS"),
                                         ("min_side: 0", "min_side")])
def test_loss_yaml_numbers_are_bounded(tmp_path, line, words):
    from rusir.inversion.presets import load_preset
    path = tmp_path / "loss.yaml"
    path.write_text(f"loss:\n  terms: {{l1: 1.0}}\n  {line}\n")
    with pytest.raises(ValueError, match=f"loss.yaml: .*{words}"):
        load_preset(path)
    with pytest.raises(ValueError, match="MAX_YAML_NODES"):
        path.write_text("loss:\n  terms: {l1: 1.0}\n  " + alias_bomb("description"))
        load_preset(path)


def test_crops_and_aligned_sizes_are_bounded_in_the_python_api(monkeypatch):
    from rusir.metrics import random_crops

    def allocate(*args, **kwargs):
        raise AssertionError("allocated before the size was checked")
    monkeypatch.setattr(torch, "randint", allocate)
    monkeypatch.setattr(Image.Image, "transform", allocate)
    monkeypatch.setattr(Image.Image, "resize", allocate)
    with pytest.raises(ValueError, match="MAX_CROPS"):
        random_crops(torch.rand(1, 3, 8, 8), 4, 10 ** 9)
    photo, lm = face_photo()
    with pytest.raises(ValueError, match="MAX_IMAGE_SIDE"):
        A.warp_quad(photo, A.TOYFACES64.frame(lm), 10 ** 6)
    with pytest.raises(ValueError, match="MAX_IMAGE_SIDE"):
        A.align(photo, lm, 10 ** 6, "toyfaces64")


def test_a_preset_name_is_one_of_the_shipped_names(tmp_path):
    """A name that walks out of the preset folder ("../../x") is not a preset, even if the file
    exists (a model file's metadata names its default loss by name)."""
    from rusir.inversion.presets import PRESET_DIR, load_preset
    outside = tmp_path / "evil.yaml"
    outside.write_text("loss:\n  terms: {l1: 1.0}\n")
    relative = os.path.relpath(outside.with_suffix(""), PRESET_DIR)
    with pytest.raises(ValueError, match="unknown loss preset"):
        load_preset(relative)


@pytest.mark.parametrize("body, words", [("[" * 100000 + "]" * 100000, "nested too deeply"),
                                         ("x" * (2 << 20), "MAX_DOCUMENT_BYTES"), ("[1,", "not valid JSON")])
def test_landmark_json_is_bounded(tmp_path, body, words):
    from rusir.restore_files import read_landmarks
    path = tmp_path / "lm.json"
    path.write_text(body)
    with pytest.raises(ValueError, match=words):
        read_landmarks(path, [tmp_path / "x.png"])
