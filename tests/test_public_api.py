"""The public face of rusir: `rusir.__all__` resolves, `import rusir` stays light, and the notebooks
use nothing else (`import rusir` then `rusir.<name>`, or `from rusir import <name>`, names in
`rusir.__all__`); a function a notebook needs that is not there is a missing API function."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import rusir

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _python(source: str) -> str:
    """A code cell without its IPython-only lines (`!shell`, `%magic`), as plain Python."""
    return "\n".join(line[:len(line) - len(line.lstrip())] + "pass"
                     if line.lstrip().startswith(("!", "%")) else line for line in source.splitlines())


def non_public_uses(source: str, public=frozenset(rusir.__all__)) -> list[str]:
    """Every use of rusir in `source` that is not the public API, as readable strings."""
    found = []
    for node in ast.walk(ast.parse(_python(source))):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" + (f" as {a.asname}" if a.asname else "")
                      for a in node.names
                      if a.name.startswith("rusir.") or (a.name == "rusir" and a.asname)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rusir":
            if node.module != "rusir":
                found.append(f"from {node.module} import ...")
            else:
                found += [f"from rusir import {a.name}" for a in node.names if a.name not in public]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "rusir" and node.attr not in public):
            found.append(f"rusir.{node.attr}")
    return found


def test_the_check_flags_what_is_not_public():
    assert non_public_uses("import rusir\nG = rusir.load_generator('x')\nfrom rusir import iqa") == []
    assert non_public_uses("import rusir.data\nfrom rusir.data import heldout\nimport rusir as r\n"
                           "from rusir import _EXPORTS\nrusir.inversion.schedule.resolve(G)") == [
        "import rusir.data", "from rusir.data import ...", "import rusir as r",
        "from rusir import _EXPORTS", "rusir.inversion"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_use_only_the_public_api(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    bad = {i: non_public_uses(src) for i, src in enumerate(cells) if non_public_uses(src)}
    assert not bad, (f"{path.name} reaches past the public API (code cell: uses): {bad}; export "
                     "what it needs from rusir/__init__.py (`_EXPORTS`) instead")
    assert any("import rusir" in src for src in cells)


def test_every_public_name_resolves_and_is_documented():
    assert len(set(rusir.__all__)) == len(rusir.__all__)
    for name in rusir.__all__:
        assert getattr(rusir, name) is not None, name
        assert re.search(rf"\b{name}\b", rusir.__doc__), f"rusir.{name} is not in rusir's docstring"
    assert rusir.setup is rusir.studies.experiment.setup and rusir.iqa is rusir.studies.iqa
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        rusir.nonexistent  # noqa: B018
    assert set(rusir.__all__) <= set(dir(rusir))


def test_import_rusir_is_light():
    """`import rusir` (and so `rusir --help`) loads neither torch nor any layer: names load on use.
    The command line loads rusir.validation (its option types; argparse and yaml only)."""
    code = ("import sys, rusir, rusir.cli; heavy = sorted(m for m in sys.modules if m in "
            "('torch', 'numpy', 'PIL') or m.startswith('rusir.') and "
            "m not in ('rusir.cli', 'rusir.validation')); print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
