"""Mutation testing of rusir's core modules: would the tests notice if the maths were wrong?

    python benchmarks/mutation.py                          # every core module, 25 mutants each
    python benchmarks/mutation.py --modules ngd,losses     # re-run some modules (others kept)
    python benchmarks/mutation.py --per-module 30 --seed 1 # a bigger / different sample
    python benchmarks/mutation.py --list                   # modules, their tests and mutant counts

A mutant is the module with one small change (`a + b` -> `a - b`, `<` -> `<=`, `and` -> `or`,
0.08 -> 0.8, True -> False, a statement deleted, `return x` -> `return None`, ...). The tests
mapped to the module run on it: failing tests KILL it (good), passing tests let it SURVIVE (a bug
of that kind would go unnoticed), and a run past the per-mutant time limit counts as killed by
timeout (reported separately). Mutants are drawn with a fixed seed, `--per-module` per module,
so a run is reproducible; one mutant runs at a time (18 modules x 25 mutants: 40 min measured on
2 CPU cores shared with four other jobs, less on an idle machine; time scales with --per-module).

Never touches the working tree: the repository (git-tracked and untracked, non-ignored files) is
copied to a temporary folder (with `../shared` linked beside it for the official fixtures), each
mutant is written there, the tests run with that copy first on PYTHONPATH, and the original file
is put back. Writes `benchmarks/results/mutation.json` (per module: mutants, killed, survived,
timeouts, survival rate, every survivor with file:line and the original and mutated code) and
`benchmarks/results/mutation.md`, each module stamped with the date and git commit it ran on;
re-running some modules updates them and keeps the others.

Survivors judged harmless (equivalent mutants, defaults never used, ...) are listed with the
reason in `benchmarks/mutation_notes.yaml` (matched on file, original and mutated code, so they
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
NOTES = ROOT / "benchmarks" / "mutation_notes.yaml"

# --- what is mutated, and which tests judge it ------------------------------------------------

DEG_TESTS = ("tests/test_degradations.py", "tests/test_degradations_jpeg.py")
# unit.py: the parts that make an item's record (not planning, the CLI, sharding, engines).
RUNNER_RECORDS = ("degradation_seed", "method_kwargs", "method_seed", "run_unit", "_record",
                  "image_info")
RECORD_TESTS = ("tests/test_bench.py", "tests/test_records.py")


@dataclass(frozen=True)
class Target:
    """One module under mutation: its file, the tests that judge it, optionally only some names."""
    file: str
    tests: tuple[str, ...]
    only: Optional[tuple[str, ...]] = None   # top-level functions/classes to mutate (None: all)


MODULES: dict[str, Target] = {
    "stylegan2": Target("rusir/model/stylegan2.py", ("tests/test_stylegan2.py",)),
    "latents": Target("rusir/inversion/latents.py", ("tests/test_stylegan2.py", "tests/test_restore.py")),
    "ngd": Target("rusir/inversion/ngd.py", ("tests/test_ngd.py", "tests/test_restore.py")),
    "losses": Target("rusir/inversion/losses.py", ("tests/test_losses.py",)),
    **{f"degradations/{name}": Target(f"rusir/degradations/{name}.py", DEG_TESTS)
       for name in ("base", "blur", "composition", "deartifacting", "denoising", "inpainting",
                    "jpeg", "registry", "upsampling", "variants")},
    "loop": Target("rusir/inversion/loop.py", ("tests/test_methods.py", "tests/test_restore.py")),
    "method": Target("rusir/inversion/method.py", ("tests/test_methods.py", "tests/test_restore.py")),
    "restore": Target("rusir/inversion/restore.py", ("tests/test_restore.py",)),
    "metrics/per_image": Target("rusir/metrics/per_image.py", ("tests/test_metrics.py", "tests/test_losses.py")),
    "metrics/realism": Target("rusir/metrics/realism.py", ("tests/test_metrics.py",)),
    "results": Target("rusir/evaluation/results.py", ("tests/test_results.py",)),
    "records": Target("rusir/evaluation/records.py", RECORD_TESTS),
    "bench": Target("rusir/evaluation/unit.py", RECORD_TESTS + ("tests/test_bench_batch.py",), RUNNER_RECORDS),
}

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


def summarize(results: Sequence[dict], notes: Optional[dict] = None) -> dict:
    """Counts and survival rate of one module's mutant results ({outcome, file, original,
    mutated, ...}); survivors get the harmless-note `why` when one matches."""
    notes = notes or {}
    counts = {k: sum(r["outcome"] == k for r in results) for k in OUTCOMES}
    survivors = []
    for r in results:
        if r["outcome"] == "survived":
            s = {k: r[k] for k in ("file", "line", "op", "original", "mutated", "source_line")}
            s["harmless"] = notes.get(note_key(r))
            survivors.append(s)
    n = len(results)
    unexplained = sum(s["harmless"] is None for s in survivors)
    return {"mutants": n, "killed": counts["killed"], "timeouts": counts["timeout"],
            "survived": counts["survived"],
            "survival_rate": round(counts["survived"] / n, 3) if n else None,
            "unexplained_survivors": unexplained,
            "unexplained_rate": round(unexplained / n, 3) if n else None,
            "survivors": survivors}


def load_notes(path: Path = NOTES) -> dict:
    """{(file, original, mutated): why} from the YAML list of harmless survivors."""
    if not path.is_file():
        return {}
    import yaml
    entries = yaml.safe_load(path.read_text()) or []
    return {(e["file"], e["original"], e["mutated"]): e["why"] for e in entries}


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


class Runner:
    """Runs a test selection on the scratch copy: ('passed' | 'failed' | 'timeout', seconds).

    With `fork` (POSIX), this process imports the heavy third-party modules once and forks a child
    per run, which imports rusir fresh from the copy and calls pytest.main -- ~4 s less per
    mutant than a new interpreter. Without it, every run is `python -m pytest` in a subprocess.
    rusir is never imported here, so every child sees the file as it is on disk right now.
    """

    def __init__(self, copy_root: Path, threads: int = 1, fork: bool = True):
        self.root, self.env = copy_root, _env(copy_root, threads)
        self.fork = fork and hasattr(os, "fork")
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

    def __call__(self, tests: Sequence[str], timeout: float) -> tuple[str, float]:
        start = time.perf_counter()
        if self.fork:
            rc = self._forked(tests, timeout)
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
        return status, time.perf_counter() - start

    def _forked(self, tests: Sequence[str], timeout: float) -> Optional[int]:
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
                rc = int(pytest.main([*PYTEST_ARGS, *tests]))
            finally:
                os._exit(rc)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None


def run_module(name: str, target: Target, runner: Runner, per_module: int, seed: int,
               timeout_factor: float, min_timeout: float, log=print) -> dict:
    """Sample and run one module's mutants; returns its raw results and timings."""
    path = runner.root / target.file                 # the copy: the tree as it was at the start
    original = path.read_bytes()
    source = original.decode()
    available = len(sites(source, target.only))
    chosen = draw(source, per_module, seed, name, target.file, target.only)
    status, base_s = runner(target.tests, timeout=max(600.0, min_timeout))
    if status != "passed":
        raise RuntimeError(f"{name}: the tests {target.tests} do not pass on the unmutated copy")
    limit = max(min_timeout, timeout_factor * base_s)
    log(f"{name}: {len(chosen)} of {available} mutants, tests {base_s:.1f} s "
        f"(limit {limit:.0f} s)")
    results, start = [], time.perf_counter()
    for k, m in enumerate(chosen, 1):
        try:
            path.write_text(m.source)
            status, secs = runner(target.tests, limit)
        finally:
            path.write_bytes(original)
        outcome = {"passed": "survived", "failed": "killed", "timeout": "timeout"}[status]
        results.append({**{k_: v for k_, v in asdict(m).items() if k_ != "source"},
                        "outcome": outcome, "seconds": round(secs, 2)})
        log(f"  [{k:2d}/{len(chosen)}] {outcome:8s} {m.file}:{m.line} {m.op}: "
            f"{m.original} -> {m.mutated}")
    return {"file": target.file, "tests": list(target.tests), "only": list(target.only or []),
            "available": available, "baseline_seconds": round(base_s, 2),
            "timeout_seconds": round(limit, 1), "seconds": round(time.perf_counter() - start, 1),
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
        "# Mutation testing of the core modules",
        "",
        f"Last run {data['date']} on commit `{data['commit']}` (seed {data['seed']}, "
        f"{data['per_module']} mutants per module, {data['seconds'] / 60:.1f} min for the modules "
        f"it ran; one mutant at a time). Made by `python benchmarks/mutation.py`; "
        "`--modules a,b` re-runs some modules and keeps the others.",
        "",
        "A survivor is a change to the code that the module's tests do not notice. *Harmless* "
        "survivors are explained in `benchmarks/mutation_notes.yaml`; the others are gaps in "
        "the tests.",
        "",
        f"**Total: {t['mutants']} mutants, {t['killed']} killed, {t['timeouts']} timeouts, "
        f"{t['survived']} survived (survival rate {100 * t['survival_rate']:.1f} %; "
        f"{t['unexplained_survivors']} unexplained, {100 * t['unexplained_rate']:.1f} %).**",
        "",
        "| module | tests | mutants (of) | killed | timeouts | survived | survival | unexplained | run on | earlier |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in data["modules"].items():
        tests = ", ".join(Path(p).stem for p in m["tests"])
        earlier = ", ".join(f"{100 * h['survival_rate']:.0f} % (`{h['commit']}`)" for h in m.get("history", []))
        lines.append(f"| {name} | {tests} | {m['mutants']} ({m['available']}) | {m['killed']} | "
                     f"{m['timeouts']} | {m['survived']} | {100 * m['survival_rate']:.0f} % | "
                     f"{m['unexplained_survivors']} | {m['date']} `{m['commit']}` | {earlier} |")
    lines += ["", "## Survivors", ""]
    for name, m in data["modules"].items():
        if not m["survivors"]:
            continue
        lines.append(f"### {name}")
        lines.append("")
        for s in m["survivors"]:
            why = f" -- harmless: {s['harmless']}" if s["harmless"] else " -- **unexplained**"
            where = f" in `{s['source_line']}`" if len(s["original"]) < 25 and s["source_line"] \
                and s["original"] != s["source_line"] else ""
            lines.append(f"- `{s['file']}:{s['line']}` ({s['op']}) `{s['original']}` -> "
                         f"`{s['mutated']}`{where}{why}")
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
    """`ngd,losses`, a group prefix (`degradations`), or all modules when None."""
    if not spec:
        return list(MODULES)
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        hits = [m for m in MODULES if m == part or m.startswith(part + "/")
                or MODULES[m].file == part]
        if not hits:
            raise SystemExit(f"unknown module {part!r}; choose from {list(MODULES)}")
        names += [h for h in hits if h not in names]
    return names


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modules", default=None, help="comma list (default: all): " + ",".join(MODULES))
    p.add_argument("--per-module", type=int, default=25, help="mutants drawn per module")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads of each test run")
    p.add_argument("--timeout-factor", type=float, default=3.0,
                   help="per-mutant limit = factor x the unmutated tests' time (at least --min-timeout)")
    p.add_argument("--min-timeout", type=float, default=30.0)
    p.add_argument("--no-fork", action="store_true",
                   help="a new interpreter per mutant instead of forking a preloaded one (slower)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--fresh", action="store_true", help="drop modules of earlier runs from the report")
    p.add_argument("--list", action="store_true", help="list modules, tests and mutant counts")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the Markdown from the JSON (e.g. after editing the notes)")
    a = p.parse_args(argv)
    names = select_modules(a.modules)
    notes = load_notes()
    json_path = a.out / "mutation.json"

    if a.list:
        for name in names:
            t = MODULES[name]
            n = len(sites((ROOT / t.file).read_text(), t.only))
            print(f"{name:26s} {n:4d} mutation sites  {t.file}  <- {' '.join(t.tests)}")
        return 0
    if a.report_only:
        write_outputs(rescore(json.loads(json_path.read_text()), notes), a.out)
        return 0

    previous = {} if a.fresh or not json_path.is_file() else json.loads(json_path.read_text())
    commit, date = git_commit(), _dt.date.today().isoformat()
    copy_root = scratch_copy()
    check_copy(copy_root)
    runner = Runner(copy_root, a.threads, fork=not a.no_fork)
    start = time.perf_counter()
    modules = dict(previous.get("modules", {}))
    try:
        for name in names:
            t0 = time.perf_counter()
            mod = run_module(name, MODULES[name], runner, a.per_module, a.seed,
                             a.timeout_factor, a.min_timeout)
            history = []
            if name in modules:                   # keep the earlier runs' rates of this module
                old = modules[name]
                history = old.get("history", []) + [
                    {k: old[k] for k in ("date", "commit", "seed", "mutants", "survived", "survival_rate")}]
            modules[name] = {"date": date, "commit": commit, "seed": a.seed, **mod, "history": history}
            print(f"{name}: {summarize(mod['results'], notes)['survived']} survived "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    finally:
        shutil.rmtree(copy_root.parent, ignore_errors=True)
    order = {n: i for i, n in enumerate(MODULES)}
    data = {"date": date, "commit": commit, "seed": a.seed, "per_module": a.per_module,
            "seconds": round(time.perf_counter() - start, 1), "modules_run": names,
            "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "modules": dict(sorted(modules.items(), key=lambda kv: order.get(kv[0], 99)))}
    write_outputs(rescore(data, notes), a.out)
    t = data["total"]
    print(f"{t['mutants']} mutants: {t['killed']} killed, {t['timeouts']} timeouts, "
          f"{t['survived']} survived ({t['unexplained_survivors']} unexplained) "
          f"[{data['seconds'] / 60:.1f} min] -> {a.out}/mutation.json, mutation.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
