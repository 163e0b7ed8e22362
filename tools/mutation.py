"""Mutation testing of every module of rusir: would the tests notice if the code were wrong?

    python tools/mutation.py                                 # every module, 25 mutants each
    python tools/mutation.py --modules inversion/ngd,faces   # some modules (others kept)
    python tools/mutation.py --per-module 30 --seed 1        # a bigger / different sample
    python tools/mutation.py --list                          # modules and mutation sites
    python tools/mutation.py --map-only                      # only update the test map
    python tools/mutation.py --map-tests 'tests/test_faces*.py' --modules faces  # a partial map

A mutant is the module with one small change (`a + b` -> `a - b`, `<` -> `<=`, `and` -> `or`,
0.08 -> 0.8, True -> False, a statement deleted, `return x` -> `return None`, ...). Which tests
judge it comes from data, not from a table: the whole suite runs once under coverage.py with
one context per test (`collect`), which gives, per line of the package, the passing tests that
execute it. That map is cached in `.mutation-cache/` (git-ignored), keyed by the hashes of the
package files, the test files and the tests' helpers; after an edit only the test files that
changed or that execute a changed package file run again (`stale_tests`). Each mutant runs the
tests that execute its line (its statement's first line; a line run at import -- a
constant, a default -- is judged by every test of the module), cheapest first within
`--test-budget` seconds of their measured time. Failing tests KILL it (good), passing tests let
it SURVIVE (a bug of that kind would go unnoticed), a mutant whose line no test executes
survives as "not executed", and a run past the per-mutant time limit counts as killed by
timeout (reported separately). A killing test is checked once on the unmutated copy (a test
that fails there too is no kill; it is dropped and the mutant runs again). Lines run in a test's
Python subprocesses (the CLI via `python -m rusir`) count for that test: the coverage run puts
the test's node id in the environment and coverage.py (>= 7.10, whose .pth file starts it in
every interpreter that inherits COVERAGE_PROCESS_START) measures each child under it. Not seen:
children given an environment without those variables, children killed by SIGKILL, and so Ray
workers (tried with a local Ray 2.x: the raylet kills them at shutdown before coverage.py writes
their data; a test module shares one cluster anyway, so they could not name their test).
On a busy machine `--map-tests 'tests/test_faces*.py,...'` collects only some test files now;
the others stay stale (out of the map) until a run collects them.
Mutants are drawn with a fixed seed, `--per-module` per module, so a run is reproducible; one
mutant runs at a time. The coverage run takes ~15-70 min (2 CPU cores, idle to busy);
each mutant a few seconds (killed) to its budget (survived).

Never touches the working tree: the repository (git-tracked and untracked, non-ignored files) is
copied to a temporary folder (with `../shared` linked beside it for the official fixtures), each
mutant is written there, the tests run with that copy first on PYTHONPATH, and the original file
is put back. Writes `benchmarks/results/mutation.json` (per module: mutants, killed, survived,
timeouts, survival rate, every survivor with file:line and the original and mutated code) and
`benchmarks/results/mutation.md`, each module stamped with the date and git commit it ran on;
re-running some modules updates them and keeps the others.

Survivors judged harmless (equivalent mutants, defaults never used, ...) are listed with the
reason in `tools/mutation_notes.yaml` (matched on file, original and mutated code, so they
survive line shifts); the report shows them apart from unexplained survivors, which are the ones
to kill with a test.

Only the standard library's `ast` does the mutating (mutmut 3 was tried: it runs every mutant,
~3000 here, with no seeded per-module sample, and runs the tests from a `mutants/` folder where
`../shared` fixtures are not found). Deliberately not mutated: docstrings, type annotations,
f-string text, the message of `raise` (the raise statement itself can be deleted), `__all__`.
"""
from __future__ import annotations

import argparse
import ast
import datetime as _dt
import fnmatch
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NOTES = ROOT / "tools" / "mutation_notes.yaml"

# --- what is mutated, and which tests judge it ------------------------------------------------

PACKAGE = "rusir"
CACHE = ROOT / ".mutation-cache"          # git-ignored: the test-by-line map, keyed by file hashes


def package_modules(root: Path = ROOT) -> dict[str, str]:
    """Every module of the package: {name: file}, named by the path inside it ('inversion/ngd')."""
    files = sorted((root / PACKAGE).rglob("*.py"))
    return {p.relative_to(root / PACKAGE).with_suffix("").as_posix(): p.relative_to(root).as_posix()
            for p in files}


MODULES: dict[str, str] = package_modules()

# --- the mutator ------------------------------------------------------------------------------

ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
         ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.MatMult: ast.Mult,
         ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitOr,
         ast.LShift: ast.RShift, ast.RShift: ast.LShift}
COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
           ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
           ast.In: ast.NotIn, ast.NotIn: ast.In}
BOOL = {ast.And: ast.Or, ast.Or: ast.And}
DROPPED_UNARY = (ast.Not, ast.USub, ast.Invert)


@dataclass(frozen=True)
class Site:
    """One mutation of one node: `node` is the node's index in `ast.walk` order of the module."""
    node: int
    op: str          # arith | compare | bool | unary | const | return | delete
    line: int
    index: int = 0   # which operator of a chained comparison


@dataclass
class Mutant:
    module: str
    file: str
    line: int
    op: str
    original: str    # the changed code before ...
    mutated: str     # ... and after the change
    source: str = field(default="", repr=False)  # the whole mutated module
    source_line: str = ""


def _tweak(value):
    """The mutated constant, or None when the constant is left alone."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 10 if value else 1.0          # 0.08 -> 0.8, 1e-8 -> 1e-7, 0.0 -> 1.0
    if isinstance(value, str):
        return f"XX{value}XX"
    return None


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
        and isinstance(stmt.value.value, str)


def _bound_before(func: ast.AST, name: str, line: int) -> bool:
    """Is `name` a parameter of `func` or assigned in it before `line` (so deleting a later
    assignment to it is a real mutant, not a NameError)?"""
    args = func.args
    params = args.posonlyargs + args.args + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a]
    if any(a.arg == name for a in params):
        return True
    return any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store)
               and n.lineno < line for n in ast.walk(func))


def _number(tree: ast.AST) -> dict[int, int]:
    return {id(n): i for i, n in enumerate(ast.walk(tree))}


def sites(source: str, only: Optional[Sequence[str]] = None) -> list[Site]:
    """Every mutation of `source`, in source order (`only`: top-level names to mutate)."""
    tree = ast.parse(source)
    ids = _number(tree)
    found: list[Site] = []

    def visit(node: ast.AST, func: Optional[ast.AST], skip_text: bool) -> None:
        i, line = ids[id(node)], getattr(node, "lineno", 0)
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in ARITH:
            found.append(Site(i, "arith", line))
        elif isinstance(node, ast.Compare):
            found.extend(Site(i, "compare", line, k) for k, op in enumerate(node.ops)
                         if type(op) in COMPARE)
        elif isinstance(node, ast.BoolOp):
            found.append(Site(i, "bool", line))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, DROPPED_UNARY):
            found.append(Site(i, "unary", line))
        elif isinstance(node, ast.Constant) and _tweak(node.value) is not None:
            if not (isinstance(node.value, str) and skip_text):
                found.append(Site(i, "const", line))
        elif isinstance(node, ast.Return) and node.value is not None \
                and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            found.append(Site(i, "return", line))
        if isinstance(node, ast.stmt) and func is not None and _deletable(node, func):
            found.append(Site(i, "delete", line))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            func = node
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns", "type_comment"):
                continue                                  # type annotations are not behaviour
            children = value if isinstance(value, list) else [value]
            for k, child in enumerate(children):
                if not isinstance(child, ast.AST):
                    continue
                if name == "body" and k == 0 and _is_docstring(child) and \
                        isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue                              # docstrings
                if isinstance(node, ast.Raise):
                    continue                              # error messages (the raise may be deleted)
                visit(child, func, skip_text or isinstance(node, ast.JoinedStr))

    for stmt in tree.body:
        if _is_docstring(stmt) and stmt is tree.body[0]:
            continue
        name = getattr(stmt, "name", None)
        if only is not None and name not in only:
            continue
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                for t in stmt.targets):
            continue
        if isinstance(stmt, ast.If) and "__name__" in ast.unparse(stmt.test):
            continue                                      # the `if __name__ == "__main__"` block
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        visit(stmt, None, False)
    return sorted(found, key=lambda s: (s.line, s.node, s.index))


def _deletable(stmt: ast.stmt, func: ast.AST) -> bool:
    """Statements whose deletion is a real mutant: calls, in-place updates, raises, assignments to
    attributes/items, and re-assignments of a name already bound in the function."""
    if isinstance(stmt, ast.Expr):
        return isinstance(stmt.value, ast.Call)
    if isinstance(stmt, (ast.AugAssign, ast.Raise)):
        return True
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target = stmt.targets[0]
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            return True
        if isinstance(target, ast.Name):
            return _bound_before(func, target.id, stmt.lineno)
    return False


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for name, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, name, new)
            return
        if isinstance(value, list) and any(v is old for v in value):
            value[[v is old for v in value].index(True)] = new
            return
    raise ValueError("node not found in its parent")


def _context(node: ast.AST, parents: dict[int, ast.AST], limit: int = 100) -> ast.AST:
    """What to show for a mutated expression: the largest enclosing expression up to ~limit chars."""
    while True:
        up = parents.get(id(node))
        if isinstance(up, ast.keyword):          # f(dim=-1): show the call, not just `-1`
            up = parents.get(id(up))
        if not isinstance(up, ast.expr) or len(ast.unparse(up)) > limit:
            return node
        node = up


def _first_line(code: str, limit: int = 160) -> str:
    line = code.strip().splitlines()[0] if code.strip() else code
    return line if len(line) <= limit else line[:limit - 3] + "..."


def apply(source: str, site: Site) -> tuple[str, str, str]:
    """(mutated module source, original code, mutated code) for one site."""
    trees = [ast.parse(source), ast.parse(source)]
    nodes = [list(ast.walk(t))[site.node] for t in trees]
    parents = {id(c): p for p in ast.walk(trees[1]) for c in ast.iter_child_nodes(p)}
    node = nodes[1]
    shown = [None, None]
    if site.op == "arith":
        node.op = ARITH[type(node.op)]()
    elif site.op == "compare":
        node.ops[site.index] = COMPARE[type(node.ops[site.index])]()
    elif site.op == "bool":
        node.op = BOOL[type(node.op)]()
    elif site.op == "unary":
        ctx = _context(node, parents)
        shown[0] = _first_line(ast.unparse(ctx))
        _replace(parents[id(node)], node, node.operand)
        if ctx is node:
            ctx = node.operand
        shown[1] = _first_line(ast.unparse(ctx))
    elif site.op == "const":
        node.value = _tweak(node.value)
    elif site.op == "return":
        node.value = None
    elif site.op == "delete":
        shown = [_first_line(ast.unparse(node)), "pass  # deleted"]
        _replace(parents[id(node)], node, ast.copy_location(ast.Pass(), node))
    else:
        raise ValueError(f"unknown mutation {site.op!r}")
    if shown[0] is None:
        if isinstance(node, ast.stmt):
            before, after = ast.unparse(nodes[0]), ast.unparse(node)
        else:
            shown_new = _context(node, parents)          # the same node of the original tree:
            k = next(i for i, n in enumerate(ast.walk(trees[1])) if n is shown_new)
            before, after = ast.unparse(list(ast.walk(trees[0]))[k]), ast.unparse(shown_new)
        shown = [_first_line(before), _first_line(after)]
    ast.fix_missing_locations(trees[1])
    return ast.unparse(trees[1]) + "\n", shown[0], shown[1]


def _mutant(source: str, site: Site, module: str, file: str) -> Mutant:
    code, before, after = apply(source, site)
    lines = source.splitlines()
    text = lines[site.line - 1].strip() if 0 < site.line <= len(lines) else ""
    return Mutant(module, file, site.line, site.op, before, after, code, text)


def mutants(source: str, module: str = "module", file: str = "module.py",
            only: Optional[Sequence[str]] = None) -> list[Mutant]:
    """Every distinct mutant of `source` (no-op and duplicate mutated sources dropped)."""
    return draw(source, None, 0, module, file, only)


def draw(source: str, n: Optional[int], seed: int, module: str = "module",
         file: str = "module.py", only: Optional[Sequence[str]] = None) -> list[Mutant]:
    """`n` distinct mutants (all when None) drawn with a per-module seeded RNG, independent of
    the other modules and of `n`'s neighbours; returned in source order."""
    candidates = sites(source, only)
    order = list(range(len(candidates)))
    if n is not None:
        random.Random(f"{seed}:{module}").shuffle(order)
    seen, chosen = {ast.unparse(ast.parse(source)) + "\n"}, []
    for i in order:
        if n is not None and len(chosen) == n:
            break
        m = _mutant(source, candidates[i], module, file)
        if m.source not in seen:          # a no-op or a duplicate of an earlier mutant
            seen.add(m.source)
            chosen.append((i, m))
    return [m for _, m in sorted(chosen, key=lambda im: im[0])]


# --- scoring ---------------------------------------------------------------------------------

OUTCOMES = ("killed", "timeout", "survived")


def note_key(m: dict) -> tuple[str, str, str]:
    return (m["file"], m["original"], m["mutated"])


def harmless(notes: dict, m: dict) -> Optional[str]:
    """The note explaining a survivor: one that also names its source line (for a short
    change such as `True` -> `False`, which would otherwise match every such change in the
    file) or one on file, original and mutated code alone."""
    return notes.get((*note_key(m), m.get("source_line", ""))) or notes.get(note_key(m))


def summarize(results: Sequence[dict], notes: Optional[dict] = None) -> dict:
    """Counts and survival rate of one module's mutant results ({outcome, file, original,
    mutated, executed_by, ...}); survivors get the harmless-note `why` when one matches, and
    `not_executed` when no test executes their line."""
    notes = notes or {}
    counts = {k: sum(r["outcome"] == k for r in results) for k in OUTCOMES}
    survivors = []
    for r in results:
        if r["outcome"] == "survived":
            s = {k: r[k] for k in ("file", "line", "op", "original", "mutated", "source_line")}
            s.update({k: r[k] for k in ("tests_run", "executed_by") if k in r})
            s["harmless"] = harmless(notes, r)
            s["not_executed"] = r.get("executed_by") == 0
            survivors.append(s)
    n = len(results)
    unexplained = sum(s["harmless"] is None for s in survivors)
    return {"mutants": n, "killed": counts["killed"], "timeouts": counts["timeout"],
            "survived": counts["survived"],
            "not_executed": sum(s["not_executed"] for s in survivors),
            "survival_rate": round(counts["survived"] / n, 3) if n else None,
            "unexplained_survivors": unexplained,
            "unexplained_rate": round(unexplained / n, 3) if n else None,
            "survivors": survivors}


def load_notes(path: Path = NOTES) -> dict:
    """{(file, original, mutated[, source_line]): why} from the YAML list of harmless survivors."""
    if not path.is_file():
        return {}
    import yaml
    entries = yaml.safe_load(path.read_text()) or []
    return {(e["file"], e["original"], e["mutated"], *([e["source_line"]] if "source_line" in e else [])):
            e["why"] for e in entries}


# --- running ---------------------------------------------------------------------------------

def scratch_copy(root: Path = ROOT) -> Path:
    """Copy the repository's tracked and untracked non-ignored files to a temporary folder
    (`<tmp>/repo`), with `<tmp>/shared` linked to `root/../shared`; returns the copy's root."""
    tmp = Path(tempfile.mkdtemp(prefix="rusir-mutation-"))
    dest = tmp / "repo"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = root / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    shared = root.parent / "shared"
    if shared.exists():
        (tmp / "shared").symlink_to(shared.resolve())
    return dest


def _env(copy_root: Path, threads: int) -> dict:
    return dict(os.environ, PYTHONPATH=str(copy_root), PYTHONDONTWRITEBYTECODE="1",
                OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def check_copy(copy_root: Path) -> None:
    """Make sure `import rusir` in a test run loads the copy, not an installed rusir."""
    found = subprocess.run([sys.executable, "-c", "import rusir; print(rusir.__file__)"],
                           cwd=copy_root, env=_env(copy_root, 1), capture_output=True, text=True)
    if Path(found.stdout.strip()).resolve() != (copy_root / "rusir" / "__init__.py").resolve():
        raise RuntimeError(f"tests would import rusir from {found.stdout.strip() or found.stderr}, "
                           f"not from the scratch copy {copy_root}")


PYTEST_ARGS = ("-x", "-q", "-p", "no:cacheprovider", "--no-header")
# Third-party modules the tests import, loaded once by the fork server (never rusir itself).
PRELOAD = ("numpy", "scipy.linalg", "PIL.Image", "yaml", "tqdm", "torch", "torchvision", "lpips",
           "pytorch_msssim", "torchmetrics", "matplotlib.pyplot", "pytest")


class FirstFailure:
    """pytest plugin of a mutant's run: the node id of the first test that failed."""

    def __init__(self):
        self.nodeid: Optional[str] = None

    def pytest_runtest_logreport(self, report):
        if report.failed and self.nodeid is None:
            self.nodeid = report.nodeid


class Runner:
    """Runs a test selection on the scratch copy: ('passed' | 'failed' | 'timeout', seconds,
    the first failing test or None).

    With `fork` (POSIX), this process imports the heavy third-party modules once and forks a child
    per run, which imports rusir fresh from the copy and calls pytest.main -- ~4 s less per
    mutant than a new interpreter. Without it, every run is `python -m pytest` in a subprocess
    (which does not name the failing test, so kills are not checked by `verify`).
    rusir is never imported here, so every child sees the file as it is on disk right now.
    """

    def __init__(self, copy_root: Path, threads: int = 1, fork: bool = True):
        self.root, self.env = copy_root, _env(copy_root, threads)
        self.fork = fork and hasattr(os, "fork")
        self.verified: set[str] = set()     # tests seen passing on the unmutated copy
        self.broken: set[str] = set()       # tests that fail there too (never a kill)
        if self.fork:
            if "rusir" in sys.modules:
                raise RuntimeError("the fork server must not have imported rusir")
            os.environ.update(self.env)          # before torch loads OpenMP
            import importlib
            for name in PRELOAD:
                try:
                    importlib.import_module(name)
                except ImportError:
                    pass

    def __call__(self, tests: Sequence[str], timeout: float) -> tuple[str, float, Optional[str]]:
        start, failed = time.perf_counter(), None
        if self.fork:
            rc, failed = self._forked(tests, timeout)
        else:
            proc = subprocess.Popen([sys.executable, "-m", "pytest", *PYTEST_ARGS, *tests],
                                    cwd=self.root, env=self.env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = None
        status = "timeout" if rc is None else "passed" if rc == 0 else "failed"
        return status, time.perf_counter() - start, failed

    def verify(self, test: str, timeout: float = 600.0) -> bool:
        """Whether `test` passes on the unmutated copy (run once per test)."""
        if test not in self.verified and test not in self.broken:
            (self.verified if self([test], timeout)[0] == "passed" else self.broken).add(test)
        return test in self.verified

    def _forked(self, tests: Sequence[str], timeout: float) -> tuple[Optional[int], Optional[str]]:
        report = self.root.parent / "first-failure.txt"
        report.unlink(missing_ok=True)
        pid = os.fork()
        if pid == 0:                              # the child: one pytest session, then exit
            rc = 99
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                os.chdir(self.root)
                sys.path.insert(0, str(self.root))
                sys.dont_write_bytecode = True
                import pytest
                first = FirstFailure()
                rc = int(pytest.main([*PYTEST_ARGS, *tests], plugins=[first]))
                if first.nodeid:
                    report.write_text(first.nodeid)
            finally:
                os._exit(rc)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                failed = report.read_text() if report.is_file() else None
                return os.waitstatus_to_exitcode(status), failed
            time.sleep(0.05)
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None, None


# --- which tests execute which lines ------------------------------------------------------------

MAP_FILE = "tests-by-line.json"
MAP_VERSION = 2      # 2: lines run in the tests' subprocesses count (maps of version 1 are redone)


def _digest(root: Path, files: Sequence[str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def fingerprint(root: Path) -> dict:
    """Hashes that decide what of a cached map is still true: each package file, each test file,
    and the tests' shared files (conftest.py, helpers) as a whole."""
    def each(files) -> dict[str, str]:
        return {f: _digest(root, [f]) for f in sorted(p.relative_to(root).as_posix() for p in files)}
    helpers = [p.relative_to(root).as_posix() for p in (root / "tests").glob("*.py")
               if not p.name.startswith("test_")]
    return {"helpers": f"{_digest(root, helpers)}/v{MAP_VERSION}", "package_files": each((root / PACKAGE).rglob("*.py")),
            "test_files": each((root / "tests").glob("test_*.py"))}


def stale_tests(cached: Optional[dict], now: dict) -> tuple[list[str], set[str]]:
    """(test files to collect again, test files whose lines to drop from the cached map): the
    changed or new test files, and every test file that executes a changed package file."""
    if not cached or cached["helpers"] != now["helpers"]:
        return sorted(now["test_files"]), set(cached["test_files"] if cached else ())
    was = cached["test_files"]
    stale = {t for t, h in now["test_files"].items() if was.get(t) != h}
    for file, h in now["package_files"].items():
        if cached["package_files"].get(file) != h:
            stale |= {t.split("::")[0] for tests in cached["lines"].get(file, {}).values()
                      for t in tests if t}
    stale &= set(now["test_files"])
    return sorted(stale), stale | (set(was) - set(now["test_files"]))


TEST_VAR = "RUSIR_MUTATION_TEST"     # the running test's node id, for the tests' subprocesses


class ContextPlugin:
    """pytest plugin for the coverage run: each test's lines are recorded under its node id (also
    put in the environment as TEST_VAR, which the test's Python subprocesses inherit); remembers
    each test's seconds and which tests did not pass (never used to judge a mutant)."""

    def __init__(self, cov):
        self.cov, self.seconds, self.not_passed = cov, {}, set()

    def pytest_runtest_setup(self, item):
        self.cov.switch_context(item.nodeid)
        os.environ[TEST_VAR] = item.nodeid

    def pytest_runtest_logfinish(self, nodeid, location):
        os.environ.pop(TEST_VAR, None)

    def pytest_runtest_logreport(self, report):
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration
        if report.outcome != "passed":
            self.not_passed.add(report.nodeid)


def subprocess_config(folder: Path) -> Path:
    """A coverage.py config for the tests' Python subprocesses (`python -m rusir ...`): coverage
    >= 7.10's own .pth file starts measuring in every new interpreter that
    inherits COVERAGE_PROCESS_START; the static context is the spawning test's node id, read
    from TEST_VAR when the child starts; each child writes its own data file into `folder`,
    also when it ends by os._exit or SIGTERM."""
    folder.mkdir(parents=True, exist_ok=True)
    rc = folder / "subprocess.coveragerc"
    rc.write_text(f"[run]\nsource = {PACKAGE}\nparallel = true\ndata_file = {folder / 'child'}\n"
                  f"context = ${{{TEST_VAR}-}}\nsigterm = true\npatch = _exit\n")
    return rc


def lines_by_test(datas, root: Path) -> dict[str, dict[int, set[str]]]:
    """{file relative to root: {line: contexts}} of coverage data sets (files outside root --
    e.g. an installed copy in a test's temporary venv -- are left out)."""
    lines: dict[str, dict[int, set[str]]] = {}
    for data in datas:
        for measured in data.measured_files():
            path = Path(measured).resolve()
            if not path.is_relative_to(root):
                continue
            by_line = lines.setdefault(path.relative_to(root).as_posix(), {})
            for k, contexts in data.contexts_by_lineno(measured).items():
                by_line.setdefault(k, set()).update(contexts)
    return lines


def collect(test_files: Sequence[str], out: str) -> None:
    """Run in a child process at the scratch copy's root: `test_files` under coverage.py; writes
    {"seconds": {test: s}, "lines": {file: {line: [tests]}}} as JSON to `out`. Lines run outside
    any test (imports during collection) are listed under the test "". Lines run in a test's
    Python subprocesses count for that test (see `subprocess_config`)."""
    import coverage
    import pytest
    children = Path(out).resolve().parent / "subprocess-coverage"
    shutil.rmtree(children, ignore_errors=True)
    os.environ["COVERAGE_PROCESS_START"] = str(subprocess_config(children))
    cov = coverage.Coverage(data_file=None, source=[PACKAGE], config_file=False)
    plugin = ContextPlugin(cov)
    cov.start()
    try:
        pytest.main(["-q", "-p", "no:cacheprovider", "--no-header", *test_files], plugins=[plugin])
    finally:
        cov.stop()
    datas = [cov.get_data()]
    for path in sorted(children.glob("child.*")):
        data = coverage.CoverageData(basename=str(path))
        data.read()
        datas.append(data)
    lines = {file: {str(k): sorted(t for t in v if t not in plugin.not_passed) for k, v in by.items()}
             for file, by in lines_by_test(datas, Path.cwd().resolve()).items()}
    passed = {t: round(s, 3) for t, s in plugin.seconds.items() if t not in plugin.not_passed}
    Path(out).write_text(json.dumps({"seconds": passed, "lines": lines}))


def merge(old: dict, new: dict, dropped: set[str]) -> dict:
    """`old` map without the tests of the `dropped` test files, plus `new` (both {"seconds",
    "lines"}); a test's file is its node id's part before '::'."""
    keep = lambda t: t == "" or t.split("::")[0] not in dropped
    seconds = {t: s for t, s in old["seconds"].items() if keep(t)} | new["seconds"]
    lines: dict = {}
    for part, test_ok in ((old["lines"], keep), (new["lines"], lambda t: True)):
        for file, by_line in part.items():
            for line, tests in by_line.items():
                merged = lines.setdefault(file, {}).setdefault(line, set())
                merged.update(t for t in tests if test_ok(t))
    return {"seconds": seconds,
            "lines": {f: {k: sorted(v) for k, v in by.items()} for f, by in lines.items()}}


def only_some(stale: Sequence[str], now: dict, globs: Sequence[str]) -> tuple[list[str], dict]:
    """(the stale test files matching `globs`, `now` without the other stale test files): those
    are left out of the map and, having no hash in it, are stale again next time."""
    left = {t for t in stale if not any(fnmatch.fnmatch(t, g) for g in globs)}
    return ([t for t in stale if t not in left],
            dict(now, test_files={t: h for t, h in now["test_files"].items() if t not in left}))


def test_map(copy_root: Path, threads: int = 1, cache: Path = CACHE, log=print,
             only: Optional[Sequence[str]] = None) -> dict:
    """Which passing tests execute which package lines, from the cache where its hashes still
    hold; the rest collected under coverage.py (see `stale_tests`; the whole suite the first
    time or when the tests' helpers change). `only` (globs of test files): collect just those
    now, leaving the other stale test files out of the map (and stale, for a later run)."""
    now = fingerprint(copy_root)
    path = cache / MAP_FILE
    cached = json.loads(path.read_text()) if path.is_file() else None
    stale, dropped = stale_tests(cached, now)
    if only is not None:
        stale, now = only_some(stale, now, only)
    old = cached if cached and cached["helpers"] == now["helpers"] else {"seconds": {}, "lines": {}}
    if stale or dropped:
        new = {"seconds": {}, "lines": {}}
        if stale:
            log(f"coverage run of {len(stale)} test files (which tests execute which lines) ...")
            out = copy_root.parent / "coverage-map.json"
            code = (f"import sys; sys.path[:0] = [{str(copy_root)!r}, {str(copy_root / 'tools')!r}]; "
                    f"import mutation; mutation.collect({stale!r}, {str(out)!r})")
            subprocess.run([sys.executable, "-c", code], cwd=copy_root, env=_env(copy_root, threads),
                           stdout=subprocess.DEVNULL, check=True)
            new = json.loads(out.read_text())
        cached = {**now, **merge(old, new, dropped)}
        cache.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached))
    return cached


def statement_starts(source: str) -> dict[int, int]:
    """{line: first line of the innermost statement holding it} (coverage records a statement
    spanning several lines at its first line)."""
    starts: dict[int, int] = {}
    for node in ast.walk(ast.parse(source)):             # outer statements first, inner overwrite
        if isinstance(node, ast.stmt):
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                starts[line] = node.lineno
    return starts


def tests_for(by_line: dict[str, list[str]], lines: Sequence[int], seconds: dict[str, float],
              budget: float) -> tuple[list[str], int]:
    """(tests to run, how many tests execute the lines): the passing tests that execute any of
    `lines`, cheapest first, within `budget` seconds of their measured time (at least one).
    Lines run at import time (module constants, defaults, decorators: test "") are judged by
    every test that executes some line of the module (also when the tests' subprocesses, which
    import the module under their test's context, add some tests of their own)."""
    found = {t for line in lines for t in by_line.get(str(line), ())}
    if "" in found:
        found = {t for tests in by_line.values() for t in tests}
    found = sorted((t for t in found if t in seconds), key=lambda t: (seconds[t], t))
    chosen, total = [], 0.0
    for t in found:
        if chosen and total + seconds[t] > budget:
            break
        chosen.append(t)
        total += seconds[t]
    return chosen, len(found)


def run_module(name: str, file: str, runner: Runner, tests_map: dict, per_module: int, seed: int,
               timeout_factor: float, min_timeout: float, budget: float, log=print) -> dict:
    """Sample one module's mutants and run each against the tests that execute its line (cheapest
    first, within `budget` seconds; see `tests_for`). A mutant no test executes survives
    ("not executed"). A killing test is checked once on the unmutated copy: one that fails
    there too is dropped for the rest of the run and the mutant run again without it."""
    path = runner.root / file                        # the copy: the tree as it was at the start
    original = path.read_bytes()
    source = original.decode()
    available = len(sites(source))
    chosen = draw(source, per_module, seed, name, file)
    starts, by_line = statement_starts(source), tests_map["lines"].get(file, {})
    log(f"{name}: {len(chosen)} of {available} mutants")
    results, ran, start = [], set(), time.perf_counter()
    for k, m in enumerate(chosen, 1):
        tests, executing = tests_for(by_line, [m.line, starts.get(m.line, m.line)],
                                     tests_map["seconds"], budget)
        tests = [t for t in tests if t not in runner.broken]
        outcome, secs = "survived", 0.0
        while tests:
            limit = max(min_timeout, timeout_factor * sum(tests_map["seconds"][t] for t in tests))
            try:
                path.write_text(m.source)
                status, secs, failed = runner(tests, limit)
            finally:
                path.write_bytes(original)
            if status == "failed" and failed and not runner.verify(failed):
                tests = [t for t in tests if t != failed]      # fails unmutated too: not a kill
                continue
            outcome = {"passed": "survived", "failed": "killed", "timeout": "timeout"}[status]
            break
        ran.update(tests)
        results.append({**{k_: v for k_, v in asdict(m).items() if k_ != "source"},
                        "outcome": outcome, "seconds": round(secs, 2), "tests_run": len(tests),
                        "executed_by": executing})
        log(f"  [{k:2d}/{len(chosen)}] {outcome:8s} {m.file}:{m.line} {m.op}: "
            f"{m.original} -> {m.mutated}  ({len(tests)} of {executing} tests)")
    return {"file": file, "tests": sorted({t.split("::")[0] for t in ran}), "available": available,
            "test_budget_seconds": budget, "seconds": round(time.perf_counter() - start, 1),
            "results": results}


def git_commit(root: Path = ROOT) -> str:
    """Short HEAD hash, with `+dirty` when mutated modules or tests have uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--", "rusir", "tests") else "")


# --- report ------------------------------------------------------------------------------------

def rescore(data: dict, notes: dict) -> dict:
    """Recompute every module's counts and survivors (e.g. after editing the notes)."""
    for mod in data["modules"].values():
        mod.update(summarize(mod["results"], notes))
    total = [r for mod in data["modules"].values() for r in mod["results"]]
    data["total"] = {k: v for k, v in summarize(total, notes).items() if k != "survivors"}
    return data


def markdown(data: dict) -> str:
    t = data["total"]
    lines = [
        "# Mutation testing of the rusir package",
        "",
        f"Last run {data['date']} on commit `{data['commit']}` (seed {data['seed']}, "
        f"{data['per_module']} mutants per module, {data['seconds'] / 60:.1f} min for the modules "
        f"it ran; one mutant at a time). Made by `python tools/mutation.py`; "
        "`--modules a,b` re-runs some modules and keeps the others.",
        "",
        "Each mutant runs the tests that execute its line (coverage.py, one context per test), "
        "cheapest first within a time budget. A survivor is a change to the code that those "
        "tests do not notice; *not executed*: no test runs its line. *Harmless* survivors are "
        "explained in `tools/mutation_notes.yaml`; the others are gaps in the tests. Runs "
        "before 2026-12-07 (test files marked *by hand*) ran a hand-written table of test files "
        "per module.",
        "",
        f"**Total: {t['mutants']} mutants, {t['killed']} killed, {t['timeouts']} timeouts, "
        f"{t['survived']} survived ({t['not_executed']} not executed; survival rate "
        f"{100 * t['survival_rate']:.1f} %; "
        f"{t['unexplained_survivors']} unexplained, {100 * t['unexplained_rate']:.1f} %).**",
        "",
        "| module | test files run | mutants (of) | killed | timeouts | survived (not executed) | survival | unexplained | run on | earlier |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in data["modules"].items():
        tests = len(m["tests"]) if "test_budget_seconds" in m else f"{len(m['tests'])} (by hand)"
        rate = "-" if m["survival_rate"] is None else f"{100 * m['survival_rate']:.0f} %"
        earlier = ", ".join(f"{100 * h['survival_rate']:.0f} % (`{h['commit']}`)" for h in m.get("history", []))
        lines.append(f"| {name} | {tests} | {m['mutants']} ({m['available']}) | {m['killed']} | "
                     f"{m['timeouts']} | {m['survived']} ({m.get('not_executed', 0)}) | {rate} | "
                     f"{m['unexplained_survivors']} | {m['date']} `{m['commit']}` | {earlier} |")
    missing = [name for name in MODULES if name not in data["modules"]]
    if missing:
        lines += ["", f"Not run yet ({len(missing)} of {len(MODULES)} modules): "
                  + ", ".join(f"`{name}`" for name in missing) + "."]
    lines += ["", "## Survivors", ""]
    for name, m in data["modules"].items():
        if not m["survivors"]:
            continue
        lines.append(f"### {name}")
        lines.append("")
        for s in m["survivors"]:
            why = f" -- harmless: {s['harmless']}" if s["harmless"] else \
                " -- **not executed by any test**" if s.get("not_executed") else " -- **unexplained**"
            where = f" in `{s['source_line']}`" if len(s["original"]) < 25 and s["source_line"] \
                and s["original"] != s["source_line"] else ""
            ran = f" (ran {s['tests_run']} of the {s['executed_by']} tests executing it)" \
                if s.get("executed_by") else ""
            lines.append(f"- `{s['file']}:{s['line']}` ({s['op']}) `{s['original']}` -> "
                         f"`{s['mutated']}`{where}{ran}{why}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def dumps(data: dict) -> str:
    """JSON with one line per mutant (in `results` and `survivors`): readable, small diffs."""
    rows: dict[str, str] = {}

    def one_line(item: dict) -> str:
        key = f"@row{len(rows)}@"
        rows[key] = json.dumps(item)
        return key

    shallow = dict(data, modules={
        name: dict(mod, **{k: [one_line(r) for r in mod.get(k, [])] for k in ("results", "survivors")})
        for name, mod in data["modules"].items()})
    text = json.dumps(shallow, indent=1)
    for key, row in rows.items():
        text = text.replace(json.dumps(key), row, 1)
    return text + "\n"


def write_outputs(data: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "mutation.json").write_text(dumps(data))
    (out / "mutation.md").write_text(markdown(data))


# --- command line ------------------------------------------------------------------------------

def select_modules(spec: Optional[str]) -> list[str]:
    """`inversion/ngd,model`: module names, group prefixes or file paths; all modules when None."""
    if not spec:
        return list(MODULES)
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        hits = [m for m in MODULES if m == part or m.startswith(part + "/") or MODULES[m] == part]
        if not hits:
            raise SystemExit(f"unknown module {part!r}; choose from {list(MODULES)}")
        names += [h for h in hits if h not in names]
    return names


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modules", default=None,
                   help="comma list of modules, groups or files (default: every module of rusir)")
    p.add_argument("--per-module", type=int, default=25, help="mutants drawn per module")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads of each test run")
    p.add_argument("--test-budget", type=float, default=60.0,
                   help="seconds of tests (as measured by the coverage run) per mutant, cheapest first")
    p.add_argument("--timeout-factor", type=float, default=3.0,
                   help="per-mutant limit = factor x its tests' measured time (at least --min-timeout)")
    p.add_argument("--min-timeout", type=float, default=60.0)
    p.add_argument("--no-fork", action="store_true",
                   help="a new interpreter per mutant instead of forking a preloaded one (slower)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--fresh", action="store_true", help="drop modules of earlier runs from the report")
    p.add_argument("--list", action="store_true", help="list modules and their mutation sites")
    p.add_argument("--map-only", action="store_true",
                   help="only bring the cached test-by-line map up to date (.mutation-cache/)")
    p.add_argument("--map-tests", default=None,
                   help="comma list of test-file globs: collect only these into the map now "
                        "(on a busy machine; the other stale test files wait for a later run)")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the Markdown from the JSON (e.g. after editing the notes)")
    a = p.parse_args(argv)
    names = select_modules(a.modules)
    notes = load_notes()
    json_path = a.out / "mutation.json"

    if a.list:
        for name in names:
            print(f"{name:28s} {len(sites((ROOT / MODULES[name]).read_text())):4d} mutation sites")
        return 0
    if a.report_only:
        write_outputs(rescore(json.loads(json_path.read_text()), notes), a.out)
        return 0

    previous = {} if a.fresh or not json_path.is_file() else json.loads(json_path.read_text())
    commit, date = git_commit(), _dt.date.today().isoformat()
    copy_root = scratch_copy()
    check_copy(copy_root)
    start = time.perf_counter()
    modules = {k: v for k, v in previous.get("modules", {}).items() if k in MODULES}
    order = {n: i for i, n in enumerate(MODULES)}

    def save(modules: dict, done: list) -> dict:
        data = {"date": date, "commit": commit, "seed": a.seed, "per_module": a.per_module,
                "test_budget_seconds": a.test_budget,
                "seconds": round(time.perf_counter() - start, 1), "modules_run": done,
                "python": platform.python_version(),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "modules": dict(sorted(modules.items(), key=lambda kv: order.get(kv[0], 999)))}
        write_outputs(rescore(data, notes), a.out)
        return data

    data, done = None, []
    try:
        tests_map = test_map(copy_root, a.threads,
                             only=a.map_tests.split(",") if a.map_tests else None)
        if a.map_only:
            return 0
        runner = Runner(copy_root, a.threads, fork=not a.no_fork)
        for name in names:
            t0 = time.perf_counter()
            mod = run_module(name, MODULES[name], runner, tests_map, a.per_module, a.seed,
                             a.timeout_factor, a.min_timeout, a.test_budget)
            history = []
            if name in modules:                   # keep the earlier runs' rates of this module
                old = modules[name]
                history = old.get("history", []) + [
                    {k: old[k] for k in ("date", "commit", "seed", "mutants", "survived", "survival_rate")}]
            modules[name] = {"date": date, "commit": commit, "seed": a.seed, **mod, "history": history}
            print(f"{name}: {summarize(mod['results'], notes)['survived']} survived "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
            done.append(name)
            data = save(modules, done)            # after every module: an interrupted run keeps them
    finally:
        shutil.rmtree(copy_root.parent, ignore_errors=True)
    data = data or save(modules, done)
    t = data["total"]
    print(f"{t['mutants']} mutants: {t['killed']} killed, {t['timeouts']} timeouts, "
          f"{t['survived']} survived ({t['unexplained_survivors']} unexplained) "
          f"[{data['seconds'] / 60:.1f} min] -> {a.out}/mutation.json, mutation.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
