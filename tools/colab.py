"""The repository URL in one place: `[project.urls] Repository` in pyproject.toml.

The README's and the docs' "Open in Colab" badges and every notebook's install cell are built
from it. `python tools/colab.py` rewrites the notebooks' install cells and the README's badges
after the URL changes; tests/test_colab.py fails while any of them disagrees with pyproject.toml.
"""
from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
EXTRAS = "notebooks,metrics"


def repository() -> str:
    """The repository URL from pyproject.toml, e.g. https://github.com/<owner>/rusir."""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    return urls["Repository"].rstrip("/")


def colab_url(notebook: str, branch: str = "main") -> str:
    """Colab's address of a notebook of the repository (`notebook` relative to its root)."""
    path = repository().removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/{branch}/{notebook}"


def badge(notebook: str) -> str:
    return f"[![Open In Colab]({BADGE_SVG})]({colab_url(notebook)})"


def install_line() -> str:
    """The notebooks' install command, as Colab runs it (a shell escape in the first cell)."""
    return f'!pip install -q "rusir[{EXTRAS}] @ git+{repository()}"'


INSTALL = re.compile(r'!pip install -q "rusir\[[^\]]*\] @ git\+[^"]*"')
README_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\(https://colab\.research\.google\.com/github/"
                          r"[^)]*?/blob/\w+/(notebooks/[\w.-]+\.ipynb)\)")


def rewrite_notebook(path: Path) -> bool:
    """Puts the current install line into the notebook's first cell; True when it changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    source = "".join(cell["source"])
    new = INSTALL.sub(lambda m: install_line(), source)
    if new == source:
        return False
    cell["source"] = new.splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def rewrite_readme(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    new = README_BADGE.sub(lambda m: badge(m.group(1)), text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main() -> int:
    changed = [p for p in sorted((ROOT / "notebooks").glob("*.ipynb")) if rewrite_notebook(p)]
    changed += [p for p in [ROOT / "README.md"] if rewrite_readme(p)]
    for p in changed:
        print(f"rewrote {p.relative_to(ROOT)} for {repository()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
