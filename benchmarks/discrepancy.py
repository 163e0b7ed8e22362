"""The discrepancy stop's tau, chosen by the whole robustness table (issue 20).

    python benchmarks/discrepancy.py --first 48 --n-images 4 --taus 0.9,1,1.1,1.2 --out runs/disc48
    python benchmarks/discrepancy.py --first 16 --n-images 8 --taus 1.1 --chosen 1.1 \
        --check 8 --out runs/disc16          # -> benchmarks/results/robustness_discrepancy_toyfaces64.json

Every setting (the four tasks at XS..XL, the 11 compositions at M) on held-out faces, stacked by
target size into one batch as `benchmarks/robustness.py` does. Each stack runs the embedded
generator's schedule ONCE without stopping, while the restore estimates the noise floor
(`restore(..., discrepancy=NEVER)`: floors every 10 steps, `StepInfo.floor`); every candidate tau
is a `DiscrepancyStop` fed the same losses and floors, which stops image i at the step a restore
with that tau would stop it (up to float rounding: later batches differ once images freeze), and
its result is the image at that step. `off` is the run itself (the schedule without the stop).
`--check N` re-runs the stacks of N-px targets as real restores with the chosen tau and records how
far they are from the replay. Records have the runner's fields, so `rusir.studies.robustness`
summarises them; the JSON holds every candidate's mean final PSNR over the settings and its worst
drop of the final phase below the best earlier phase.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch
from robustness import faces, groups_by_side, scores, stack_of

from rusir.studies.experiment import naive_restoration
from rusir.engine.records import as_8bit, read_json, write_json
from rusir.studies.robustness import phase_table, plot, summary, to_markdown
from rusir.inversion.discrepancy import DiscrepancyStop
from rusir.inversion.restore import restore
from rusir.metrics import psnr, ssim
from rusir.model.generators import load_generator

NEVER = 1e-9     # a tau no loss reaches: the restore estimates floors and stops nothing


def replay(G, gt, settings, first, taus):
    """One unstopped restore of the stack; per candidate ('off' and each tau) the W, W+, W++
    images a restore with that tau ends with, and where each image stopped."""
    degs, targets, stack = stack_of(gt, settings, first)
    batch = len(settings) * gt.shape[0]
    shadows = {tau: DiscrepancyStop(tau, None, None, batch) for tau in taus}
    frozen = {tau: torch.zeros(batch, 3, G.img_resolution, G.img_resolution) for tau in taus}

    def follow(info):
        for tau, stop in shadows.items():
            new = stop.observe(info.phase, info.step, info.loss, info.floor)
            frozen[tau][new] = info.images.detach().cpu()[new]

    result = restore(G, torch.cat(targets), stack, discrepancy=NEVER, progress=False,
                     callback=follow)
    common = {name: p.images.detach().cpu() for name, p in result.phases.items()}
    out = {"off": (common, [None] * batch)}
    for tau, stop in shadows.items():
        phases = {name: images.clone() for name, images in common.items()}
        for i, where in enumerate(stop.stopped):
            if where is not None:
                later = list(common)[list(common).index(where.split(":")[0]):]
                for name in later:
                    phases[name][i] = frozen[tau][i]
        out[f"tau{tau:g}"] = (phases, stop.stopped)
    return degs, targets, out


def records_of(G, gt, settings, first, degs, targets, candidates) -> dict[str, list]:
    """The runner's record fields per candidate, setting and face."""
    n = gt.shape[0]
    records: dict[str, list] = {}
    for k, ((task, level), deg, t) in enumerate(zip(settings, degs, targets)):
        naive = naive_restoration(t, G.img_resolution)
        nps, nss = psnr(naive, gt).tolist(), ssim(naive, gt).tolist()
        part = slice(k * n, (k + 1) * n)
        for cand, (phases, stopped) in candidates.items():
            sc = {name: scores(images[part], gt, deg, t) for name, images in phases.items()}
            records.setdefault(cand, []).extend(
                {"method": "rusir", "task": task, "level": level, "image_index": first + j,
                 "target_size": list(t.shape[-2:]), "naive": {"psnr": nps[j], "ssim": nss[j]},
                 "phases": {name: sc[name][j] for name in phases},
                 "stopped": stopped[part][j]} for j in range(n))
    return records


def check(G, gt, settings, first, tau, replayed: list[dict]) -> dict:
    """Real restores with `tau` against the replay: the largest PSNR difference and the share of
    images that stopped at the same step."""
    degs, targets, stack = stack_of(gt, settings, first)
    result = restore(G, torch.cat(targets), stack, discrepancy=tau, progress=False)
    real = psnr(as_8bit(result.images.detach().clamp(0, 1)), gt.repeat(len(settings), 1, 1, 1))
    again = torch.tensor([r["phases"]["W++"]["psnr"] for r in replayed])
    same = sum(a == r["stopped"] for a, r in zip(result.info["stopped"], replayed))
    return {"tau": tau, "settings": [f"{t}@{lv}" for t, lv in settings], "images": len(replayed),
            "max_abs_psnr_difference": float((real - again).abs().max()),
            "mean_psnr_real": float(real.mean()), "mean_psnr_replay": float(again.mean()),
            "same_stop": same}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--first", type=int, default=16)
    p.add_argument("--n-images", type=int, default=8)
    p.add_argument("--tasks", default="all")
    p.add_argument("--taus", default="0.9,1,1.1,1.2,1.3,1.5")
    p.add_argument("--out", default="runs/discrepancy")
    p.add_argument("--chosen", type=float, default=None, help="tau to record as the choice")
    p.add_argument("--check", type=int, default=None, help="target side whose stacks are re-run")
    p.add_argument("--json", default="benchmarks/results/robustness_discrepancy_toyfaces64.json")
    p.add_argument("--figure", default="figures/robustness.png")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    taus = [float(t) for t in a.taus.split(",")]
    G = load_generator("toyfaces64")
    gt = faces(a.first, a.n_images)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for side, settings in groups_by_side(G, a.tasks):
        path = out / f"records_{side}px.json"
        if path.exists():
            continue
        t0 = time.time()
        degs, targets, cands = replay(G, gt, settings, a.first, taus)
        recs = records_of(G, gt, settings, a.first, degs, targets, cands)
        write_json(path, {"seconds": time.time() - t0, "records": recs})
        print(f"{side} px: {len(settings)} settings [{time.time() - t0:.0f} s]", flush=True)
    merged: dict[str, list] = {}
    seconds = 0.0
    for path in sorted(out.glob("records_*px.json")):
        data = read_json(path)
        seconds += data["seconds"]
        for cand, recs in data["records"].items():
            merged.setdefault(cand, []).extend(recs)
    summaries = {c: summary(phase_table(r)) for c, r in merged.items()}
    for cand, s in summaries.items():
        print(f"{cand}: mean final {s['mean_final_psnr']:.2f} dB, worst drop {s['worst_drop']:.2f} "
              f"({s['worst_drop_setting']}), drops>0.3 {len(s['drops_over_0.3'])}, "
              f"below naive {s['below_naive']}")
    if a.chosen is None:
        return
    chosen = f"tau{a.chosen:g}"
    tables = {"off": phase_table(merged["off"]), chosen: phase_table(merged[chosen])}
    print(to_markdown(tables[chosen]))
    checked = None
    if a.check is not None:
        recs = [r for r in merged[chosen] if r["target_size"][0] == a.check]   # batch order
        settings = list(dict.fromkeys((r["task"], r["level"]) for r in recs))
        checked = check(G, gt, settings, a.first, a.chosen, recs)
    meta = {"generator": "toyfaces64", "faces": f"held-out {a.first}..{a.first + a.n_images - 1}",
            "degradation_seeds": f"image (face i: seed {a.first} + i, as the demo)",
            "schedule": "the generator's own (W 50 x 0.08, W+ 50 x 0.02, W++ 300 x 0.02; x lr_scale 8)",
            "how": "benchmarks/discrepancy.py: one unstopped restore per target size, each tau "
                   "replayed on its losses and floors", "loss": "offline", "threads": a.threads,
            "seconds": round(seconds, 1)}
    write_json(Path(a.json), {"_meta": meta, "candidates": summaries, "chosen": chosen,
                              "off": "off", "settings": tables[chosen], "off_settings": tables["off"],
                              "check": checked})
    plot({f"without the stop (W++ 300 steps)": tables["off"],
          f"with the discrepancy stop, tau = {a.chosen:g}": tables[chosen]}, a.figure)
    print("wrote", a.json, a.figure)


if __name__ == "__main__":
    main()
