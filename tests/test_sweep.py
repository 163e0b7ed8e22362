"""`rusir sweep`: parameter sets from YAML, papermill execution, skipping finished sets."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from rusir import cli
from rusir.sweep import check_parameters, load_sweep, run_sweep, set_status

ROOT = Path(__file__).resolve().parents[1]


def _notebook(path: Path, params: str = "a = 1\nb = 'x'\nout_dir = '.'",
              body: str = "import json, pathlib\n"
                          "pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)\n"
                          "pathlib.Path(out_dir, 'result.json').write_text(json.dumps({'a': a, 'b': b}))") -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    return p


@pytest.fixture
def nb(tmp_path):
    return _notebook(tmp_path / "nb.ipynb")


def test_grid_and_sets_expand(tmp_path, nb):
    path = _yaml(tmp_path, f"""
notebook: {nb}
parameters: {{b: shared}}
name: "a{{a}}_{{b}}"
grid: {{a: [1, 2, 3]}}
sets:
  - {{name: extra, parameters: {{a: 9, b: own}}}}
""")
    sweep = load_sweep(path)
    assert [s.name for s in sweep.sets] == ["a1_shared", "a2_shared", "a3_shared", "extra"]
    assert sweep.sets[1].parameters == {"b": "shared", "a": 2}
    assert sweep.sets[3].parameters == {"b": "own", "a": 9}
    assert all(s.notebook == nb.resolve() for s in sweep.sets)


@pytest.mark.parametrize("text, message", [
    ("notebook: {nb}\ngrid: {{a: [1, 1]}}\nname: same", "duplicate"),
    ("notebook: {nb}\ngrdi: {{a: [1]}}", "unknown key"),
    ("notebook: {nb}\nparameters: {{a: 1}}", "no parameter sets"),
    ("notebook: missing.ipynb\ngrid: {{a: [1]}}", "not found"),
    ("notebook: {nb}\ngrid: {{a: 1}}", "non-empty lists"),
    ("notebook: {nb}\ngrid: {{a: [1]}}\nname: '{{zz}}'", "unknown parameter"),
    ("sets: [{{name: s}}]", "no notebook"),
    ("notebook: {nb}\ngrid: {{a: [1]}}\nname: [x]", "name must be a string"),
])
def test_bad_sweep_files(tmp_path, nb, text, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_sweep(_yaml(tmp_path, text.format(nb=nb)))


def test_unknown_parameter_is_refused(tmp_path, nb):
    sweep = load_sweep(_yaml(tmp_path, f"notebook: {nb}\ngrid: {{a: [1], typo: [2]}}"))
    with pytest.raises(ValueError, match="typo"):
        check_parameters(sweep)


class FakeExecutor:
    """Records calls and writes a results file like a notebook would (or fails on request)."""

    def __init__(self, fail=()):
        self.calls, self.fail = [], set(fail)

    def __call__(self, notebook, output, parameters, cwd, kernel_name):
        self.calls.append((Path(output), dict(parameters)))
        if parameters["a"] in self.fail:
            raise RuntimeError("cell failed")
        Path(output).write_text("{}")
        Path(parameters["out_dir"], "result.json").write_text(json.dumps(parameters))


def test_run_skips_done_sets_and_retries_failed(tmp_path, nb):
    path = _yaml(tmp_path, f"notebook: {nb}\ngrid: {{a: [1, 2, 3]}}\nname: 'set{{a}}'")
    out = tmp_path / "out"
    ex = FakeExecutor(fail={2})
    logs = []
    assert run_sweep(path, out, execute=ex, log=logs.append) == {"set1": "done", "set2": "failed", "set3": "done"}
    output, params = ex.calls[0]
    assert output == (out / "set1" / "nb.ipynb").resolve()
    assert params == {"a": 1, "out_dir": str((out / "set1").resolve())}
    record = json.loads((out / "set1" / "sweep.json").read_text())
    assert record["status"] == "done" and record["results"] == ["result.json"]
    assert "cell failed" in json.loads((out / "set2" / "sweep.json").read_text())["error"]
    assert [set_status(out / n) for n in ("set1", "set2", "set3", "nope")] == ["done", "failed", "done", "todo"]

    ex2 = FakeExecutor()
    assert run_sweep(path, out, execute=ex2, log=logs.append) == {"set1": "skipped", "set2": "done", "set3": "skipped"}
    assert [c[1]["a"] for c in ex2.calls] == [2]
    ex3 = FakeExecutor()
    run_sweep(path, out, execute=ex3, force=True, only=["set3"], log=logs.append)
    assert [c[1]["a"] for c in ex3.calls] == [3]
    ex4 = FakeExecutor()                                       # changed parameters: not finished
    assert run_sweep(path, out, execute=ex4, only=["set1"], overrides={"b": "y"},
                     log=logs.append) == {"set1": "done"}
    assert [(c[1]["a"], c[1]["b"]) for c in ex4.calls] == [(1, "y")]


def test_a_records_folder_is_listed_by_its_bench_json(tmp_path, nb):
    """A notebook run through the benchmark runner lists its folder once, not every item."""
    def execute(notebook, output, parameters, cwd, kernel_name):
        out = Path(parameters["out_dir"])
        for item in ("rusir/upsampling/M/0000", "rusir/upsampling/M/0001"):
            (out / "task" / item).mkdir(parents=True)
            (out / "task" / item / "record.json").write_text("{}")
        (out / "task" / "bench.json").write_text("{}")
        (out / "task" / "report").mkdir()
        (out / "task" / "report" / "single_tasks.csv").write_text("a\n")
        (out / "task.csv").write_text("a\n")
        (out / "sub").mkdir()
        (out / "sub" / "other.json").write_text("{}")

    path = _yaml(tmp_path, f"notebook: {nb}\ngrid: {{a: [1]}}")
    assert run_sweep(path, tmp_path / "out", execute=execute, log=lambda m: None) == {"1": "done"}
    record = json.loads((tmp_path / "out" / "1" / "sweep.json").read_text())
    assert record["results"] == ["sub/other.json", "task.csv", "task/bench.json"]


def test_a_set_that_writes_no_results_fails(tmp_path, nb):
    path = _yaml(tmp_path, f"notebook: {nb}\ngrid: {{a: [1]}}")
    status = run_sweep(path, tmp_path / "out", execute=lambda *a: None, log=lambda m: None)
    assert status == {"1": "failed"}


def test_dry_run_lists_without_running(tmp_path, nb):
    path = _yaml(tmp_path, f"notebook: {nb}\ngrid: {{a: [1, 2]}}")
    logs = []
    ex = FakeExecutor()
    assert run_sweep(path, tmp_path / "out", dry_run=True, execute=ex, log=logs.append) == {"1": "todo", "2": "todo"}
    assert not ex.calls and not (tmp_path / "out").exists()
    assert len(logs) == 2 and '"a": 1' in logs[0]


def test_cli_registers_sweep(tmp_path, nb, capsys):
    path = _yaml(tmp_path, f"notebook: {nb}\ngrid: {{a: [1, 2]}}")
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "o"), "--dry-run", "--param", "b=[1, 2]"]) == 0
    out = capsys.readouterr().out
    assert '"b": [1, 2]' in out and "sweep: 2 todo" in out
    assert cli.main(["sweep", str(path), "--dry-run", "--param", "nope=1"]) == 2   # not a parameter


def test_papermill_executes_and_skips(tmp_path, nb):
    pytest.importorskip("papermill")
    path = _yaml(tmp_path, f"notebook: {nb}\ngrid: {{a: [5]}}\nparameters: {{b: hello}}")
    out = tmp_path / "out"
    assert run_sweep(path, out, log=lambda m: None) == {"5": "done"}
    assert json.loads((out / "5" / "result.json").read_text()) == {"a": 5, "b": "hello"}
    executed = nbformat.read(out / "5" / "nb.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    assert run_sweep(path, out, log=lambda m: None) == {"5": "skipped"}


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "params").glob("*.yaml")))
def test_shipped_sweeps_are_valid(name):
    sweep = load_sweep(ROOT / "params" / name)
    check_parameters(sweep)                     # every parameter exists in its notebook
    assert all(s.notebook.parent == ROOT / "notebooks" for s in sweep.sets)


# --- status follows the parameters; malformed files; failure reasons --------------------------------

def test_dry_run_status_follows_the_parameters(tmp_path, nb):
    path = _yaml(tmp_path, f"notebook: {nb}\ngrid: {{a: [1, 2]}}\nname: 'set{{a}}'")
    out = tmp_path / "out"
    run_sweep(path, out, execute=FakeExecutor(), log=lambda m: None)
    record = json.loads((out / "set1" / "sweep.json").read_text())
    assert record["parameters_hash"]
    logs = []
    assert run_sweep(path, out, dry_run=True, log=logs.append) == {"set1": "done", "set2": "done"}
    assert run_sweep(path, out, dry_run=True, overrides={"b": "y"}, log=logs.append) == {
        "set1": "changed", "set2": "changed"}                # a real run would run them again
    assert "changed" in logs[-1]
    path.write_text(f"notebook: {nb}\ngrid: {{a: [1, 2]}}\nname: 'set{{a}}'\nparameters: {{b: z}}")
    assert run_sweep(path, out, dry_run=True, log=logs.append) == {"set1": "changed", "set2": "changed"}
    ex = FakeExecutor()                                       # ... and it does
    assert run_sweep(path, out, execute=ex, log=logs.append) == {"set1": "done", "set2": "done"}
    assert len(ex.calls) == 2
    assert run_sweep(path, out, dry_run=True, log=logs.append) == {"set1": "done", "set2": "done"}
    assert set_status(out / "set1", {"a": 1, "b": "z"}) == "done"
    assert set_status(out / "set1", {"a": 1, "b": "q"}) == "changed"
    # a status written before the hash (parameters with out_dir only) is compared by its parameters
    old = {k: v for k, v in json.loads((out / "set2" / "sweep.json").read_text()).items()
           if k != "parameters_hash"}
    (out / "set2" / "sweep.json").write_text(json.dumps(old))
    assert run_sweep(path, out, dry_run=True, log=logs.append)["set2"] == "done"
    assert run_sweep(path, out, execute=ex, log=logs.append)["set2"] == "skipped"
    # a damaged status file is "todo", not a traceback
    (out / "set2" / "sweep.json").write_text('{"status": "do')
    assert run_sweep(path, out, dry_run=True, log=logs.append)["set2"] == "todo"


@pytest.mark.parametrize("text, message", [
    ("notebook: [unclosed\ngrid: {{a: [1]}}", "line 2"),
    ("notebook: {nb}\ngrid: {{a: [1]}}\n  bad: indentation: here", "line 3"),
    ("notebook: {nb}\ngrid: {{a: [1]}}\nsets: \"unterminated", "line 3"),
    ("!!python/object/apply:os.system ['echo pwned']", "python"),
    ("notebook: {nb}\ngrid: {{a: !!python/name:os.system }}", "python"),
    ("notebook: {nb}\nparameters: [1, 2]\ngrid: {{a: [1]}}", "parameters"),
    ("notebook: {nb}\nsets: 5", "sets"),
    ("notebook: 5\ngrid: {{a: [1]}}", "notebook"),
    ("notebook: {nb}\ngrid: {{a: [1]}}\nname: 5", "name"),
    ("notebook: {nb}\nsets: [{{name: s, parameters: [1]}}]", "parameters"),
    ("notebook: {nb}\nsets: [{{name: [s]}}]", "name"),
])
def test_malformed_sweep_files_are_one_line_naming_the_file(tmp_path, nb, text, message, capsys):
    path = _yaml(tmp_path, text.format(nb=nb))
    with pytest.raises(ValueError, match=message) as err:
        load_sweep(path)
    assert str(err.value).startswith(f"{path}") and "\n" not in str(err.value)
    assert cli.main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "o")]) == 2
    err_text = capsys.readouterr().err
    assert err_text.count("\n") == 1 and str(path) in err_text and "Traceback" not in err_text
    assert not (tmp_path / "o").exists()


def test_a_failed_set_records_and_prints_the_real_reason(tmp_path, nb):
    from papermill.exceptions import PapermillExecutionError
    path = _yaml(tmp_path, f"notebook: {nb}\ngrid: {{a: [1, 2, 3]}}\nname: 'set{{a}}'")

    def execute(notebook, output, parameters, cwd, kernel_name):
        if parameters["a"] == 1:
            raise PapermillExecutionError(cell_index=2, exec_count=3,
                                          source="x = compute()\nraise ValueError('bad level')",
                                          ename="ValueError", evalue="bad level",
                                          traceback=["\x1b[0;31mValueError\x1b[0m: bad level"])
        if parameters["a"] == 2:
            raise RuntimeError()
        raise KeyError("steps")

    logs = []
    assert set(run_sweep(path, tmp_path / "out", execute=execute, log=logs.append).values()) == {"failed"}
    failed = [line for line in logs if "FAILED" in line]
    assert "ValueError: bad level" in failed[0] and "cell 3" in failed[0] and "raise ValueError" in failed[0]
    assert failed[1].endswith("FAILED: RuntimeError") and failed[2].endswith("FAILED: KeyError: 'steps'")
    record = json.loads((tmp_path / "out" / "set1" / "sweep.json").read_text())
    assert record["error"].startswith("ValueError: bad level")
    assert record["cell"] == {"index": 2, "execution_count": 3,
                              "source": "x = compute()\nraise ValueError('bad level')"}
    assert "\x1b" not in record["traceback"] and "ValueError" in record["traceback"]


def test_papermill_failure_reason(tmp_path):
    pytest.importorskip("papermill")
    nb = _notebook(tmp_path / "bad.ipynb", body="raise ValueError(f'no such level {a}')")
    path = _yaml(tmp_path, f"notebook: {nb}\ngrid: {{a: [7]}}")
    logs = []
    assert run_sweep(path, tmp_path / "out", log=logs.append) == {"7": "failed"}
    line = next(m for m in logs if "FAILED" in m)
    assert "ValueError: no such level 7" in line and "raise ValueError" in line, line
    assert json.loads((tmp_path / "out" / "7" / "sweep.json").read_text())["error"].startswith(
        "ValueError: no such level 7")


def test_a_malformed_param_value_is_one_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("notebook: x.ipynb\n")
    assert cli.main(["sweep", str(path), "--dry-run", "--param", "a=[1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--param a: not valid YAML" in err[0]


def test_dry_run_needs_no_torch(tmp_path):
    """`rusir sweep --dry-run` lists sets without loading torch (issue 26: it used to import it
    through rusir.data and the cluster module), so it answers at once on any machine."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None\n"
            "from rusir import cli\n"
            f"sys.exit(cli.main(['sweep', {str(ROOT / 'params' / 'ablation.yaml')!r}, '--out', "
            f"{str(tmp_path / 'out')!r}, '--dry-run']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "todo" in done.stdout


def test_a_set_whose_worker_always_dies_is_recorded_failed_and_the_others_run(tmp_path, nb, monkeypatch):
    """engine ray: a set whose worker died on every attempt (run_tasks hands on_done the error)
    is `failed` in its sweep.json and the log, so the next run retries it; the other sets finish."""
    cluster = pytest.importorskip("rusir.engine.cluster")
    path = _yaml(tmp_path, f"notebook: {nb}\ngrid: {{a: [1, 2]}}\nname: 'set{{a}}'")

    def run_tasks(fn, calls, *, on_done, **kw):
        for i, call in enumerate(calls):
            on_done(i, RuntimeError("the worker died") if call[2]["a"] == 1 else fn(*call))

    monkeypatch.setattr(cluster, "require_ray", lambda: None)
    monkeypatch.setattr(cluster, "run_tasks", run_tasks)
    out, logs = tmp_path / "out", []
    assert run_sweep(path, out, execute=FakeExecutor(), engine="ray", log=logs.append) == {
        "set1": "failed", "set2": "done"}
    record = json.loads((out / "set1" / "sweep.json").read_text())
    assert record["status"] == "failed" and record["error"] == "RuntimeError: the worker died"
    assert any("set1: FAILED: RuntimeError: the worker died" in line for line in logs)
    assert set_status(out / "set1") == "failed" and set_status(out / "set2") == "done"
