"""The repository URL is in one place (pyproject.toml's [project.urls]); badges and install cells follow it.

Every Colab badge (README, docs) and every notebook's install cell is built from that URL by
tools/colab.py; a second URL anywhere (a copy left behind after the URL changed) fails here.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
GITHUB = re.compile(r"(?:github\.com|colab\.research\.google\.com/github)/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[/\"')\s]|$)")


def first_code_cell(path: Path) -> str:
    return "".join(next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")["source"])


def test_the_url_is_read_from_pyproject():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", colab.repository())
    assert colab.colab_url("notebooks/x.ipynb") == (
        "https://colab.research.google.com/github/" + colab.repository().removeprefix("https://github.com/")
        + "/blob/main/notebooks/x.ipynb")


def test_every_install_cell_uses_the_one_url():
    for path in NOTEBOOKS:
        assert colab.install_line() in first_code_cell(path), f"{path.name}: run python tools/colab.py"


def test_no_other_repository_of_ours_is_named():
    """README, the docs and the notebooks name the project's repository only as pyproject.toml does."""
    ours = colab.repository().removeprefix("https://github.com/")
    texts = [ROOT / "README.md", *NOTEBOOKS, *(ROOT / "docs").rglob("*.md")]
    for path in texts:
        for name in GITHUB.findall(path.read_text(encoding="utf-8")):
            if name.split("/")[1].lower().startswith("rusir"):
                assert name == ours, f"{path.relative_to(ROOT)} names github.com/{name}, pyproject.toml {ours}"


def test_rewrite_puts_the_url_into_a_stale_notebook(tmp_path, monkeypatch):
    stale = tmp_path / "x.ipynb"
    nb = json.loads(NOTEBOOKS[0].read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    cell["source"] = [line.replace(colab.repository(), "https://github.com/old-owner/rusir")
                      for line in cell["source"]]
    stale.write_text(json.dumps(nb, indent=1))
    assert "old-owner" in first_code_cell(stale)
    assert colab.rewrite_notebook(stale) and colab.install_line() in first_code_cell(stale)
    assert not colab.rewrite_notebook(stale)          # already current: the file is left alone
