"""Hostile-input probe of `rusir tune` and DDRM / the diffusion trainer (the second half of
scripts/probe_new_surfaces.py: same harness, same classification).

    PYTHONPATH=. python scripts/probe_tune_ddrm.py [FILTER]
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_new_surfaces import RESULTS, run  # noqa: E402


def main_probe():
    base = Path(tempfile.mkdtemp(prefix="probe_h9t_"))
    outside = base / "outside.yaml"
    outside.write_text("precious")

    def untouched():
        return None if outside.read_text() == "precious" else "file outside written"

    fast = base / "fast.yaml"
    fast.write_text("pulse:\n  fixed: {steps: 1}\n  grid: {lr: [0.4]}\n"
                    "adam_wplus:\n  fixed: {steps: 1}\n  grid: {lr: [0.01]}\n")

    def tune(*extra, out=None, search=fast, methods="adam_wplus", tables=None):
        out = out or Path(tempfile.mkdtemp(dir=base))
        tables = tables or Path(tempfile.mkdtemp(dir=base))
        return ["tune", "--methods", methods, "--tasks", "denoising@M", "--search", search,
                "--images", "heldout:60-60", "--tuning-images", "heldout:0-0", "--out", out,
                "--tables-out", tables, "--no-progress", *extra]

    run("tune baseline (1 step)", tune(), expect="ok", timeout=300)
    # names
    for g in ["../../evil", "/tmp/x/evil.pkl", "", "toyface64", "a" * 300]:
        t = Path(tempfile.mkdtemp(dir=base))
        run(f"tune --generator {g[:40]!r}", tune("--generator", g, tables=t),
            check=lambda t=t: None if not any(base.glob("**/evil*")) else "table written outside --tables-out")
    for m in ["", "rusir", "pulse,pulse", "../pulse", "PULSE", "ddrm"]:
        run(f"tune --methods {m!r}", tune(methods=m), expect="refuse" if m != "pulse,pulse" else "any")
    for t in ["bogus", "denoising@Q", "", "denoising@M,denoising@M"]:
        args = tune()
        args[args.index("--tasks") + 1] = t
        run(f"tune --tasks {t!r}", args, expect="refuse" if "M,d" not in t else "any", timeout=300)
    run("tune --split bogus", tune("--split", "bogus"))
    run("tune --metric bogus", tune("--metric", "bogus"))
    for spec in ["heldout:1000", "heldout:62-65", "heldout:-1", "heldout:1e300", "heldout:5-2"]:
        args = tune()
        args[args.index("--images") + 1] = spec
        run(f"tune --images {spec}", args)
        args = tune()
        args[args.index("--tuning-images") + 1] = spec
        run(f"tune --tuning-images {spec}", args)
    args = tune()
    args[args.index("--tuning-images") + 1] = "heldout:60-60"
    run("tune tuning images = test images", args)
    for s in ["5/3", "1/0", "a/b", "-1/2", "0/1e300"]:
        run(f"tune --shard {s}", tune("--shard", s))
    for o, v in [("--batch", "0"), ("--max-items", "0"), ("--seed", "-1"), ("--seed", "nan"),
                 ("--cpus-per-unit", "nan"), ("--gpus-per-unit", "-1")]:
        run(f"tune {o} {v}", tune(o, v))
    # search spaces
    bomb = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")) + "adam_wplus:\n  grid: {lr: *i}\n"
    spaces = {
        "alias bomb": bomb,
        "lr nan": "adam_wplus:\n  grid: {lr: [.nan]}\n",
        "lr inf": "adam_wplus:\n  grid: {lr: [.inf]}\n",
        "lr 1e300": "adam_wplus:\n  grid: {lr: [1e300]}\n",
        "lr negative": "adam_wplus:\n  grid: {lr: [-1]}\n",
        "lr string": "adam_wplus:\n  grid: {lr: [fast]}\n",
        "lr list": "adam_wplus:\n  grid: {lr: [[1, 2]]}\n",
        "steps -1": "adam_wplus:\n  fixed: {steps: -1}\n  grid: {lr: [0.01]}\n",
        "steps 1e300": "adam_wplus:\n  fixed: {steps: 1e300}\n  grid: {lr: [0.01]}\n",
        "steps nan": "adam_wplus:\n  fixed: {steps: .nan}\n  grid: {lr: [0.01]}\n",
        "unknown option": "adam_wplus:\n  fixed: {steps: 1}\n  grid: {bogus: [1]}\n",
        "empty grid list": "adam_wplus:\n  grid: {lr: []}\n",
        "grid 10^12": "adam_wplus:\n  grid:\n" + "".join(f"    o{i}: [{', '.join(str(j) for j in range(16))}]\n" for i in range(10)),
        "grid 20000 values": "adam_wplus:\n  grid: {lr: [" + ", ".join(f"0.{i+1}" for i in range(20000)) + "]}\n",
        "python tag": "adam_wplus: !!python/object/apply:os.system ['echo pwned']\n",
        "not mapping": "[1, 2]\n",
        "method missing": "pulse: {grid: {lr: [0.1]}}\n",
        "extra keys": "adam_wplus: {grid: {lr: [0.1]}, other: 1}\n",
        "fixed not mapping": "adam_wplus: {fixed: [1], grid: {lr: [0.1]}}\n",
        "grid not mapping": "adam_wplus: {grid: 5}\n",
        "binary": "\x00\x01\x02\xff",
        "deep": "adam_wplus: " + "[" * 5000 + "]" * 5000 + "\n",
        "duplicate keys": "adam_wplus: {grid: {lr: [0.1]}}\nadam_wplus: {grid: {lr: [0.2]}}\n",
        "seed option": "adam_wplus:\n  fixed: {steps: 1, seed: nan}\n  grid: {lr: [0.01]}\n",
    }
    for k, text in spaces.items():
        f = base / f"s_{k.replace(' ', '_').replace('^', '')}.yaml"
        f.write_text(text, errors="surrogateescape") if k != "binary" else f.write_bytes(text.encode("latin-1"))
        run(f"tune --search {k}", tune(search=f), timeout=120)
    big = base / "s_big.yaml"
    big.write_text("#" * (2 << 20))
    run("tune --search 2 MiB", tune(search=big))
    fifo = base / "s_fifo.yaml"
    os.mkfifo(fifo)
    run("tune --search FIFO", tune(search=fifo), timeout=20)
    dl = base / "s_dangling.yaml"
    os.symlink(base / "nowhere", dl)
    run("tune --search dangling link", tune(search=dl))
    # outputs
    tables = base / "tl"
    (tables / "toyfaces64").mkdir(parents=True)
    os.symlink(outside, tables / "toyfaces64" / "adam_wplus.yaml")
    run("tune table file is a link", tune(tables=tables), expect="refuse", timeout=300, check=untouched)
    tables = base / "tl2"
    tables.mkdir()
    el = base / "elsewhere"
    el.mkdir()
    os.symlink(el, tables / "toyfaces64")
    run("tune <tables>/<generator> is a link", tune(tables=tables), expect="refuse", timeout=300,
        check=lambda: "table written through a linked folder" if any(el.iterdir()) else None)
    f = base / "afile"
    f.write_text("x")
    run("tune --tables-out is a file", tune(tables=f), timeout=120)
    run("tune --out is a file", tune(out=f), timeout=120)
    # select-only on hostile record folders
    run("tune --select-only empty out", tune("--select-only", out=base / "empty"), expect="any")
    rec = base / "rec_bad"
    rec.mkdir()
    (rec / "bench.json").write_text("{" * 10)
    run("tune --select-only corrupt bench.json", tune("--select-only", out=rec), expect="any")
    rec = base / "rec_trav"
    rec.mkdir()
    (rec / "bench.json").write_text(json.dumps({"generator": "../../../evil"}))
    tt = base / "tt"
    run("tune --select-only config generator traversal", tune("--select-only", out=rec, tables=tt / "a" / "b"),
        expect="any", check=lambda: "table written outside --tables-out" if (tt / "evil").exists() or (base / "evil").exists() else None)

    # --- DDRM and the diffusion trainer ---------------------------------------------------------
    def bench(*extra, out=None):
        out = out or Path(tempfile.mkdtemp(dir=base))
        return ["bench", "--methods", "ddrm", "--tasks", "denoising@M", "--images", "heldout:1",
                "--out", out, "--metrics", "psnr", "--no-progress", *extra]
    for v in ["0", "-1", "nan", "1e300", "100001"]:
        run(f"bench ddrm --baseline-steps {v}", bench("--baseline-steps", v), expect="refuse" if v != "0" else "any", timeout=300)
    for t in ["inpainting@M", "deartifacting@M", "UNAP@M", "grayscale@M"]:
        args = bench("--baseline-steps", "2")
        args[args.index("--tasks") + 1] = t
        run(f"bench ddrm task {t}", args, expect="any", timeout=300)
    from probe_new_surfaces import RESULTS as R  # noqa: F401
    trainer = [sys.executable, "-m", "rusir.train.diffusion"]
    import subprocess

    def train(name, *args, expect="refuse", timeout=120):
        if len(sys.argv) > 1 and sys.argv[1] not in name:
            return
        try:
            p = subprocess.run(trainer + [str(a) for a in args], capture_output=True, text=True,
                               timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
            err = [ln for ln in p.stderr.strip().splitlines() if not ln.startswith("warning")]
            if "Traceback" in p.stderr:
                v = "TRACEBACK"
            elif expect == "refuse":
                v = "ok" if p.returncode == 2 and len(err) == 1 else f"WRONG(rc={p.returncode},{len(err)} lines)"
            else:
                v = "ok" if p.returncode in (0, 1, 2) else f"WRONG(rc={p.returncode})"
            last = (p.stderr.strip().splitlines() or [""])[-1][:200]
        except subprocess.TimeoutExpired:
            v, last = "HANG", ""
        RESULTS.append((name, v, last))
        print(f"{v:24s} {name:55s} {last}", flush=True)
    help_ = subprocess.run(trainer + ["--help"], capture_output=True, text=True)
    print(help_.stdout[-2500:])
    return base, train


if __name__ == "__main__":
    base, train = main_probe()
    bad = [r for r in RESULTS if not r[1].startswith("ok")]
    print(f"\n{len(RESULTS)} cases, {len(bad)} failing")
    for r in bad:
        print("FAIL", *r)
