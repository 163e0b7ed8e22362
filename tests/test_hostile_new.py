"""Hostile and careless input on the surfaces added with photos, test sets and grayscale
(scripts/probe_new_surfaces.py found these): per-face files written through a linked or
misplaced `<stem>.faces` folder, two `rusir data build` runs into one folder, manifests that name
files outside their folders or hold malformed fields, and degradation options that ended in a
TypeError. Each is refused in one line before any compute."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from rusir import degradations
from rusir.cli import main
from rusir.data import claims
from rusir.data.manifest import read_manifest
from rusir.data.outputs import OutputClaims, OutputError, write_file
from rusir.validation import file_name, read_json, relative_path

from test_cli_errors import no_generator, one_line_error  # noqa: F401  (fixture)
from test_faces_photo import degraded_photo


# --- the validation layer: names a document gives ------------------------------------------------

@pytest.mark.parametrize("bad", ["../x.png", "a/b.png", "a\\b.png", "..", ".", "", "a\0.png",
                                 "x" * 256, 5, None])
def test_file_name_refuses_anything_but_a_plain_name(bad):
    with pytest.raises(ValueError, match="plain file name"):
        file_name(bad, "faces[0].file")
    assert file_name("0000.png") == "0000.png"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "sub/../../x.jpg", "a//b.jpg",
                                 "./a.jpg", "", 7])
def test_relative_path_refuses_escapes(bad):
    with pytest.raises(ValueError):
        relative_path(bad, "source")
    assert relative_path("sub/a.jpg") == "sub/a.jpg"


def test_read_json_finite_refuses_nan_and_infinity(tmp_path):
    for text in ('{"x": NaN}', '[Infinity]', '[-Infinity]'):
        (tmp_path / "a.json").write_text(text)
        with pytest.raises(ValueError, match="not a number a document may hold"):
            read_json(tmp_path / "a.json", finite=True)
        assert read_json(tmp_path / "a.json") is not None       # records may hold NaN metrics


# --- outputs: no link on the way to a per-face file ----------------------------------------------

def test_write_file_refuses_a_linked_or_misplaced_subfolder(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "x.faces")
    with pytest.raises(OutputError, match="symbolic link"):
        write_file(out / "x.faces" / "face_0.png", lambda p: p.write_text("x"), folder=out)
    assert list(elsewhere.iterdir()) == []
    os.symlink(tmp_path / "nowhere", out / "y.faces")
    with pytest.raises(OutputError, match="symbolic link"):
        write_file(out / "y.faces" / "face_0.png", lambda p: p.write_text("x"), folder=out)
    assert not (tmp_path / "nowhere").exists()
    (out / "z.faces").write_text("a file")
    with pytest.raises(OutputError, match="not a folder"):
        write_file(out / "z.faces" / "face_0.png", lambda p: p.write_text("x"), folder=out)
    write_file(out / "w.faces" / "face_0.png", lambda p: p.write_text("x"), folder=out)
    assert (out / "w.faces" / "face_0.png").read_text() == "x"


def test_output_claims_are_per_path_inside_the_folder(tmp_path):
    """a.faces/face_0.png and b.faces/face_0.png are two outputs; another run's claim on one of
    them refuses this run."""
    other = claims.claim_token()
    assert claims.claim_item(tmp_path, "b.faces/face_0.png", other)
    with OutputClaims(tmp_path, [tmp_path / "a.faces" / "face_0.png"]):
        pass
    with pytest.raises(OutputError, match="being written by another run"):
        with OutputClaims(tmp_path, [tmp_path / "b.faces" / "face_0.png"]):
            pass


@pytest.mark.parametrize("kind", ["link", "dangling", "file", "face link"])
def test_align_refuses_a_faces_folder_that_is_not_a_folder_before_the_generator(
        tmp_path, capsys, no_generator, kind):
    photo, lms = degraded_photo(tmp_path)
    (tmp_path / "lm.json").write_text(json.dumps(lms))
    out, elsewhere, precious = tmp_path / "out", tmp_path / "elsewhere", tmp_path / "precious.png"
    out.mkdir()
    elsewhere.mkdir()
    precious.write_text("keep")
    faces = out / "photo.faces"
    if kind == "link":
        os.symlink(elsewhere, faces)
    elif kind == "dangling":
        os.symlink(tmp_path / "nowhere", faces)
    elif kind == "file":
        faces.write_text("a file")
    else:
        faces.mkdir()
        os.symlink(precious, faces / "face_0.png")
    argv = ["restore", str(photo), "--task", "upsampling", "--align", "--landmarks",
            str(tmp_path / "lm.json"), "--out", str(out), "--steps", "0,0,0"]
    for extra in ([], ["--overwrite"]):
        assert main(argv + extra) == 2
        one_line_error(capsys, "photo.faces")
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "nowhere").exists()
    assert precious.read_text() == "keep"


# --- test sets: one build per folder; manifests checked before any file is opened -----------------

def _face(name="0000.png", **kw):
    return {"file": name, "sha256": "0" * 64, "source": "a.png", **kw}


def _manifest(**kw):
    return {"format": "rusir-faces/1", "template": "toyfaces64", "resolution": 64,
            "faces": [_face()], "skipped": [], **kw}


@pytest.mark.parametrize("data,words", [
    (_manifest(faces=[_face("../../etc/passwd")]), ["faces[0].file", "plain file name"]),
    (_manifest(faces=[_face("/etc/passwd")]), ["plain file name"]),
    (_manifest(faces=[_face(source="../../../../etc/passwd")]), ["source", "'..'"]),
    (_manifest(faces=[_face(source="/etc/passwd")]), ["source", "relative path"]),
    (_manifest(faces=[_face(source=5)]), ["source"]),
    (_manifest(faces=[_face(), _face()]), ["listed twice"]),
    (_manifest(faces=[_face(), _face("0000.PNG")]), ["listed twice"]),
    (_manifest(faces=[_face(name=5)]), ["plain file name"]),
    (_manifest(faces=[_face(sha256="zz")]), ["sha256"]),
    (_manifest(resolution=10 ** 9), ["resolution", "MAX_IMAGE_SIDE"]),
    (_manifest(resolution=0), ["resolution"]),
    (_manifest(resolution=None), ["resolution"]),
    (_manifest(template=["x"]), ["template"]),
    (_manifest(min_face=math.nan), ["NaN"]),
])
def test_malformed_manifests_are_refused_in_one_line(tmp_path, capsys, data, words):
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ValueError):
        read_manifest(tmp_path)
    for argv in (["data", "verify", str(tmp_path)],
                 ["data", "verify", str(tmp_path), "--photos", str(tmp_path)]):
        assert main(argv) == 2
        one_line_error(capsys, *words)


def test_a_second_build_into_a_claimed_folder_is_refused(tmp_path, capsys):
    photos, out = tmp_path / "photos", tmp_path / "set"
    photos.mkdir()
    (photos / "lm.json").write_text("{}")
    assert claims.claim_item(out, "manifest.json", claims.claim_token())   # a live build
    assert main(["data", "build", "--photos", str(photos), "--out", str(out),
                 "--landmarks", str(photos / "lm.json")]) == 2
    one_line_error(capsys, "being written by another run")
    assert not (out / "manifest.json").exists()


# --- degradations: options refused as ValueError --------------------------------------------------

@pytest.mark.parametrize("kw,words", [
    (dict(level="Z"), "unknown level"),
    (dict(level="M", seed=math.nan), "seed"),
    (dict(level="M", seed=1.5), "seed"),
    (dict(level="M", seed=[1, "2"]), "seed"),
    (dict(level="M", seed=True), "seed"),
    (dict(level="M", weights=[1, 1, 1]), "weights"),
])
def test_grayscale_options_are_checked(kw, words):
    with pytest.raises(ValueError, match=words):
        degradations.make("grayscale", **kw)
    degradations.make("grayscale", level=None, seed=[1, 2])     # level-free; seeds per image


# --- plug-ins: a broken or clashing package is refused in one line --------------------------------

class _EntryPoint:
    """An installed package's entry point: `load()` gives `obj`, or raises `exc`."""

    def __init__(self, name, obj=None, exc=None):
        self.name, self.obj, self.exc, self.value, self.dist = name, obj, exc, f"pkg.{name}:x", None

    def load(self):
        if self.exc is not None:
            raise self.exc
        return self.obj


@pytest.fixture
def installed(monkeypatch):
    """`installed(group, *entry_points)`: what importlib.metadata reports for the group; the
    registries are restored afterwards."""
    import rusir.baselines as baselines
    from rusir import plugins
    from rusir.degradations import registry
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(baselines, "METHODS", dict(baselines.METHODS))

    def setup(group, *eps):
        monkeypatch.setattr(plugins, "entry_points", lambda group=None, _g=group: list(eps) if group == _g else [])
        plugins.load.cache_clear()
    yield setup
    plugins.load.cache_clear()


def _upsampling(level=None, seed=0, **kw):
    return degradations.Upsampling(level=level or "M", seed=seed)


@pytest.mark.parametrize("eps,words", [
    ([_EntryPoint("x", exc=SystemExit(3))], "failed to load: SystemExit"),
    ([_EntryPoint("denoising", _upsampling)], "name of the built-in task 'denoising'"),
    ([_EntryPoint("Denoising", _upsampling)], "name of the built-in task 'denoising'"),
    ([_EntryPoint("un", _upsampling)], "task initials"),
    ([_EntryPoint("x", _upsampling), _EntryPoint("X", _upsampling)], "both register"),
])
def test_a_broken_or_clashing_degradation_plugin_is_refused(installed, eps, words):
    installed("rusir.degradations", *eps)
    with pytest.raises(ValueError, match=words):
        degradations.make("not_built_in")
    assert type(degradations.make("denoising")).__name__ == "Denoising"   # built-ins unaffected


@pytest.mark.parametrize("returned", [5, None])
def test_a_plugin_factory_that_makes_no_degradation_is_refused(installed, returned):
    installed("rusir.degradations", _EntryPoint("mine", lambda level=None, seed=0: returned))
    with pytest.raises(ValueError, match="not a rusir.degradations.Degradation"):
        degradations.make("mine")


@pytest.mark.parametrize("eps,words", [
    ([_EntryPoint("rusir", lambda *a, **k: None)], "name of the built-in method 'rusir'"),
    ([_EntryPoint("mine", 5)], "not a function"),
])
def test_a_clashing_or_uncallable_method_plugin_is_refused(installed, eps, words):
    import rusir.baselines as baselines
    installed("rusir.methods", *eps)
    with pytest.raises(ValueError, match=words):
        baselines.get_method("mine")


# --- a generator name with a typo is not silently aligned as FFHQ ----------------------------------

def test_an_unknown_generator_name_gets_no_template(tmp_path, capsys):
    from rusir.faces.align import template_for
    with pytest.raises(ValueError, match="unknown generator 'toyface64'"):
        template_for("toyface64")
    assert template_for("models/mine.pkl").name == "ffhq"       # a file: FFHQ's, as documented
    (tmp_path / "photos").mkdir()
    assert main(["data", "build", "--photos", str(tmp_path / "photos"), "--out", str(tmp_path / "set"),
                 "--generator", "toyface64", "--size", "64", "--landmarks", str(tmp_path / "x.json")]) == 2
    one_line_error(capsys, "unknown generator 'toyface64'")


# --- rusir tune: a search space is checked whole before any candidate runs ------------------------

@pytest.mark.parametrize("text,words", [
    ("adam_wplus:\n  grid: {lr: [.nan]}\n", ["lr", "finite"]),
    ("adam_wplus:\n  grid: {lr: [.inf]}\n", ["lr", "finite"]),
    ("adam_wplus:\n  grid: {lr: [1e300]}\n", ["lr", "MAX_RATE"]),
    ("adam_wplus:\n  grid: {lr: [-1]}\n", ["lr", "> 0"]),
    ("adam_wplus:\n  grid: {lr: [fast]}\n", ["lr"]),
    ("adam_wplus:\n  grid: {lr: [[1, 2]]}\n", ["lr"]),
    ("adam_wplus:\n  fixed: {steps: -1}\n  grid: {lr: [0.01]}\n", ["steps", ">= 0"]),
    ("adam_wplus:\n  fixed: {steps: 1e300}\n  grid: {lr: [0.01]}\n", ["steps", "MAX_STEPS"]),
    ("adam_wplus:\n  fixed: {steps: .nan}\n  grid: {lr: [0.01]}\n", ["steps"]),
    ("adam_wplus:\n  grid: {bogus: [1]}\n", ["unknown option", "bogus"]),
    ("adam_wplus:\n  grid: {resolution: [0]}\n", ["resolution"]),
    ("adam_wplus: {fixed: [1], grid: {lr: [0.1]}}\n", ["mappings"]),
    ("adam_wplus:\n  grid:\n" + "".join(f"    o{i}: [{', '.join(map(str, range(16)))}]\n"
                                        for i in range(10)), ["combinations", "MAX_GRID_SETS"]),
])
def test_tune_refuses_a_bad_search_space_before_any_run(tmp_path, capsys, no_generator, text, words):
    from rusir.studies.tuning import search_space
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(ValueError):
        search_space("adam_wplus", tmp_path / "s.yaml")
    assert main(["tune", "--methods", "adam_wplus", "--tasks", "denoising@M", "--search",
                 str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"),
                 "--tables-out", str(tmp_path / "tables"), "--no-progress"]) == 2
    one_line_error(capsys, *words)
    assert not (tmp_path / "tables").exists()


def test_the_shipped_search_spaces_pass_the_checks():
    from rusir.studies.tuning import candidates, search_space
    assert [len(candidates(m, search_space(m))) for m in ("pulse", "lbrgm", "adam_wplus")] == [6, 6, 3]
    assert search_space("pulse")["grid"]["lr"] == [0.1, 0.4, 1.2]


def test_a_yaml_key_given_twice_is_refused(tmp_path, capsys, no_generator):
    """A second `adam_wplus:` block silently replaced the first (any YAML rusir reads)."""
    from rusir.validation import load_yaml
    with pytest.raises(ValueError, match="line 2: key 'a' given twice"):
        load_yaml("a: 1\na: 2\n", "x.yaml")
    assert load_yaml("a: &x {k: 1}\nb:\n  <<: *x\n  k: 2\n") == {"a": {"k": 1}, "b": {"k": 2}}
    (tmp_path / "s.yaml").write_text("adam_wplus: {grid: {lr: [0.1]}}\nadam_wplus: {grid: {lr: [0.2]}}\n")
    assert main(["tune", "--methods", "adam_wplus", "--tasks", "denoising@M", "--search",
                 str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    one_line_error(capsys, "given twice")


def test_tuned_tables_are_not_written_through_a_linked_generator_folder(tmp_path, monkeypatch):
    """`--tables-out DIR` where DIR/<generator> is a link elsewhere: refused, nothing written
    there (the table was written through the link)."""
    from test_tuning import tune
    search = tmp_path / "search.yaml"
    search.write_text("pulse:\n  fixed: {steps: 7}\n  grid:\n    lr: [0.9, 0.1]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "tables").mkdir()
    os.symlink(elsewhere, tmp_path / "tables" / "Generator")   # the small generator's name
    with pytest.raises(OutputError, match="symbolic link"):
        tune(tmp_path, search, [], monkeypatch)        # the records, then the tables
    assert list(elsewhere.iterdir()) == []


# --- the diffusion trainer: options checked, data refused in one line, no pickle on --resume -------

@pytest.mark.parametrize("option,value", [
    ("--kimg", "nan"), ("--kimg", "inf"), ("--kimg", "-1"), ("--batch", "0"), ("--batch", "1e9"),
    ("--lr", "nan"), ("--lr", "1e300"), ("--ema", "2"), ("--warmup", "-1"), ("--groups", "0"),
    ("--channels", "abc"), ("--channels", "0,0"), ("--channels", "100000,100000"),
    ("--attention", "2,0"), ("--threads", "0"), ("--device", "bogus"), ("--max-minutes", "nan"),
    ("--layers-per-block", "0"), ("--log-every", "0"), ("--seed", "nan"),
])
def test_diffusion_trainer_refuses_bad_options(capsys, option, value):
    from rusir.train.diffusion import parse_args
    extra = ["--attention", "0,0"] if option == "--channels" else []
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--data", "x.npy", "--out", "o", option, value, *extra])
    assert exit_.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


@pytest.mark.parametrize("array", [np.zeros((0, 8, 8, 3), np.uint8), np.zeros((2, 8, 8), np.uint8),
                                   np.zeros((2, 8, 8, 3), np.float32)])
def test_training_data_that_are_not_images_are_refused(tmp_path, array):
    from rusir.train.trainer import load_images
    np.save(tmp_path / "d.npy", array)
    with pytest.raises(ValueError, match=r"expected uint8 images \[N >= 1, H, W, 3\]"):
        load_images(tmp_path / "d.npy")
    (tmp_path / "t.npy").write_bytes((tmp_path / "d.npy").read_bytes()[:60])
    with pytest.raises(ValueError, match="not a readable .npy array"):
        load_images(tmp_path / "t.npy")


class _Payload:
    """A pickle that creates a file when it is loaded (what a crafted state.pt could do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_resume_never_unpickles_code_from_a_state_file(tmp_path):
    import torch

    from rusir.train.trainer import load_run_state, save_run_state
    marker = tmp_path / "payload-ran"
    torch.save({"step": 1, "x": _Payload(marker)}, tmp_path / "state.pt")
    with pytest.raises(ValueError, match="not a run state of plain tensors"):
        load_run_state(tmp_path / "state.pt")
    assert not marker.exists()
    save_run_state({"step": 2, "w": torch.ones(3), "rng": torch.get_rng_state()}, tmp_path / "ok.pt")
    assert load_run_state(tmp_path / "ok.pt")["step"] == 2        # a real state still loads
    with pytest.raises(FileNotFoundError, match="no run state"):
        load_run_state(tmp_path / "missing.pt")
