"""MkDocs hooks of the documentation site (named in mkdocs.yml; not a page, not part of rusir).

- `on_config`: the nav in mkdocs.yml is the reading order; a page under docs/ that it does not
  name is appended under "More" (so a new page is never unreachable), and a nav entry whose page
  does not exist (yet: a page being written elsewhere) is left out, so the nav can name it early.
- `on_files`: the committed figures in the repository's `figures/` are served at `figures/`, so
  pages show them with `![...](figures/x.png)` without a second copy under docs/.
- `on_page_markdown`: the tutorial pages render the notebooks themselves. A line
  `<!-- notebook-parameters notebooks/x.ipynb -->` becomes the table of the notebook's `parameters`
  cell, `<!-- notebook-cells notebooks/x.ipynb -->` its cells, `<!-- colab-badge notebooks/x.ipynb -->`
  its "Open in Colab" badge, built from the repository URL in pyproject.toml (tools/colab.py).
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from mkdocs.structure.files import File

import sys

sys.path.insert(0, str(Path(__file__).resolve().parent))
import colab  # noqa: E402  (tools/colab.py: the repository URL, the badges, the install cell)

log = logging.getLogger("mkdocs.hooks.rusir")
ROOT = Path(__file__).resolve().parents[1]          # tools/ -> the repository
FIGURES = ROOT / "figures"


def _named(nav) -> set[str]:
    """Every page path the nav names (nav items are strings, {title: str} or {title: [items]})."""
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_named(v) for v in nav.values()))
    return set().union(*(_named(v) for v in nav)) if nav else set()


def _existing(nav, docs: Path):
    """The nav without entries whose page is missing (each one warned about)."""
    if isinstance(nav, str):
        if "://" in nav or (docs / nav).is_file():
            return nav
        log.info("mkdocs.yml names %s in its nav, which is not under docs/ (yet): left out", nav)
        return None
    if isinstance(nav, dict):
        kept = {k: _existing(v, docs) for k, v in nav.items()}
        kept = {k: v for k, v in kept.items() if v not in (None, [])}
        return kept or None
    return [x for x in (_existing(v, docs) for v in nav) if x is not None]


def on_config(config):
    docs = Path(config["docs_dir"])
    if config["nav"] is None:
        return config
    pages = {p.relative_to(docs).as_posix() for p in docs.rglob("*.md")}
    nav = _existing(config["nav"], docs)
    more = sorted(p for p in pages - _named(nav) if not p.startswith("results/"))  # linked tables
    if more:
        nav.append({"More": more})
    config["nav"] = nav
    return config


def on_files(files, config):
    for path in sorted(FIGURES.glob("*.png")):
        files.append(File(f"figures/{path.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


MARKER = re.compile(r"^<!-- (notebook-parameters|notebook-cells|colab-badge) (\S+\.ipynb) -->$", re.M)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def parameters(path: Path) -> list[tuple[str, str, str]]:
    """(name, default, comment) of each assignment in the cell tagged `parameters`."""
    cell = next(c for c in _cells(path) if "parameters" in c.get("metadata", {}).get("tags", []))
    rows, source = [], "".join(cell["source"])
    for m in re.finditer(r"^(\w+)\s*=\s*(.*?)(?:\s+#\s*(.*))?$", source, re.M):
        name, value, comment = m.groups()
        rows.append((name, value.strip(), comment or ""))
    return rows


def _parameters_table(path: Path) -> str:
    lines = ["| parameter | default | papermill | what |", "|---|---|---|---|"]
    for name, value, comment in parameters(path):
        flag = "`-y`" if value[:1] in "[{" else "`-p`"
        value = value.replace("|", "\\|")
        lines.append(f"| `{name}` | `{value}` | {flag} | {comment} |")
    return "\n".join(lines)


def _cells_markdown(path: Path) -> str:
    out = []
    for cell in _cells(path):
        source = "".join(cell["source"]).rstrip()
        if cell["cell_type"] == "markdown":   # the notebook's headings sit below the page's
            out.append(re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", source, flags=re.M))
        elif cell["cell_type"] == "code":
            out.append(f"```python\n{source}\n```")
    return "\n\n".join(out)


def on_page_markdown(markdown, page, config, files):
    def expand(m: re.Match) -> str:
        kind, rel = m.groups()
        path = ROOT / rel
        if not path.is_file():
            log.warning("%s names %s, which does not exist", page.file.src_path, rel)
            return m.group(0)
        if kind == "colab-badge":
            return colab.badge(rel)
        return _parameters_table(path) if kind == "notebook-parameters" else _cells_markdown(path)

    return MARKER.sub(expand, markdown)
