"""Hostile-input probe of `python -m rusir.train.diffusion` (options, data, a crafted state.pt on
--resume): each case in-process under an alarm; prints ran / exit N / TRACEBACK / HANG per case.

    PYTHONPATH=. python scripts/probe_trainer.py
"""
import io, contextlib, sys, tempfile, traceback, signal
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from rusir.train import diffusion as D
base = Path(tempfile.mkdtemp(prefix="h9tr_"))
np.save(base / "d.npy", np.random.randint(0, 255, (4, 8, 8, 3), np.uint8))
np.save(base / "empty.npy", np.zeros((0, 8, 8, 3), np.uint8))
np.save(base / "odd.npy", np.zeros((2, 7, 7, 3), np.uint8))
np.save(base / "float.npy", np.zeros((2, 8, 8, 3), np.float32))
np.save(base / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
np.save(base / "gray.npy", np.zeros((2, 8, 8), np.uint8))
(base / "trunc.npy").write_bytes((base / "d.npy").read_bytes()[:100])
class Hang(Exception):
    pass
def _alarm(*_):
    raise Hang()
signal.signal(signal.SIGALRM, _alarm)
def run(label, *args, data=None):
    argv = ["--data", str(data or base / "d.npy"), "--out", str(base / f"o_{len(label)}_{abs(hash(label))}"),
            "--kimg", "0.004", "--batch", "2", "--channels", "8,8", "--attention", "0,0", "--groups", "4",
            "--snap-every", "100000", "--log-every", "100000", *args]
    err = io.StringIO()
    signal.alarm(25)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            D.main(argv)
        v = "ran"
    except SystemExit as e:
        v = f"exit {e.code}"
    except Hang:
        v = "HANG(25 s)"
    except Exception as e:
        v = f"TRACEBACK {type(e).__name__}: {str(e)[:120]}"
    finally:
        signal.alarm(0)
    print(f"{v[:150]:70s} {label}  {err.getvalue().strip().splitlines()[-1:] if v.startswith('exit') else ''}")
run("baseline")
for o, vals in [("--kimg", ["nan", "inf", "-1", "1e300"]), ("--batch", ["0", "-1", "1e9", "nan"]),
                ("--lr", ["nan", "-1", "1e300"]), ("--ema", ["nan", "2", "-1"]), ("--warmup", ["-1"]),
                ("--groups", ["0", "-4"]), ("--channels", ["abc", "0,0", "", "100000,100000", "-8,-8"]),
                ("--attention", ["2,0", "x,y"]), ("--threads", ["0", "-1"]), ("--device", ["bogus", "cuda:9"]),
                ("--max-minutes", ["nan", "-1"]), ("--layers-per-block", ["0", "-1", "100000"]),
                ("--log-every", ["0"]), ("--snap-every", ["0"]), ("--seed", ["-1", "nan"])]:
    for v in vals:
        extra = [o, v] + (["--attention", ",".join(["0"] * max(1, len(v.split(","))))] if o == "--channels" else [])
        run(f"{o} {v}", *extra)
for k in ["empty", "odd", "float", "obj", "gray", "trunc"]:
    run(f"data {k}", data=base / f"{k}.npy")
run("data missing", data=base / "nope.npy")
run("data folder without npy", data=base / "o_dir_none")
(base / "o_dir_none").mkdir(exist_ok=True)
run("data empty folder", data=base / "o_dir_none")
# resume with a crafted state.pt (pickle payload)
out = base / "res"
out.mkdir()
class Evil:
    def __reduce__(self):
        return (print, ("PAYLOAD RAN",))
torch.save({"x": Evil()}, out / "state.pt")
argv = ["--data", str(base / "d.npy"), "--out", str(out), "--kimg", "0.004", "--batch", "2", "--channels", "8,8",
        "--attention", "0,0", "--groups", "4", "--resume"]
buf = io.StringIO()
try:
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        D.main(argv)
except BaseException as e:
    print("resume crafted:", type(e).__name__, str(e)[:100])
print("payload ran" if "PAYLOAD RAN" in buf.getvalue() else "payload did not run")
(base / "res2").mkdir()
run("resume without state.pt", "--resume")
