"""What a reader of the code should not trip on, kept so by reading the source (ast), not by running it.

- a private name (`_x`) stays in its module: no `from rusir.a import _x` anywhere in rusir/;
- one conversion to 8-bit images, `rusir.degradations.base.to_pil`, with the rounding named;
- no function that nothing calls among the ones an audit found dead (`run_item`).
"""
from __future__ import annotations

import ast
from pathlib import Path

import torch

from rusir.degradations.base import to_pil

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted((ROOT / "rusir").rglob("*.py"))


def trees():
    for path in MODULES:
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def private_imports(rel: str, tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("rusir")):
            found += [f"{rel}:{node.lineno} imports {a.name} from {'.' * node.level}{node.module or ''}"
                      for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_private_name_is_imported_across_modules():
    found = [f for rel, tree in trees() for f in private_imports(rel, tree)]
    assert not found, "private names used outside their module (make them public or keep them in):\n" + "\n".join(found)


def test_the_check_sees_a_private_import():
    tree = ast.parse("from .images import _to_rgb, open_image\nfrom rusir.x import _y\nfrom torch import _z\n")
    assert private_imports("m.py", tree) == ["m.py:1 imports _to_rgb from .images", "m.py:2 imports _y from rusir.x"]


def test_one_to_pil():
    """Module-level functions named to_pil (PhotoRestoration.to_pil, a method, calls the one)."""
    defined = [rel for rel, tree in trees() for node in tree.body
               if isinstance(node, ast.FunctionDef) and node.name == "to_pil"]
    assert defined == ["rusir/degradations/base.py"], defined


def test_to_pil_rounds_as_told():
    x = torch.full((3, 1, 1), 0.999)              # 254.745 on the 0-255 scale
    assert to_pil(x).getpixel((0, 0)) == (254, 254, 254)            # the authors' truncation
    assert to_pil(x, "round").getpixel((0, 0)) == (255, 255, 255)   # what rusir writes for people


def test_no_dead_run_item():
    names = {node.name for _, tree in trees() for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert "run_item" not in names


def test_progress_bars_write_a_line_every_few_seconds_into_a_log():
    """A bar into a file or pipe waits LOG_INTERVAL between updates; in a terminal it redraws as tqdm does."""
    import io

    from rusir.progress import LOG_INTERVAL, progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    log, tty = io.StringIO(), Terminal()
    with progress_bar(range(3), file=log) as bar, progress_bar(range(3), file=tty) as live:
        assert bar.mininterval == LOG_INTERVAL >= 2 and live.mininterval == 0.1
    with progress_bar(range(3), file=log, mininterval=1) as chosen:
        assert chosen.mininterval == 1
