"""Root-level W++ candidates (NGD options) against the shipped schedule, setting by setting.

    python benchmarks/robustness_root.py --runs runs/root8 runs/root64 --reference REF_FOLDER

`benchmarks/robustness.py` writes one records file per target size; this script merges the
candidates' folders (`--runs`) with a reference folder that holds the shipped schedule and the
W-and-W+-only schedule (`W++0.02x300`, `W++x0`) on the same faces, keeps only the (setting, face)
items every candidate has, and writes per candidate the summary (mean final PSNR, worst drop below
the best earlier phase, drops > 0.3 dB, below naive) over those settings and the per-setting rows.
The reference's W and W+ phases come from its own batch, so its W / W+ PSNR may differ from the
candidates' by the rounding NGD amplifies (README, "Python API"); the candidates share theirs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rusir.engine.records import write_json
from rusir.studies.robustness import phase_table, summary

REFERENCE = ("W++0.02x300", "W++x0")


def load(folders: list[Path]) -> dict[str, list[dict]]:
    merged: dict[str, list] = {}
    for folder in folders:
        for path in sorted(folder.glob("records_*px.json")):
            for cand, recs in json.loads(path.read_text())["records"].items():
                merged.setdefault(cand, []).extend(recs)
    return merged


def key(r: dict) -> tuple:
    return r["task"], r["level"], r["image_index"]


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--runs", nargs="+", required=True, help="folders of benchmarks/robustness.py")
    p.add_argument("--reference", required=True, help="folder with the shipped schedule's records")
    p.add_argument("--json", default="benchmarks/results/robustness_candidates_root_toyfaces64.json")
    p.add_argument("--note", default="")
    a = p.parse_args(argv)
    cands = load([Path(f) for f in a.runs])
    ref = load([Path(a.reference)])
    ref["W++x0"] = [{**r, "phases": {**r["phases"], "W++": r["phases"]["W+"]}}
                    for r in ref["W++0.02x300"]]
    full = max(len(v) for v in cands.values())
    cands = {c: v for c, v in cands.items() if len(v) == full}       # measured on every item
    items = {key(r) for r in next(iter(cands.values()))}
    every = {**{c: ref[c] for c in REFERENCE}, **cands}
    tables = {c: phase_table([r for r in recs if key(r) in items]) for c, recs in every.items()}
    data = {"_meta": {"generator": "toyfaces64", "note": a.note, "runs": a.runs,
                      "reference": "the shipped schedule (W++0.02x300) and W and W+ only (W++x0) "
                                   "from benchmarks/robustness.py records of the committed "
                                   "robustness_toyfaces64.json run, restricted to the same items",
                      "items": len(items),
                      "faces": sorted({i for _, _, i in items})},
            "candidates": {c: summary(t) for c, t in tables.items()},
            "settings": {c: {k: {"naive": r["naive"]["psnr"],
                                 **{ph: v["psnr"] for ph, v in r["phases"].items()},
                                 "drop": r["final_drop"]} for k, r in t.items()}
                         for c, t in tables.items()}}
    write_json(Path(a.json), data)
    for c, s in data["candidates"].items():
        print(f"{c:22s} mean {s['mean_final_psnr']:.2f} over {s['settings']}, worst drop "
              f"{s['worst_drop']:.2f} ({s['worst_drop_setting']}), drops>0.3 {len(s['drops_over_0.3'])}, "
              f"below naive {len(s['below_naive'])}")
    settings = list(next(iter(tables.values())))
    print("setting | " + " | ".join(tables))
    for k in settings:
        print(k, "|", " | ".join(f"{tables[c][k]['phases']['W++']['psnr']:.2f} ({tables[c][k]['final_drop']:+.2f})"
                                for c in tables))


if __name__ == "__main__":
    main()
