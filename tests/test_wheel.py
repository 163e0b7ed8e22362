"""rusir installed from a wheel works as it does from the clone: the way Colab installs it.

A notebook's first cell on Colab runs `pip install "rusir[notebooks,metrics] @ git+<repo>"`: pip
builds a wheel from the repository and installs it. This test does the same from the checkout's
tracked files: it builds the wheel, installs it (without its dependencies, which the test
environment already has, made visible through a path file) into a fresh virtual environment
that cannot see the checkout, then runs the quickstart notebook's first cells, the `rusir`
console script, and reads what must ship as package data: the embedded generator and the
held-out faces, the loss presets and the baselines' tables.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab  # noqa: E402

pytestmark = pytest.mark.slow


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert out.returncode == 0, f"{' '.join(map(str, args))}\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (the wheel is built from its tracked files)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"                                   # a clean clone's files: tracked only
    files = run("git", "-C", str(ROOT), "ls-files", "-z").stdout.split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
        str(tmp / "dist"), str(src))
    wheel = next((tmp / "dist").glob("rusir-*.whl"))
    env = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(env))
    python = env / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel))
    # the dependencies: this environment's packages, after the wheel's own (a path file adds the
    # directory to sys.path without running its .pth files, so the editable rusir stays out)
    site = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    (Path(site) / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env


def in_venv(env: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return run(*args, cwd=cwd, env={**environ, "OMP_NUM_THREADS": "1", "RUSIR_OFFLINE": "1"})


def test_the_wheel_holds_the_package_data(venv):
    wheel = next(venv.parent.joinpath("dist").glob("rusir-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("rusir/assets/toyfaces64.safetensors", "rusir/inversion/loss_presets/offline.yaml",
                   "rusir/baselines/tables/pulse.yaml"):
        assert needed in names, f"{needed} is not in the wheel"
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    extras = set(re.findall(r"^Provides-Extra: (\S+)", metadata, re.M))
    wanted = re.search(r"rusir\[([^\]]*)\]", colab.install_line()).group(1).split(",")
    assert set(wanted) <= extras, f"the install cell asks for extras {wanted}; the wheel has {extras}"


def test_the_quickstart_notebook_starts_from_the_wheel(venv, tmp_path):
    cells = [c for c in json.loads((ROOT / "notebooks" / "00_quickstart.ipynb").read_text())["cells"]
             if c["cell_type"] == "code"]
    assert colab.install_line() in "".join(cells[0]["source"])     # what Colab would have run
    code = "\n".join("".join(c["source"]) for c in cells[1:4])      # parameters, set-up, first target
    code += "\nimport pathlib; print('rusir from', pathlib.Path(rusir.__file__).parent)\n"
    out = in_venv(venv, str(venv / "bin" / "python"), "-c", code, cwd=tmp_path)
    where = Path(out.stdout.split("rusir from ")[-1].strip())
    assert venv in where.parents, f"rusir was imported from {where}, not from the installed wheel"
    assert "target (1, 3, 8, 8)" in out.stdout


def test_the_console_script_and_the_tables_from_the_wheel(venv, tmp_path):
    out = in_venv(venv, str(venv / "bin" / "rusir"), "tasks", cwd=tmp_path)
    assert "upsampling" in out.stdout
    code = ("from rusir.baselines import baseline_config; from rusir.inversion.presets import load_preset\n"
            "print(sorted(baseline_config('pulse', 'upsampling', 'M'))); print(load_preset('offline'))")
    out = in_venv(venv, str(venv / "bin" / "python"), "-c", code, cwd=tmp_path)
    assert out.stdout.startswith("[") and "LossConfig" in out.stdout
