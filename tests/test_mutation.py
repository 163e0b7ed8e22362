"""benchmarks/mutation.py: the mutator on a toy source, the seeded sample and the scoring (no test runs)."""
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
    yield load_script("benchmarks/mutation.py", "mutation")
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
    empty = mut.summarize([])
    assert empty["mutants"] == 0 and empty["survival_rate"] is None

    data = {"date": "2026-01-01", "commit": "abc1234", "seed": 0, "per_module": 5, "seconds": 60.0,
            "modules": {"toy": {"date": "2026-01-01", "commit": "abc1234", "tests": ["tests/test_toy.py"],
                                "available": 9, "results": results}}}
    text = mut.markdown(mut.rescore(data, notes))
    assert "| toy | test_toy | 5 (9) | 2 | 1 | 2 | 40 % | 1 | 2026-01-01 `abc1234` |  |" in text
    data["modules"]["toy"]["history"] = [{"survival_rate": 0.6, "commit": "0ld0000"}]
    assert "| 2026-01-01 `abc1234` | 60 % (`0ld0000`) |" in mut.markdown(mut.rescore(data, notes))
    assert "`rusir/toy.py:4` (arith) `a + 4` -> `a - 4`" in text and "**unexplained**" in text
    assert "harmless: equivalent: a is 0 here" in text
    dumped = mut.dumps(data)                                 # the JSON file: one line per mutant
    assert json.loads(dumped) == json.loads(json.dumps(data))
    assert any(line.strip().rstrip(",") == json.dumps(results[0]) for line in dumped.splitlines())


def test_module_table_points_at_real_files(mut):
    assert set(mut.select_modules("degradations")) == {m for m in mut.MODULES if m.startswith("degradations/")}
    assert mut.select_modules("ngd,rusir/inversion/losses.py") == ["ngd", "losses"]
    for target in mut.MODULES.values():
        assert (ROOT / target.file).is_file() and all((ROOT / t).is_file() for t in target.tests)
        source = (ROOT / target.file).read_text()
        assert mut.sites(source, target.only), target.file
    unit = (ROOT / "rusir" / "evaluation" / "unit.py").read_text()
    assert {line for line in (s.line for s in mut.sites(unit, mut.RUNNER_RECORDS))} < \
        {s.line for s in mut.sites(unit)}                    # records only, not the whole unit
