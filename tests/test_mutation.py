"""tools/mutation.py: the mutator on a toy source, the seeded sample and the scoring (no test runs)."""
import json
import sys
from pathlib import Path

import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]

TOY = '''"""Module docstring."""
__all__ = ["f"]


def f(a: int, b: int = 2) -> int:
    """Docstring."""
    if a < b and b != 0:
        return a + b * 2
    a = -a
    if not a:
        raise ValueError(f"bad {a}")
    return a


def g(x):
    x = x.clone()
    return x
'''

EXPECTED = [  # (line, operator, original, mutated)
    (5, "const", "2", "3"),                                   # a default
    (7, "bool", "a < b and b != 0", "a < b or b != 0"),
    (7, "compare", "a < b and b != 0", "a <= b and b != 0"),
    (7, "compare", "a < b and b != 0", "a < b and b == 0"),
    (7, "const", "a < b and b != 0", "a < b and b != 1"),
    (8, "return", "return a + b * 2", "return"),
    (8, "arith", "a + b * 2", "a - b * 2"),
    (8, "arith", "a + b * 2", "a + b / 2"),
    (8, "const", "a + b * 2", "a + b * 3"),
    (9, "delete", "a = -a", "pass  # deleted"),               # a is a parameter: a real mutant
    (9, "unary", "-a", "a"),
    (10, "unary", "not a", "a"),
    (11, "delete", "raise ValueError(f'bad {a}')", "pass  # deleted"),
    (12, "return", "return a", "return"),
    (16, "delete", "x = x.clone()", "pass  # deleted"),
    (17, "return", "return x", "return"),
]


@pytest.fixture(scope="module")
def mut():
    yield load_script("tools/mutation.py", "mutation")
    sys.modules.pop("mutation", None)


def test_toy_source_gives_the_classic_mutants(mut):
    got = [(m.line, m.op, m.original, m.mutated) for m in mut.mutants(TOY)]
    assert got == EXPECTED
    # never mutated: docstrings, __all__, annotations, f-string text and raise messages
    for m in mut.mutants(TOY):
        assert "XX" not in m.source and '"""Module docstring."""' in m.source and '"""Docstring."""' in m.source
        assert "__all__ = ['f']" in m.source and "b: int" in m.source
        assert "raise ValueError(f'bad {a}')" in m.source or m.op == "delete"


def test_mutants_compile_and_change_behaviour(mut):
    def run(source, *args):
        ns = {}
        exec(compile(source, "toy", "exec"), ns)
        try:
            return ns["f"](*args)
        except ValueError:
            return "raised"

    by = {(m.line, m.op, m.mutated): m for m in mut.mutants(TOY)}
    assert run(TOY, 1) == 5
    assert run(by[(8, "arith", "a - b * 2")].source, 1) == -3
    assert run(by[(8, "arith", "a + b / 2")].source, 1) == 2.0
    assert run(by[(8, "return", "return")].source, 1) is None
    assert run(TOY, 0, 0) == "raised"
    assert run(by[(11, "delete", "pass  # deleted")].source, 0, 0) == 0
    assert run(by[(7, "compare", "a <= b and b != 0")].source, 2) == 6  # 2 <= 2 now holds


def test_only_restricts_to_named_top_level_definitions(mut):
    assert [(m.line, m.op) for m in mut.mutants(TOY, only=["g"])] == [(16, "delete"), (17, "return")]


def test_sample_is_seeded_distinct_and_in_source_order(mut):
    every = mut.mutants(TOY)
    a = mut.draw(TOY, 5, seed=3, module="toy")
    b = mut.draw(TOY, 5, seed=3, module="toy")
    assert [m.source for m in a] == [m.source for m in b] and len(a) == 5
    assert len({m.source for m in a}) == 5 and all(m.source in {e.source for e in every} for m in a)
    assert [m.line for m in a] == sorted(m.line for m in a)
    others = {tuple(m.source for m in mut.draw(TOY, 5, seed=s, module="toy")) for s in range(6)}
    assert len(others) > 1                                   # the seed matters
    assert len(mut.draw(TOY, 100, seed=0, module="toy")) == len(every)


def test_scoring_counts_timeouts_apart_and_explains_harmless_survivors(mut):
    def result(outcome, k):
        return {"outcome": outcome, "file": "rusir/toy.py", "line": k, "op": "arith",
                "original": f"a + {k}", "mutated": f"a - {k}", "source_line": f"x = a + {k}"}

    results = [result("killed", 1), result("killed", 2), result("timeout", 3),
               result("survived", 4), result("survived", 5)]
    notes = {("rusir/toy.py", "a + 5", "a - 5"): "equivalent: a is 0 here"}
    s = mut.summarize(results, notes)
    assert (s["mutants"], s["killed"], s["timeouts"], s["survived"]) == (5, 2, 1, 2)
    assert s["survival_rate"] == 0.4 and s["unexplained_survivors"] == 1 and s["unexplained_rate"] == 0.2
    assert [(v["line"], v["harmless"]) for v in s["survivors"]] == [(4, None), (5, "equivalent: a is 0 here")]
    short = {**result("survived", 7), "original": "True", "mutated": "False"}
    pinned = {("rusir/toy.py", "True", "False", "x = a + 7"): "default never used"}
    assert mut.summarize([short], pinned)["survivors"][0]["harmless"] == "default never used"
    elsewhere = {**short, "source_line": "y = True"}           # another True -> False: not it
    assert mut.summarize([elsewhere], pinned)["survivors"][0]["harmless"] is None
    lost = mut.summarize([{**result("survived", 6), "executed_by": 0}])
    assert lost["not_executed"] == 1 and lost["survivors"][0]["not_executed"]
    assert "**not executed by any test**" in mut.markdown(mut.rescore(
        {"date": "d", "commit": "c", "seed": 0, "per_module": 1, "seconds": 1.0, "modules": {"toy": {
            "date": "d", "commit": "c", "tests": [], "available": 1,
            "results": [{**result("survived", 6), "executed_by": 0}]}}}, {}))
    empty = mut.summarize([])
    assert empty["mutants"] == 0 and empty["survival_rate"] is None

    data = {"date": "2026-01-01", "commit": "abc1234", "seed": 0, "per_module": 5, "seconds": 60.0,
            "modules": {"toy": {"date": "2026-01-01", "commit": "abc1234", "tests": ["tests/test_toy.py"],
                                "available": 9, "results": results}}}
    text = mut.markdown(mut.rescore(data, notes))
    assert "| toy | 1 (by hand) | 5 (9) | 2 | 1 | 2 (0) | 40 % | 1 | 2026-01-01 `abc1234` |  |" in text
    data["modules"]["toy"]["history"] = [{"survival_rate": 0.6, "commit": "0ld0000"}]
    assert "| 2026-01-01 `abc1234` | 60 % (`0ld0000`) |" in mut.markdown(mut.rescore(data, notes))
    assert "`rusir/toy.py:4` (arith) `a + 4` -> `a - 4`" in text and "**unexplained**" in text
    assert "harmless: equivalent: a is 0 here" in text
    assert f"Not run yet ({len(mut.MODULES)} of {len(mut.MODULES)} modules): `__init__`" in text
    dumped = mut.dumps(data)                                 # the JSON file: one line per mutant
    assert json.loads(dumped) == json.loads(json.dumps(data))
    assert any(line.strip().rstrip(",") == json.dumps(results[0]) for line in dumped.splitlines())


def test_every_module_of_the_package_is_a_target(mut):
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "rusir").rglob("*.py")}
    assert set(mut.MODULES.values()) == files and len(files) > 60
    assert mut.MODULES["inversion/ngd"] == "rusir/inversion/ngd.py"
    assert set(mut.select_modules("degradations")) == {m for m in mut.MODULES if m.startswith("degradations/")}
    assert mut.select_modules("inversion/ngd,rusir/inversion/losses.py") == ["inversion/ngd", "inversion/losses"]
    with pytest.raises(SystemExit, match="unknown module"):
        mut.select_modules("nowhere")


SPREAD = """x = f(1,
      2)
if x:
    y = [x,
         3]
"""


def test_a_line_inside_a_statement_maps_to_the_statements_first_line(mut):
    assert mut.statement_starts(SPREAD) == {1: 1, 2: 1, 3: 3, 4: 4, 5: 4}


def test_each_mutant_runs_the_tests_that_execute_its_line_cheapest_first(mut):
    by_line = {"3": ["a::slow", "a::fast", "b::mid"], "4": ["b::mid"], "9": [""],
               "10": ["a::gone", "c::other"]}
    seconds = {"a::slow": 50.0, "a::fast": 1.0, "b::mid": 5.0, "c::other": 2.0}   # a::gone failed
    assert mut.tests_for(by_line, [3], seconds, budget=100) == (["a::fast", "b::mid", "a::slow"], 3)
    assert mut.tests_for(by_line, [3], seconds, budget=10) == (["a::fast", "b::mid"], 3)
    assert mut.tests_for(by_line, [3], seconds, budget=0.5) == (["a::fast"], 3)   # at least one
    assert mut.tests_for(by_line, [4, 3], seconds, budget=6) == (["a::fast", "b::mid"], 3)
    assert mut.tests_for(by_line, [10], seconds, budget=100) == (["c::other"], 1)  # passing ones only
    assert mut.tests_for(by_line, [7], seconds, budget=100) == ([], 0)            # not executed
    # run only at import (a module constant): every test that executes the module judges it
    assert mut.tests_for(by_line, [9], seconds, budget=100) == (
        ["a::fast", "c::other", "b::mid", "a::slow"], 4)
    # ... also when a test's subprocess imported the module (and ran the line) under its id
    assert mut.tests_for({**by_line, "9": ["", "c::other"]}, [9], seconds, budget=100) == (
        ["a::fast", "c::other", "b::mid", "a::slow"], 4)


def test_the_cached_map_is_collected_again_only_where_files_changed(mut):
    cached = {"helpers": "h", "package_files": {"rusir/a.py": "1", "rusir/b.py": "2"},
              "test_files": {"tests/test_a.py": "x", "tests/test_b.py": "y", "tests/test_old.py": "z"},
              "seconds": {"tests/test_a.py::t": 1.0, "tests/test_b.py::t": 1.0},
              "lines": {"rusir/a.py": {"1": ["", "tests/test_a.py::t"]},
                        "rusir/b.py": {"1": ["tests/test_b.py::t"]}}}
    now = {**cached, "test_files": {"tests/test_a.py": "x", "tests/test_b.py": "y", "tests/test_new.py": "n"}}
    assert mut.stale_tests(cached, now) == (["tests/test_new.py"], {"tests/test_new.py", "tests/test_old.py"})
    edited = {**now, "package_files": {"rusir/a.py": "1", "rusir/b.py": "3"}}
    assert mut.stale_tests(cached, edited)[0] == ["tests/test_b.py", "tests/test_new.py"]
    assert mut.stale_tests(cached, {**now, "helpers": "other"})[0] == sorted(now["test_files"])
    assert mut.stale_tests(None, now)[0] == sorted(now["test_files"])
    new = {"seconds": {"tests/test_b.py::u": 2.0}, "lines": {"rusir/a.py": {"1": ["tests/test_b.py::u"]}}}
    merged = mut.merge(cached, new, {"tests/test_b.py"})
    assert merged["seconds"] == {"tests/test_a.py::t": 1.0, "tests/test_b.py::u": 2.0}
    assert merged["lines"] == {"rusir/a.py": {"1": ["", "tests/test_a.py::t", "tests/test_b.py::u"]},
                               "rusir/b.py": {"1": []}}


def test_a_partial_map_leaves_the_other_stale_test_files_for_later(mut):
    now = {"helpers": "h", "package_files": {}, "test_files": {"tests/test_a.py": "1",
                                                               "tests/test_ab.py": "2", "tests/test_b.py": "3"}}
    stale, kept = mut.only_some(["tests/test_ab.py", "tests/test_b.py"], now, ["tests/test_a*.py"])
    assert stale == ["tests/test_ab.py"]
    assert kept["test_files"] == {"tests/test_a.py": "1", "tests/test_ab.py": "2"}  # test_a: not stale
    cached = {**kept, "seconds": {}, "lines": {}}
    assert mut.stale_tests(cached, now)[0] == ["tests/test_b.py"]          # collected next time


def test_collect_records_each_tests_lines_under_its_node_id(mut, tmp_path):
    """A real coverage run on a toy package: lines by test node id, import-time lines under "",
    a failing test left out, and lines run in a test's Python subprocess (as `python -m rusir`
    runs the CLI) counted for the test that spawned it."""
    import subprocess
    (tmp_path / "rusir").mkdir()
    (tmp_path / "rusir" / "__init__.py").write_text(
        "LIMIT = 3\n\ndef f(x):\n    return x + 1\n\ndef g(x):\n    return x * 2\n\n"
        "def h():\n    return 'child'\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_toy.py").write_text(
        "import subprocess, sys\nfrom rusir import f, g\n\ndef test_f():\n    assert f(1) == 2\n\n"
        "def test_g():\n    assert g(2) == 4\n\ndef test_bad():\n    assert g(1) == 0\n\n"
        "def test_child():\n    out = subprocess.run([sys.executable, '-c', 'import rusir; print(rusir.h())'],\n"
        "                         capture_output=True, text=True, check=True)\n"
        "    assert out.stdout.strip() == 'child'\n")
    code = (f"import sys; sys.path[:0] = [{str(tmp_path)!r}, {str(ROOT / 'tools')!r}]; "
            f"import mutation; mutation.collect(['tests/test_toy.py'], 'map.json')")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True)
    got = json.loads((tmp_path / "map.json").read_text())
    assert set(got["seconds"]) == {f"tests/test_toy.py::test_{t}" for t in ("f", "g", "child")}
    lines = got["lines"]["rusir/__init__.py"]
    assert lines["4"] == ["tests/test_toy.py::test_f"] and lines["7"] == ["tests/test_toy.py::test_g"]
    assert lines["10"] == ["tests/test_toy.py::test_child"]       # only ever run in the subprocess
    assert lines["1"] == ["", "tests/test_toy.py::test_child"]    # imported here, and by the child


def test_subprocess_config_names_the_spawning_test(mut, tmp_path):
    """The child's context comes from the environment it inherits (empty outside any test)."""
    import configparser
    rc = configparser.ConfigParser(interpolation=None)
    rc.read(mut.subprocess_config(tmp_path / "kids"))
    assert rc["run"]["context"] == "${RUSIR_MUTATION_TEST-}" and rc["run"]["source"] == "rusir"
    assert rc["run"]["data_file"] == str(tmp_path / "kids" / "child") and rc["run"]["parallel"] == "true"


def test_an_interrupted_run_keeps_the_modules_it_finished(mut, tmp_path, monkeypatch):
    """Long runs never lose finished work: the report is written after every module, so a run
    stopped in its second module still reports its first (was: written only at the very end)."""
    scratch = tmp_path / "scratch" / "repo"
    scratch.mkdir(parents=True)
    monkeypatch.setattr(mut, "scratch_copy", lambda: scratch)
    monkeypatch.setattr(mut, "check_copy", lambda root: None)
    monkeypatch.setattr(mut, "test_map", lambda root, threads, **kw: {"lines": {}, "seconds": {}})
    monkeypatch.setattr(mut, "Runner", lambda *args, **kw: None)
    monkeypatch.setattr(mut, "git_commit", lambda: "abc1234")

    def run_module(name, file, *args, **kw):
        if name == "inversion/ngd":
            raise KeyboardInterrupt
        return {"file": file, "tests": [], "available": 1, "test_budget_seconds": 1.0,
                "seconds": 0.1, "results": [{"outcome": "killed", "file": file, "line": 1,
                                             "op": "arith", "original": "a", "mutated": "b"}]}
    monkeypatch.setattr(mut, "run_module", run_module)
    with pytest.raises(KeyboardInterrupt):
        mut.main(["--modules", "inversion/latents,inversion/ngd", "--out", str(tmp_path), "--fresh"])
    data = json.loads((tmp_path / "mutation.json").read_text())
    assert list(data["modules"]) == ["inversion/latents"] and data["modules_run"] == ["inversion/latents"]
    assert "inversion/latents" in (tmp_path / "mutation.md").read_text()
