"""Writing a user's files (rusir.data.outputs): atomic, never through a symbolic link, one writer per
output -- checked on the module and on `rusir restore`, whose outputs go through it."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from rusir.cli import main
from rusir.data import claims
from rusir.data.outputs import OutputClaims, OutputError, write_file


def png(path: Path, color=(200, 120, 60)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), color).save(path)
    return path


def restore(image: Path, out: Path, *extra: str) -> int:
    return main(["restore", str(image), "--task", "denoising", "--out", str(out), "--steps", "1,1,1",
                 *extra])


def one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files or claims left in `folder`."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name)


@pytest.fixture
def live_process():
    """A live process of this host: its claims are respected."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=600)


# --- the module ------------------------------------------------------------------------------

def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("old")

    def crash(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_file(path, crash)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.txt"]            # no temporary sibling left
    write_file(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["x.txt"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_link_is_never_written_through(tmp_path, overwrite):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    live, dangling = tmp_path / "out" / "live.txt", tmp_path / "out" / "dangling.txt"
    live.parent.mkdir()
    live.symlink_to(outside)
    dangling.symlink_to(tmp_path / "nowhere.txt")
    for link in (live, dangling):
        with pytest.raises(OutputError, match="symbolic link"):
            write_file(link, lambda tmp: tmp.write_text("clobbered"), overwrite=overwrite)
    assert outside.read_text() == "precious" and not (tmp_path / "nowhere.txt").exists()
    assert live.is_symlink() and dangling.is_symlink()
    assert leftovers(tmp_path / "out") == []


def test_without_overwrite_a_file_that_appears_while_writing_is_kept(tmp_path):
    path = tmp_path / "x.txt"

    def race(tmp: Path) -> None:
        tmp.write_text("mine")
        path.write_text("theirs")        # another writer finishes first

    with pytest.raises(OutputError, match="appeared while"):
        write_file(path, race, overwrite=False)
    assert path.read_text() == "theirs" and os.listdir(tmp_path) == ["x.txt"]


def test_without_hard_links_a_file_that_appears_while_writing_is_still_kept(tmp_path, monkeypatch):
    """On a file system without hard links (os.link fails), the fallback checks the name again."""
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "link", no_links)
    path, other = tmp_path / "x.txt", tmp_path / "y.txt"
    assert write_file(str(other), lambda tmp: tmp.write_text("free"), overwrite=False) == other
    assert other.read_text() == "free"      # a str path is taken too

    def race(tmp: Path) -> None:
        tmp.write_text("mine")
        path.write_text("theirs")

    with pytest.raises(OutputError, match="already exists"):
        write_file(path, race, overwrite=False)
    assert path.read_text() == "theirs" and sorted(os.listdir(tmp_path)) == ["x.txt", "y.txt"]


def test_claims_refuse_outputs_another_live_run_holds(tmp_path, live_process):
    out = tmp_path / "out"
    token = f"{socket.gethostname()}-{live_process.pid}+other"
    assert claims.claim_item(out, "b.png", token)
    with pytest.raises(OutputError, match=r"b\.png is being written by another run"):
        with OutputClaims(out, [out / "a.png", out / "b.png"]):
            pass
    assert claims.claim_holder(out, "a.png") is None          # released again
    assert claims.claim_holder(out, "b.png") == token         # the other run's kept
    with OutputClaims(tmp_path / "new", [tmp_path / "new" / "a.png"]) as held:
        assert claims.claim_holder(tmp_path / "new", "a.png") == held.token
    assert not (tmp_path / "new").exists()                    # nothing written: nothing left


# --- rusir restore ---------------------------------------------------------------------------

def test_restore_with_overwrite_never_writes_through_a_link(tmp_path, capsys):
    image, out = png(tmp_path / "x.png"), tmp_path / "out"
    outside = png(tmp_path / "elsewhere" / "precious.png", color=(1, 2, 3))
    before = outside.read_bytes()
    out.mkdir()
    (out / "x_restored.png").symlink_to(outside)
    assert restore(image, out, "--overwrite") == 2
    one_line_error(capsys, str(out / "x_restored.png"), "symbolic link")
    assert outside.read_bytes() == before


def test_restore_creates_nothing_where_a_dangling_link_points(tmp_path, capsys):
    image, out = png(tmp_path / "x.png"), tmp_path / "out"
    out.mkdir()
    target = tmp_path / "elsewhere" / "made.pt"
    (out / "x_latent.pt").symlink_to(target)
    for extra in ((), ("--overwrite",)):
        assert restore(image, out, *extra) == 2
        one_line_error(capsys, str(out / "x_latent.pt"), "symbolic link")
        assert not target.exists() and not target.parent.exists()
    assert sorted(os.listdir(out)) == ["x_latent.pt"]


def test_a_second_restore_into_the_same_outputs_is_refused(tmp_path, capsys, live_process):
    """A run writing x's outputs (a live process's claim) makes a second run fail in one line
    naming the output, with --overwrite too; once that run is gone its claim is stale."""
    image, out = png(tmp_path / "x.png"), tmp_path / "out"
    token = f"{socket.gethostname()}-{live_process.pid}+first"
    assert claims.claim_item(out, "x_phases.png", token)
    for extra in ((), ("--overwrite",)):
        assert restore(image, out, *extra) == 2
        one_line_error(capsys, str(out / "x_phases.png"), "another run")
    assert sorted(p.name for p in out.iterdir()) == [claims.TMP]    # nothing written
    live_process.stdin.close()
    live_process.wait(timeout=600)
    assert restore(image, out) == 0                                 # stale claim: taken over
    assert sorted(os.listdir(out)) == ["x_latent.pt", "x_phases.png", "x_restored.png"]
    assert set(torch.load(out / "x_latent.pt")) == {"W", "W+", "W++"}


def test_two_restores_at_once_do_not_both_succeed(tmp_path):
    """Two real processes into one --out, without --overwrite: one writes, the other is refused."""
    image, out = png(tmp_path / "x.png"), tmp_path / "out"
    cmd = [sys.executable, "-m", "rusir", "restore", str(image), "--task", "denoising", "--out",
           str(out), "--steps", "2,2,2"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    try:
        errors = [run.communicate(timeout=1800)[1] for run in runs]
    finally:                                  # the timeout only guards against a hang
        for run in runs:
            run.kill()
            run.wait()
    results = [(run.returncode, err) for run, err in zip(runs, errors)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refusal = next(err for code, err in results if code == 2)
    assert "x_" in refusal and "Traceback" not in refusal and len(refusal.strip().splitlines()) == 1
    assert sorted(os.listdir(out)) == ["x_latent.pt", "x_phases.png", "x_restored.png"]


def _writers():
    from rusir.engine import records
    from rusir.report import writers as report
    from rusir.studies import figures, results
    image = torch.zeros(3, 8, 8)
    return {
        "bench record json": lambda p: records.write_json(p, {"a": 1}),
        "report table csv": lambda p: report.write_csv(p, ["a"], [{"a": 1}]),
        "figure grid png": lambda p: figures.save_grid(p, [[image]]),
        "summary csv": lambda p: results.write_summary({("a",): {"n": 1}}, ("x",), p),
    }


@pytest.mark.parametrize("writer", ["bench record json", "report table csv", "figure grid png",
                                    "summary csv"])
def test_every_writer_refuses_a_dangling_link(tmp_path, writer):
    """The benchmark's, the report's and the figures' files go through the same check."""
    link = tmp_path / "out" / "x.json"
    link.parent.mkdir()
    link.symlink_to(tmp_path / "nowhere.json")
    with pytest.raises(OutputError, match="symbolic link"):
        _writers()[writer](link)
    assert not (tmp_path / "nowhere.json").exists()


def test_a_sweep_never_executes_a_notebook_into_a_link(tmp_path):
    from rusir.sweep import ParamSet, run_set
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "nb.ipynb").symlink_to(tmp_path / "elsewhere.ipynb")
    executed = []
    record = run_set(ParamSet("set", tmp_path / "nb.ipynb"), folder, {}, tmp_path / "sweep.yaml",
                     lambda *args: executed.append(args), None, tmp_path)
    assert record["status"] == "failed" and "symbolic link" in record["error"] and not executed
    assert not (tmp_path / "elsewhere.ipynb").exists()
