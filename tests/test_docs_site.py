"""The documentation site builds without a warning, and every notebook has its tutorial page.

`mkdocs build --strict` turns every warning into a failure: a link to a page or an anchor that
does not exist, a nav entry without its page, a `::: rusir.x` reference that does not import.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed (pip install -e '.[docs]')")
    site = tmp_path_factory.mktemp("site")
    out = mkdocs_build(ROOT / "mkdocs.yml", site)
    return out, site


def test_the_site_builds_strict(built):
    out, site = built
    assert out.returncode == 0, out.stdout + out.stderr
    assert (site / "reference" / "restore" / "index.html").is_file()


def test_the_api_reference_is_rendered_from_docstrings(built):
    _, site = built
    html = (site / "reference" / "restore" / "index.html").read_text(encoding="utf-8")
    assert "doc-function" in html and "restore" in html


def test_every_notebook_is_a_tutorial_page_with_its_parameters(built):
    _, site = built
    pages = (ROOT / "docs" / "tutorial").glob("*.md")
    named = {line.split()[2] for p in pages for line in p.read_text(encoding="utf-8").splitlines()
             if line.startswith("<!-- notebook-parameters ")}
    assert named == {f"notebooks/{p.name}" for p in NOTEBOOKS}
    html = (site / "tutorial" / "task" / "index.html").read_text(encoding="utf-8")
    assert "<code>n_images</code>" in html and "<code>batch_size</code>" in html


def test_a_broken_link_fails_the_build(tmp_path):
    """The check itself: a page with a dead link makes the strict build fail."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](no-such-page.md)\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(f"site_name: t\ndocs_dir: {docs}\nstrict: true\n")
    out = mkdocs_build(config, tmp_path / "site")
    assert out.returncode != 0 and "no-such-page.md" in out.stdout + out.stderr
    ours = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "\nstrict: true\n" in ours and "  anchors: warn\n" in ours   # and the site's config is strict


def test_a_page_missing_from_the_nav_is_listed_and_a_missing_page_left_out(tmp_path):
    """tools/docs_hooks.py: pages other people add appear under "More"; a nav entry ahead of its page is skipped."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    sys.path.insert(0, str(ROOT / "tools"))
    import docs_hooks
    (tmp_path / "a.md").write_text("# a\n")
    (tmp_path / "new.md").write_text("# new\n")
    config = {"docs_dir": str(tmp_path), "nav": [{"Home": "a.md"}, {"Later": "not-yet.md"}]}
    assert docs_hooks.on_config(config)["nav"] == [{"Home": "a.md"}, {"More": ["new.md"]}]
