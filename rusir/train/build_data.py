"""Build a dataset of rendered avatars (needs ``pip install rusir[train]``).

Array dataset (what the training script reads)::

    python -m rusir.train.build_data --out DIR --n 20000 --start-seed 0 --workers 2
    # -> DIR/images.npy  uint8 [N, size, size, 3], image i is render(start_seed + i)
    #    DIR/images.json metadata (seeds, size, renderer versions)

``--out`` may also name the ``.npy`` file itself (``--out runs/data/train64.npy``; the
metadata goes to ``train64.json``). Work is done in chunks saved next to the output
(``<out>.chunks/``); re-running the same command skips the chunks already rendered, so
an interrupted build resumes. The chunks are removed once the array is assembled
(``--keep-chunks`` keeps them).

PNG folder (how the shipped held-out set was made)::

    python -m rusir.train.build_data --png --out rusir/assets/heldout --n 64 \\
        --start-seed 2000000000 --workers 1

``--grid FILE.png`` additionally writes an 8 x 8 grid of the first 64 images.
Progress (rate, ETA) is logged to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from ..data import avatars


def _log(msg: str) -> None:
    print(f"[rusir.train.build_data {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _render_chunk(seed0: int, count: int, size: int, path: str) -> str:
    arr = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        arr[i] = np.asarray(avatars.render(seed0 + i, size=size), dtype=np.uint8)
    tmp = f"{path}.tmp{os.getpid()}.npy"
    np.save(tmp, arr)
    os.replace(tmp, path)
    return path


def _render_png(seed: int, size: int, out_dir: str, index: int) -> int:
    path = Path(out_dir) / f"{index:04d}.png"
    tmp = path.with_name(path.stem + ".tmp.png")
    avatars.render(seed, size=size).save(tmp, format="PNG", optimize=True)
    os.replace(tmp, path)
    return 1


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("rusir", "py-avataaars", "cairosvg", "cairocffi", "pillow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def _check_seeds(start: int, n: int) -> str:
    if n <= 0:
        raise SystemExit("--n must be positive")
    first, last = avatars.split_of_seed(start), avatars.split_of_seed(start + n - 1)
    if first is None or first != last:
        raise SystemExit(
            f"seeds {start}..{start + n - 1} are not all inside one documented range "
            f"(train: {avatars.TRAIN_SEEDS}, held-out: {avatars.HELDOUT_SEEDS})"
        )
    return first


def _progress(done: int, total: int, t0: float, done0: int) -> str:
    dt = time.time() - t0
    rate = (done - done0) / dt if dt > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else float("nan")
    return (
        f"{done}/{total} images ({100.0 * done / total:.1f}%), {rate:.1f} img/s, "
        f"{1.0 / rate if rate else float('nan'):.3f} s/img, ETA {eta / 60:.1f} min"
    )


def _run(jobs, workers: int, on_done) -> None:
    """Run ``(fn, args)`` jobs, in-process when ``workers <= 1``."""
    if workers <= 1:
        for fn, args in jobs:
            on_done(fn(*args), args)
        return
    with ProcessPoolExecutor(max_workers=workers) as ex:
        futures = {ex.submit(fn, *args): args for fn, args in jobs}
        for fut in as_completed(futures):
            on_done(fut.result(), futures[fut])


def output_paths(out: str | os.PathLike) -> tuple[Path, Path, Path]:
    """(array file, metadata json, chunk folder) for an ``--out`` argument."""
    out = Path(out)
    npy = out if out.suffix == ".npy" else out / "images.npy"
    return npy, npy.with_suffix(".json"), npy.with_name(npy.name + ".chunks")


def build_array(out, n: int, start_seed: int = 0, size: int = 64, workers: int = 1,
                chunk: int = 250, keep_chunks: bool = False) -> Path:
    split = _check_seeds(start_seed, n)
    npy, meta_path, chunk_dir = output_paths(out)
    meta = {
        "file": npy.name, "n": n, "start_seed": start_seed, "split": split,
        "seeds": f"image i is rusir.data.render(start_seed + i, size={size})",
        "shape": [n, size, size, 3], "dtype": "uint8", "size": size,
        "render_size": avatars.RENDER_SIZE, "crop_box": list(avatars.CROP_BOX),
        "versions": _versions(),
    }
    if npy.exists() and meta_path.exists():
        old = json.loads(meta_path.read_text())
        same = all(old.get(k) == meta[k] for k in ("n", "start_seed", "size", "shape"))
        if same and np.load(npy, mmap_mode="r").shape == tuple(meta["shape"]):
            _log(f"{npy} is already complete; nothing to do")
            return npy
    chunk_dir.mkdir(parents=True, exist_ok=True)

    def chunk_path(s0: int, cnt: int) -> Path:
        return chunk_dir / f"seed{s0:010d}_n{cnt}_px{size}.npy"

    plan = []
    for off in range(0, n, chunk):
        cnt = min(chunk, n - off)
        plan.append((start_seed + off, cnt, chunk_path(start_seed + off, cnt)))
    todo = [(s0, cnt, str(p)) for s0, cnt, p in plan if not p.exists()]
    done = n - sum(c for _, c, _ in todo)
    _log(f"building {n} images of seeds {start_seed}.. ({split}) -> {npy}; "
         f"{done} already rendered, {len(todo)} chunks to go, {workers} worker(s)")
    t0, done0 = time.time(), done
    state = {"done": done}

    def on_done(_path, args):
        state["done"] += args[1]
        _log(_progress(state["done"], n, t0, done0))

    _run([(_render_chunk, (s0, cnt, size, p)) for s0, cnt, p in todo], workers, on_done)

    tmp = npy.with_name(npy.stem + ".tmp.npy")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    for s0, cnt, p in plan:
        off = s0 - start_seed
        arr[off:off + cnt] = np.load(p)
    arr.flush()
    del arr
    os.replace(tmp, npy)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    if not keep_chunks:
        for _, _, p in plan:
            p.unlink(missing_ok=True)
        try:
            chunk_dir.rmdir()
        except OSError:
            pass
    _log(f"wrote {npy} {tuple(meta['shape'])} in {(time.time() - t0) / 60:.1f} min")
    return npy


def build_pngs(out_dir, n: int, start_seed: int, size: int = 64, workers: int = 1) -> Path:
    split = _check_seeds(start_seed, n)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(n) if not (out_dir / f"{i:04d}.png").exists()]
    _log(f"writing {len(todo)} of {n} PNGs of seeds {start_seed}.. ({split}) to {out_dir}")
    jobs = [(_render_png, (start_seed + i, size, str(out_dir), i)) for i in todo]
    t0, state = time.time(), {"done": n - len(todo)}
    done0 = state["done"]

    def on_done(k, _args):
        state["done"] += k
        if state["done"] % 16 == 0 or state["done"] == n:
            _log(_progress(state["done"], n, t0, done0))

    _run(jobs, workers, on_done)
    return out_dir


def write_grid(images, path, cols: int = 8, gutter: int = 2, fill=(255, 255, 255)) -> Path:
    """Save images (uint8 HWC arrays or PIL images, all the same size) as a grid PNG."""
    ims = [im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im)) for im in images]
    w, h = ims[0].size
    rows = (len(ims) + cols - 1) // cols
    grid = Image.new("RGB", (cols * (w + gutter) + gutter, rows * (h + gutter) + gutter), fill)
    for i, im in enumerate(ims):
        grid.paste(im.convert("RGB"), (gutter + (i % cols) * (w + gutter),
                                       gutter + (i // cols) * (h + gutter)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rusir.train.build_data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (or .npy file for arrays)")
    ap.add_argument("--n", type=int, required=True, help="number of images")
    ap.add_argument("--start-seed", type=int, default=avatars.TRAIN_SEED_START,
                    help="seed of image 0 (training: 0..; held-out: 2000000000..)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=250, help="images per resumable chunk")
    ap.add_argument("--png", action="store_true", help="write NNNN.png files instead of .npy")
    ap.add_argument("--keep-chunks", action="store_true")
    ap.add_argument("--grid", help="also write an 8x8 grid of the first 64 images here")
    a = ap.parse_args(argv)
    avatars.import_backend()  # fail early with the install hint
    if a.png:
        out_dir = build_pngs(a.out, a.n, a.start_seed, a.size, a.workers)
        first = [Image.open(out_dir / f"{i:04d}.png") for i in range(min(64, a.n))]
    else:
        npy = build_array(a.out, a.n, a.start_seed, a.size, a.workers, a.chunk, a.keep_chunks)
        first = list(np.load(npy, mmap_mode="r")[:64])
    if a.grid:
        _log(f"grid: {write_grid(first, a.grid)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
