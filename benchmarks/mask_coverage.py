"""Hole fraction of the inpainting stroke masks per level: mean and standard error, as JSON.

    python benchmarks/mask_coverage.py --side 256 --masks 2000
    python benchmarks/mask_coverage.py --side 1024 --masks 100 --brush 0.09   # a what-if width

Mask k of a level is `stroke_mask(side, side, strokes, random.Random(k))`, so the first N masks
of a run are the ones the test (tests/test_degradations.py) draws. The reference procedure's
means (spec 5.6: OpenCV, 20 draws per level at 1024 px) are printed beside ours.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir.degradations import inpainting
from rusir.degradations.base import LEVELS

REFERENCE = {"XS": 4.8, "S": 22.7, "M": 37.1, "L": 47.8, "XL": 56.5}  # spec 5.6, % at 1024 px


def coverage(side: int, masks: int, first: int = 0) -> dict[str, dict[str, float]]:
    """Per level: mean hole fraction, sample std and standard error of the mean, in %."""
    out = {}
    for level in LEVELS:
        strokes = inpainting.Inpainting.LEVEL_PARAMS[level]
        holes = [100 * (1 - float(inpainting.stroke_mask(side, side, strokes, random.Random(k)).mean()))
                 for k in range(first, first + masks)]
        mean = sum(holes) / masks
        std = math.sqrt(sum((h - mean) ** 2 for h in holes) / max(masks - 1, 1))
        out[level] = {"mean": mean, "std": std, "se": std / math.sqrt(masks),
                      "min": min(holes), "max": max(holes)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--masks", type=int, default=2000, help="masks per level")
    ap.add_argument("--first", type=int, default=0, help="seed of the first mask")
    ap.add_argument("--brush", type=float, default=None,
                    help="override the brush width fraction (default: the shipped one)")
    ap.add_argument("--out", default=None, help="JSON file (default: print only)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.brush is not None:
        inpainting.BRUSH_FRACTION = args.brush
    start = time.perf_counter()
    stats = coverage(args.side, args.masks, args.first)
    for level, s in stats.items():
        print(f"{level:>2}: {s['mean']:5.2f} % ± {s['se']:.2f} (SE; std {s['std']:.2f}, "
              f"{s['min']:.1f}-{s['max']:.1f})  reference {REFERENCE[level]:.1f} %  "
              f"difference {s['mean'] - REFERENCE[level]:+.2f}")
    record = {"side": args.side, "masks_per_level": args.masks, "first_seed": args.first,
              "brush_fraction": inpainting.BRUSH_FRACTION, "levels": stats, "reference": REFERENCE,
              "seconds": round(time.perf_counter() - start, 1), "platform": platform.platform()}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
