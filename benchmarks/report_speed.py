"""How long `rusir report` takes, first and second time, and what one Inception crop costs (JSON).

    python benchmarks/report_speed.py                 # temp folders; writes benchmarks/results/report_speed.json
    python benchmarks/report_speed.py --skip-big      # only the 8-item bench (seconds)

1. small: the issue's bench -- toyfaces64, 2 faces x {rusir, pulse} x {upsampling@M, denoising@M},
   steps 2,2,2 -- then `write_report` twice. With 2 images a cell no set metric reaches its
   minimum sample size, so no Inception call is made at all (counted).
2. big: 25 faces x 1 method (bicubic, so that restoring costs nothing) x upsampling@M, patch-FID
   with 100 crops per image: 2500 prediction crops and 2500 reference crops >= 2049, so pFID is
   computed. First report: every crop through Inception (seconds per crop); second: from cache;
   then with the values cache removed: features read back, pFID recomputed.
   Then the KID null spread: KID between two disjoint random halves of the prediction crops'
   features (the same distribution, true KID 0) at several n, to show why KID needs n >= 100.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch
import torch.nn.functional as F

from rusir import metrics
from rusir.engine.runner import run_bench
from rusir.inversion.restore import RestoreResult
from rusir.report import FeatureSpec, FeatureStore, load_records, write_report
from rusir.report.features import default_device
from rusir.report.set_metrics import cache_folder

RESULT = Path(__file__).parent / "results" / "report_speed.json"


class Counter:
    """Counts the images sent through `rusir.metrics.inception_features`."""

    def __init__(self):
        self.images = 0
        self.inner = metrics.inception_features

    def __call__(self, images, batch_size=32, device=None):
        self.images += images.shape[0]
        return self.inner(images, batch_size=batch_size, device=device)


def bicubic(G, target, degradation, loss=None, seed=0, steps=None, progress=True):
    s = G.img_resolution
    return RestoreResult(F.interpolate(target, size=(s, s), mode="bicubic", align_corners=False).clamp(0, 1), {})


def timed_reports(folder: Path, counter: Counter, **kwargs) -> dict:
    out = {}
    for name in ("first", "second"):
        before = counter.images
        t = time.perf_counter()
        write_report(folder, progress=True, **kwargs)
        out[name] = {"seconds": round(time.perf_counter() - t, 2), "inception_images": counter.images - before}
    return out


def small(root: Path, counter: Counter) -> dict:
    folder = root / "small"
    t = time.perf_counter()
    run_bench("toyfaces64", "heldout:0-1", methods="rusir,pulse", tasks="upsampling@M,denoising@M",
              out=folder, steps=[2, 2, 2], baseline_steps=2, progress=False)
    bench_s = time.perf_counter() - t
    return {"items": len(load_records(folder)), "bench_seconds": round(bench_s, 1),
            "report": timed_reports(folder, counter)}


def big(root: Path, counter: Counter, images: int, crops: int) -> dict:
    folder = root / "big"
    run_bench("toyfaces64", f"heldout:0-{images - 1}", methods={"bicubic": bicubic}, tasks="upsampling@M",
              out=folder, metrics=("psnr", "ssim"), progress=False)
    report = timed_reports(folder, counter, names=("patch_fid",), crops=crops)
    report["features_cached"] = features_cached(folder, counter, crops)
    first = report["first"]
    result = {"images": images, "crops_per_image": crops, "report": report,
              "seconds_per_crop_first": round(first["seconds"] / max(first["inception_images"], 1), 4),
              "patch_fid": json.loads((folder / "report" / "set_metrics.json").read_text())}
    result["kid_null"] = kid_null(folder)
    return result


def features_cached(folder: Path, counter: Counter, crops: int) -> dict:
    """A report whose values cache is gone but whose features are kept: every vector read back
    from disk and pFID recomputed (what a changed threshold or a new cell costs)."""
    (folder / "report" / "set_metrics.json").unlink()
    before = counter.images
    t = time.perf_counter()
    write_report(folder, progress=True, names=("patch_fid",), crops=crops)
    return {"seconds": round(time.perf_counter() - t, 2), "inception_images": counter.images - before}


def kid_null(folder: Path) -> dict:
    """KID between disjoint random halves of one set of features (true value 0) at several n:
    mean and std over 20 draws. The noise at n is what a KID difference must beat."""
    store = FeatureStore(cache_folder(folder))
    preds = sorted(Path(r["_dir"]) / "prediction.png" for r in load_records(folder))
    side = int(metrics.default_crop_size(64))
    feats = torch.cat(store.features([(p, FeatureSpec(side, 100, 0)) for p in preds]))
    g = torch.Generator().manual_seed(0)
    out = {}
    for n in (10, 25, 50, 100, 200, 500, 1000):
        if 2 * n > feats.shape[0]:
            break
        values = []
        for _ in range(20):
            idx = torch.randperm(feats.shape[0], generator=g)
            values.append(metrics.kid(feats[idx[:n]], feats[idx[n:2 * n]], subsets=10, seed=0)[0])
        v = torch.tensor(values)
        out[str(n)] = {"mean": round(float(v.mean()), 5), "std": round(float(v.std()), 5)}
    return out


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = None
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "device": str(default_device()),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "python": platform.python_version(), "commit": commit,
            "load_average_at_start": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="bench folders here (default: a temp folder)")
    p.add_argument("--skip-big", action="store_true")
    p.add_argument("--big-images", type=int, default=25)
    p.add_argument("--crops", type=int, default=100)
    p.add_argument("--result", type=Path, default=RESULT)
    p.add_argument("--cached-only", type=Path, default=None, metavar="BIG_DIR",
                   help="only re-time the features-cached report of an earlier run's big folder "
                        "(kept with --out) and add it to --result")
    a = p.parse_args()
    counter = Counter()
    metrics.inception_features = counter
    if a.cached_only:
        record = json.loads(a.result.read_text())
        record["big"]["report"]["features_cached"] = features_cached(a.cached_only, counter, a.crops)
        record["big"]["report"]["features_cached"]["commit"] = machine()["commit"]
        a.result.write_text(json.dumps(record, indent=1) + "\n")
        print(json.dumps(record["big"]["report"], indent=1))
        return
    with tempfile.TemporaryDirectory(prefix="rusir-report-speed-") as tmp:
        root = a.out or Path(tmp)
        record = {"machine": machine(), "small": small(root, counter)}
        print(json.dumps(record["small"], indent=1))
        if not a.skip_big:
            record["big"] = big(root, counter, a.big_images, a.crops)
    a.result.parent.mkdir(parents=True, exist_ok=True)
    a.result.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
