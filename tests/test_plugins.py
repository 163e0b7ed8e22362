"""A user's package extends rusir through entry points, and the CLI finds them in a new process.

tests/data/rusir_plugin_demo is a plug-in package (a degradation `darken`, a method
`plain_rusir`, a generator family `pointer`). The test installs it the way pip would leave it
(a `.dist-info` with its entry points from its pyproject.toml, on the path of a fresh process),
then runs `rusir` in a subprocess: no code of the test registers anything in that process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import fixture_path
from rusir import plugins

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "data" / "rusir_plugin_demo"


def install_metadata(site: Path) -> None:
    """What `pip install` leaves for the entry points: a .dist-info with entry_points.txt."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    info = site / "rusir_plugin_demo-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: 0.1.0\n")
    lines = []
    for group, eps in project["entry-points"].items():
        lines += [f"[{group}]"] + [f"{name} = {value}" for name, value in eps.items()] + [""]
    (info / "entry_points.txt").write_text("\n".join(lines))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    install_metadata(site)
    path = os.pathsep.join([str(site), str(PLUGIN), str(ROOT)])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "RUSIR_OFFLINE": "1"}


def rusir(env, *args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rusir", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_cli_lists_a_plugin_degradation(env, tmp_path):
    out = rusir(env, "tasks", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "darken" in out.stdout.split("tasks:")[1].split()


def test_restore_runs_a_plugin_degradation_with_a_plugin_family(env, tmp_path):
    pointer = tmp_path / "tiny.rusirptr"
    pointer.write_text(str(fixture_path("tiny32.pkl")))
    clean = tmp_path / "face.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(clean)
    out = rusir(env, "restore", str(clean), "--simulate", "--task", "darken", "--level", "M",
                "--generator", str(pointer), "--steps", "1,1,1", "--loss", "offline", "--out",
                str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "out" / "face_restored.png").is_file()


def test_bench_runs_a_plugin_method_on_a_plugin_degradation(env, tmp_path):
    out = rusir(env, "bench", "--generator", str(fixture_path("tiny32.pkl")), "--images", "heldout:1",
                "--methods", "plain_rusir", "--tasks", "darken@M", "--steps", "1,1,1", "--loss", "offline",
                "--out", str(tmp_path / "bench"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    records = list((tmp_path / "bench").rglob("record.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert (rec["method"], rec["task"]) == ("plain_rusir", "darken")


def test_without_the_package_the_names_are_unknown(tmp_path):
    """The same commands without the plug-in installed: the names are refused in one line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = rusir(env, "tasks", cwd=tmp_path)
    assert "darken" not in out.stdout


def test_a_broken_plugin_is_refused_in_one_line(monkeypatch):
    class Broken:
        name, value, dist = "oops", "nowhere:thing", None

        def load(self):
            raise ImportError("No module named 'nowhere'")

    monkeypatch.setattr(plugins, "entry_points", lambda group: [Broken()])
    plugins.load.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"plug-in 'oops' \(rusir.methods, package \?: nowhere:thing\) "
                                             r"failed to load: ImportError"):
            plugins.load("rusir.methods")
    finally:
        plugins.load.cache_clear()


@pytest.mark.slow
def test_ray_workers_find_the_plugins(env, tmp_path):
    """`rusir bench --engine ray`: a local Ray started by the CLI; its workers import the plug-ins."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'rusir[cluster]')")
    out = rusir(env, "bench", "--generator", str(fixture_path("tiny32.pkl")), "--images", "heldout:1",
                "--methods", "plain_rusir", "--tasks", "darken@M", "--steps", "1,1,1", "--loss", "offline",
                "--engine", "ray", "--out", str(tmp_path / "bench"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    rec = json.loads(next((tmp_path / "bench").rglob("record.json")).read_text())
    assert (rec["method"], rec["task"]) == ("plain_rusir", "darken")


def test_the_registries_ask_the_plug_ins_only_for_a_name_not_built_in(monkeypatch):
    """In-process (no package installed): an unknown degradation or method name looks up the
    entry points and finds the plug-in; a built-in name never triggers the look-up."""
    import rusir.baselines as baselines
    from rusir.degradations import Upsampling, make, registry
    asked = []

    def load(group):
        asked.append(group)
        if group == "rusir.degradations":
            return (("fakeblur", lambda level=None, seed=0, **kw: Upsampling(level=level or "M", seed=seed)),)
        return (("fakemethod", baselines.METHODS["rusir"]),)
    monkeypatch.setattr(plugins, "load", load)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(baselines, "METHODS", dict(baselines.METHODS))
    make("upsampling", "M")
    baselines.get_method("rusir")
    assert asked == []                                               # built in: no look-up
    assert make("fakeblur", "S").name == "fakeblur" and asked == ["rusir.degradations"]
    assert baselines.get_method("fakemethod") is baselines.METHODS["rusir"]
    assert asked == ["rusir.degradations", "rusir.methods"]
