"""docs/layers.md is the one description of the layers, and the code keeps to it.

The test reads the table: each row's `where` cell names modules (`rusir/x.py`) or folders
(`rusir/x/`, every module under it unless a more specific row names it). It fails when the table
names something that does not exist, when a module of rusir/ belongs to no layer, or when a
module imports (at the top or inside a function) from a layer above its own. `training` stands
beside the stack: it may use any layer, and only the public API may name it.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS_DOC = ROOT / "docs" / "layers.md"
BESIDE = "training"


def layer_table(text: str) -> list[tuple[str, list[str]]]:
    """(layer, paths) per row, top to bottom; a row without a layer name continues the one above."""
    rows, layer = [], None
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| layer | where |"))
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        layer = cells[0] or layer
        rows.append((layer, re.findall(r"`(rusir/[\w/.]*)`", cells[1])))
    return rows


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(path: str, rows: list[tuple[str, list[str]]]) -> str | None:
    """The layer of the most specific row path that covers `path` (a file under rusir/)."""
    best, layer = -1, None
    for name, paths in rows:
        for p in paths:
            if (p == path or (p.endswith("/") and path.startswith(p))) and len(p) > best:
                best, layer = len(p), name
    return layer


def imported_modules(path: Path) -> set[str]:
    """Every rusir module the file imports, absolute or relative, anywhere in it."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "rusir"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "rusir":     # `from . import x`: x is a module, or a name in mod
                found |= {f"{mod}.{a.name}" if module_file(f"{mod}.{a.name}") else mod for a in node.names}
    return found


def module_file(name: str) -> str | None:
    """The rusir/ path of an importable module name, or None (an attribute, not a module)."""
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(ROOT).as_posix()
    return None


ROWS = layer_table(LAYERS_DOC.read_text(encoding="utf-8"))
ORDER = [name for name, _ in ROWS if name != BESIDE]
RANK = {name: len(ORDER) - ORDER.index(name) for name in ORDER}   # higher: further up
MODULES = sorted(p for p in (ROOT / "rusir").rglob("*.py"))


def test_the_table_names_only_what_exists():
    missing = [p for _, paths in ROWS for p in paths if not (ROOT / p).exists()
               or (p.endswith("/") != (ROOT / p).is_dir())]
    assert not missing, f"docs/layers.md names what does not exist: {missing}"
    assert len(RANK) >= 8 and BESIDE in {name for name, _ in ROWS}


def test_every_module_has_a_layer():
    orphans = [p.relative_to(ROOT).as_posix() for p in MODULES
               if layer_of(p.relative_to(ROOT).as_posix(), ROWS) is None]
    assert not orphans, f"modules in no layer of docs/layers.md: {orphans}"


def upward_imports() -> list[str]:
    arrows = []
    for path in MODULES:
        rel = path.relative_to(ROOT).as_posix()
        mine = layer_of(rel, ROWS)
        for name in sorted(imported_modules(path)):
            target = module_file(name)
            if target is None or target == rel:
                continue
            theirs = layer_of(target, ROWS)
            if theirs == BESIDE and mine not in (BESIDE, "public API"):
                arrows.append(f"{rel} ({mine}) imports {name} (training: beside the stack)")
            elif mine != BESIDE and theirs != BESIDE and RANK[theirs] > RANK[mine]:
                arrows.append(f"{rel} ({mine}) imports {name} ({theirs}, above)")
    return arrows


def test_no_module_imports_from_a_layer_above():
    arrows = upward_imports()
    assert not arrows, "imports running up the layers of docs/layers.md:\n" + "\n".join(arrows)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself: a model module that imports the engine inside a function is reported."""
    probe = ROOT / "rusir" / "model" / "generators.py"
    source = probe.read_text(encoding="utf-8") + "\n\ndef _probe():\n    from ..engine import runner\n"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source if self == probe
                        else Path.read_bytes(self).decode(encoding or "utf-8"))
    assert "rusir.engine.runner" in imported_modules(probe)
    assert any(a.startswith("rusir/model/generators.py (model) imports rusir.engine.runner (engine")
               for a in upward_imports())
