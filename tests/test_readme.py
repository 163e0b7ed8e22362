"""The README is the short front door: at most 150 lines, its two commands are the ones CI and
`make` run, and every docs page it points to exists (the rest of the documentation is the site
under docs/, built strict by tests/test_docs_site.py)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_is_short():
    assert len(README.splitlines()) <= 150


def test_the_two_commands_are_the_makefile_and_ci_ones():
    block = re.search(r"## Set-up: two commands\n\n```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert commands == ["make demo", "make test"]
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    assert {"demo", "test", "figures", "docs"} <= targets
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must run the README's test command"


def test_every_docs_path_it_names_exists():
    named = set(re.findall(r"`(docs/[\w./-]+)`", README))
    assert named and not [p for p in named if not (ROOT / p).exists()]
