"""Stop rules of the discrepancy principle, compared on one recording per face set (issue 26, 4).

    python benchmarks/discrepancy_rules.py record --first 48 --n-images 4 --out runs/rules48
    python benchmarks/discrepancy_rules.py replay --out runs/rules48          # the rule search
    python benchmarks/discrepancy_rules.py record --first 56 --n-images 4 --out runs/rules56
    python benchmarks/discrepancy_rules.py check --out runs/rules56           # real restores
    python benchmarks/discrepancy_rules.py report --out runs/rules56 --tuning runs/rules48/search.pt
        # -> benchmarks/results/robustness_discrepancy_rules_toyfaces64.json (docs/method.md, "Round 3")

(`--tasks` records a subset; `--out a,b` merges recordings of several face sets.)

`record` runs every setting (stacked by target side, as benchmarks/discrepancy.py) ONCE without
stopping while the restore estimates the noise floor, and keeps, per step, every image's loss,
floor (when estimated) and 8-bit prediction. A stop rule is a `DiscrepancyStop` fed those numbers
step by step; the image it ends with is the recorded prediction of the step it returns to, so
every rule is scored exactly (PSNR/SSIM/fidelity, as the runner) without another restore.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch
from discrepancy import NEVER, check
from robustness import faces, groups_by_side, scores, stack_of

from rusir.studies.experiment import naive_restoration
from rusir.engine.plan import parse_tasks
from rusir.engine.records import as_8bit, read_json, write_json
from rusir.studies.robustness import phase_table, summary
from rusir.inversion.discrepancy import DiscrepancyStop
from rusir.inversion.restore import restore
from rusir.metrics import psnr, ssim
from rusir.model.generators import load_generator


def record(G, gt, settings, first) -> dict:
    """One unstopped restore of the stack of `settings` on faces `gt` (`record_restore`)."""
    _, targets, stack = stack_of(gt, settings, first)
    rec = record_restore(G, torch.cat(targets), stack, progress=False)
    return {"settings": settings, "first": first, "n": gt.shape[0], **rec}


def record_restore(G, target, degradation, **kw) -> dict:
    """A restore that estimates floors and stops nothing; per step its phase, step, loss [B],
    floor [B] or None and 8-bit prediction [B, 3, R, R] (uint8), and each phase's final 8-bit
    images."""
    steps = []

    def keep(info):
        img = (as_8bit(info.images.detach().clamp(0, 1)) * 255).round().to(torch.uint8)
        steps.append((info.phase, info.step, info.loss.detach().cpu(),
                      None if info.floor is None else info.floor.detach().cpu(), img.cpu()))

    result = restore(G, target, degradation, discrepancy=NEVER, callback=keep, **kw)
    ends = {name: (as_8bit(p.images.detach().clamp(0, 1)) * 255).round().to(torch.uint8)
            for name, p in result.phases.items()}
    return {"steps": steps, "ends": ends}


class Candidate(DiscrepancyStop):
    """A variant of the rule for the search: `stat` of the last `window` losses (mean, median) <=
    tau x `pool` of the floor estimates (mean of the last `samples`, or max of them, or the max
    over every estimate of the judged phases and W's last `samples`); a stopped image returns
    `back` steps (0, "center": (window - 1) // 2, "start": window - 1)."""

    def __init__(self, tau, batch, window=10, samples=3, stat="mean", pool="mean", back=0):
        super().__init__(tau, None, None, batch, window=window, samples=samples)
        self.stat, self.pool = stat, pool
        steps = {"center": (window - 1) // 2, "start": window - 1}.get(back, back)
        self.back = torch.full((batch,), int(steps))
        self.high = None

    def observe(self, phase, step, loss, floor=None):
        self.losses.append(loss.detach().float().cpu())
        if floor is not None:
            floor = floor.detach().float().cpu()
            self.floors.append(floor)
            self.draws += 1
            if phase in self.JUDGED:
                self.high = floor if self.high is None else torch.maximum(self.high, floor)
        if phase not in self.JUDGED or len(self.losses) < self.losses.maxlen or not self.floors:
            return torch.zeros_like(self.done)
        window = torch.stack(tuple(self.losses))
        fit = window.mean(0) if self.stat == "mean" else window.median(0).values
        recent = torch.stack(tuple(self.floors))
        if self.pool == "mean":
            level = recent.mean(0)
        elif self.pool == "max":
            level = recent.max(0).values
        else:
            level = torch.maximum(recent.max(0).values, self.high) if self.high is not None \
                else recent.max(0).values
        new = (fit <= self.tau * level) & ~self.done
        for i in torch.nonzero(new).flatten().tolist():
            self.stopped[i] = f"{phase}:{step}"
        self.done |= new
        return new


def ends_with(rec, make_stop) -> list:
    """Per image, the index into rec["steps"] of the prediction a restore with the stop
    `make_stop(batch)` ends with (None: it ran every step). The stop's `observe` returns the images
    newly done; `stop.back[i]` (if the stop has it) is how many steps image i returns."""
    batch = rec["steps"][0][2].shape[0]
    stop = make_stop(batch)
    where: list = [None] * batch
    start = 0
    for k, (phase, step, loss, floor, _) in enumerate(rec["steps"]):
        start = k if step == 0 else start
        new = stop.observe(phase, step, loss, floor)
        for i in torch.nonzero(new).flatten().tolist():
            back = getattr(stop, "back", None)
            where[i] = max(start, k - (int(back[i]) if back is not None else 0))
    return where


def phase_images(rec, where) -> dict:
    """Each phase's final 8-bit images [B, 3, R, R] when image i ends at step where[i]."""
    names = list(rec["ends"])
    out = {name: rec["ends"][name].clone() for name in names}
    for i, k in enumerate(where):
        if k is not None:
            phase = rec["steps"][k][0]
            for name in names[names.index(phase):]:
                out[name][i] = rec["steps"][k][4][i]
    return out


def gt_and_targets(rec):
    """The recording's faces, each setting's degradation and targets (as `record` drew them)."""
    gt = faces(rec["first"], rec["n"])
    degs, targets, _ = stack_of(gt, rec["settings"], rec["first"])
    return gt, degs, targets


def step_psnr(rec, gt) -> torch.Tensor:
    """PSNR vs truth of every recorded prediction [T, B] (and the phase ends as T+j)."""
    truth = gt.repeat(len(rec["settings"]), 1, 1, 1)
    rows = [psnr(s[4].float() / 255, truth) for s in rec["steps"]]
    return torch.stack(rows + [psnr(e.float() / 255, truth) for e in rec["ends"].values()])


def fast_records(rec, table, where, naive) -> list:
    """Records with PSNR only (SSIM/fidelity 0): for ranking rules quickly."""
    n, names = rec["n"], list(rec["ends"])
    T = len(rec["steps"])
    out = []
    for k, (task, level) in enumerate(rec["settings"]):
        for j in range(n):
            i = k * n + j
            phases = {}
            for p, name in enumerate(names):
                w = where[i]
                use = T + p
                if w is not None and names.index(rec["steps"][w][0]) <= p:
                    use = w
                phases[name] = {"psnr": float(table[use, i]), "ssim": 0.0, "fidelity_psnr": 0.0}
            out.append({"method": "rusir", "task": task, "level": level, "image_index": rec["first"] + j,
                        "target_size": [rec["side"]] * 2, "naive": naive[i], "phases": phases,
                        "stopped": None if where[i] is None else str(where[i])})
    return out


def naive_scores(rec, gt, targets, resolution=64) -> list:
    """The naive baseline's PSNR/SSIM per image, in batch order."""
    out = []
    for t in targets:
        nv = naive_restoration(t, resolution)
        out += [{"psnr": a, "ssim": b} for a, b in zip(psnr(nv, gt).tolist(), ssim(nv, gt).tolist())]
    return out


def load(out: Path) -> list:
    """The recordings of a face set, each with its target side and PSNR table."""
    recs = []
    for path in sorted(out.glob("recording_*px.pt")):
        rec = torch.load(path, weights_only=False)
        rec["side"] = int(path.stem.split("_")[1][:-2])
        gt, degs, targets = gt_and_targets(rec)
        rec["psnr"], rec["naive"] = step_psnr(rec, gt), naive_scores(rec, gt, targets)
        recs.append(rec)
    return recs


def evaluate(recs, make_stop) -> dict:
    """The phase table (PSNR only) of one rule over the recordings."""
    records = []
    for rec in recs:
        where = ends_with(rec, make_stop)
        records += fast_records(rec, rec["psnr"], where, rec["naive"])
    return phase_table(records)


def grid():
    """(name, make_stop) of every rule searched: tau x window x statistic x floor pool x return."""
    yield "off", lambda b: Candidate(1e-9, b)
    for tau in (1.0, 1.05, 1.1, 1.2):
        for window in (5, 10):
            for stat in ("mean", "median"):
                for pool in ("mean", "max", "high"):
                    for back in (0, "center", "start"):
                        name = f"t{tau:g}-w{window}-{stat}-{pool}-b{back}"
                        yield name, (lambda b, tau=tau, window=window, stat=stat, pool=pool, back=back:
                                     Candidate(tau, b, window=window, stat=stat, pool=pool, back=back))


def search(dirs: list) -> None:
    """Every rule of `grid` on the recordings in `dirs`; the best printed, all saved (search.pt)."""
    recs = [rec for out in dirs for rec in load(Path(out))]
    out = Path(dirs[0])
    print("stacks:", [r["side"] for r in recs], flush=True)
    rows = []
    for name, make in grid():
        table = evaluate(recs, make)
        s = summary(table)
        rows.append((name, s, table))
    rows.sort(key=lambda r: (r[1]["worst_drop"] > 0.3, -r[1]["mean_final_psnr"]))
    for name, s, table in rows[:40]:
        print(f"{name:36s} mean {s['mean_final_psnr']:.2f} worst {s['worst_drop']:.2f} "
              f"({s['worst_drop_setting']}) >0.3: {len(s['drops_over_0.3'])} naive: {sorted(s['below_naive'])}")
    torch.save(rows, out / "search.pt")


def full_records(rec, where) -> list:
    """The runner's record fields (PSNR, SSIM, fidelity per phase) when image i ends at where[i]."""
    gt, degs, targets = gt_and_targets(rec)
    n, images = rec["n"], phase_images(rec, where)
    out = []
    for k, ((task, level), deg, t) in enumerate(zip(rec["settings"], degs, targets)):
        part = slice(k * n, (k + 1) * n)
        sc = {name: scores(im[part].float() / 255, gt, deg, t) for name, im in images.items()}
        out += [{"method": "rusir", "task": task, "level": level, "image_index": rec["first"] + j,
                 "target_size": list(t.shape[-2:]), "naive": rec["naive"][k * n + j],
                 "phases": {name: sc[name][j] for name in images},
                 "stopped": None if where[k * n + j] is None else
                 "{}:{}".format(*rec["steps"][where[k * n + j]][:2])} for j in range(n)]
    return out


def report(dirs: list, candidates: dict) -> dict:
    """{candidate: records} over every recording in `dirs` ({name: make_stop})."""
    records: dict = {name: [] for name in candidates}
    for out in dirs:
        for rec in load(Path(out)):
            for name, make in candidates.items():
                records[name] += full_records(rec, ends_with(rec, make))
    return records


SHIPPED = 1.05     # toyfaces64's tau (GeneratorInfo.discrepancy)


TUNING_ROWS = {"off": "none (W++ 300 steps)", "t1.05-w10-mean-mean-b0": "**mean of the last 3 estimates, τ = 1.05: ships (issue 20)**",
               "t1.05-w10-mean-mean-bcenter": "the same, back to the window's centre",
               "t1.05-w5-mean-mean-b0": "the same, window 5",
               "t1.05-w10-median-mean-b0": "the same, median of the window",
               "t1.1-w10-mean-mean-b0": "mean of the estimates, τ = 1.1",
               "t1.05-w10-mean-high-b0": "largest estimate of W+ / W++ so far, τ = 1.05",
               "t1.05-w10-mean-max-bcenter": "largest of the last 3, back to the window's centre",
               "t1-w10-mean-max-b0": "largest of the last 3, τ = 1.0",
               "t1.1-w10-mean-max-b0": "largest of the last 3, τ = 1.1",
               "t1.05-w10-mean-max-b0": "largest of the last 3, τ = 1.05"}
REPORT_ROWS = {"off": "none (W++ 300 steps)", "mean_tau1.05": "**mean of the last 3 estimates: ships (issue 20)**",
               "max_tau1.05": "largest of the last 3 (not shipped)"}


def markdown(data: dict) -> str:
    """docs/method.md's tables of the record: tuning rules, test-face summary, per setting."""
    def row(label, s):
        below = ", ".join(f"{k} {v:+.2f}" for k, v in s["below_naive"].items())
        return (f"| {label} | {s['mean_final_psnr']:.2f} | {s['worst_drop']:.2f} ({s['worst_drop_setting']}) | "
                f"{len(s['drops_over_0.3'])} | {len(s['below_naive'])}{': ' + below if below else ''} |")
    head = "| rule | mean final PSNR | worst drop (setting) | drops > 0.3 dB | below naive (target ≥ 8 px) |\n|---|---|---|---|---|"
    out = [head] + [row(label, data["tuning"][k]) for k, label in TUNING_ROWS.items() if k in data["tuning"]]
    out += ["", head] + [row(label, data["candidates"][k]) for k, label in REPORT_ROWS.items()]
    out += ["\n| setting | faces | target px | naive | after W | after W+ | final | final, largest estimate | "
            "final, no stop | drop | stopped |\n|---|---|---|---|---|---|---|---|---|---|---|"]
    tables = data["settings"]
    for key, r in tables["mean_tau1.05"].items():
        ph = [v["psnr"] for v in r["phases"].values()]
        faces_ = f"{min(r['images'])}–{max(r['images'])}"
        mean_final = list(tables["max_tau1.05"][key]["phases"].values())[-1]["psnr"]
        off_final = list(tables["off"][key]["phases"].values())[-1]["psnr"]
        out.append(f"| {key} | {faces_} | {r['target_side']} | {r['naive']['psnr']:.2f} | {ph[0]:.2f} | "
                   f"{ph[1]:.2f} | {ph[2]:.2f} | {mean_final:.2f} | {off_final:.2f} | "
                   f"{r['final_drop']:+.2f} | {r['stopped']}/{r['n']} |")
    return "\n".join(out)


def write_report(dirs: list, tuning: Path, path: Path) -> None:
    """The shipped rule (mean of the estimates), the largest estimate instead and no stop on the
    recordings in `dirs`, with the tuning search's summaries, as one JSON record."""
    candidates = {"off": lambda b: DiscrepancyStop(NEVER, None, None, b),
                  "mean_tau1.05": lambda b: DiscrepancyStop(SHIPPED, None, None, b),
                  "max_tau1.05": lambda b: Candidate(SHIPPED, b, pool="max")}
    records = report(dirs, candidates)
    tables = {name: phase_table(recs) for name, recs in records.items()}
    tuned = {name: {k: s[k] for k in ("mean_final_psnr", "worst_drop", "worst_drop_setting",
                                      "drops_over_0.3", "below_naive")}
             for name, s, _ in torch.load(tuning, weights_only=False)} if tuning.exists() else {}
    meta = {"generator": "toyfaces64", "faces": sorted({r["image_index"] for r in records["off"]}),
            "recordings": dirs, "tuning_faces": "48-51 (8-px stack), 48-49 (denoising, NA, NP, NAP)",
            "how": "benchmarks/discrepancy_rules.py: one unstopped restore per stack recording every "
                   "step; each rule replayed on it, its image the recorded prediction of its stop",
            "schedule": "the generator's own (W 50 x 0.08, W+ 50 x 0.02, W++ 300 x 0.02; x lr_scale 8)"}
    checks = [read_json(Path(d) / "check.json") for d in dirs if (Path(d) / "check.json").exists()]
    write_json(path, {"_meta": meta, "candidates": {n: summary(t) for n, t in tables.items()},
                      "chosen": "mean_tau1.05", "settings": tables, "tuning": tuned,
                      "tuning_rows": TUNING_ROWS, "report_rows": REPORT_ROWS,
                      "check": checks[0] if checks else None,
                      "check_rule": "the largest of the last 3 estimates (restore's rule at commit "
                                    "eee6f97, where it shipped for a while on this branch)"})
    print(markdown(read_json(path)))
    for name, table in tables.items():
        s = summary(table)
        print(f"{name}: mean {s['mean_final_psnr']:.2f} worst {s['worst_drop']:.2f} "
              f"({s['worst_drop_setting']}) >0.3 {s['drops_over_0.3']} naive {s['below_naive']}")


def check_real(G, out: Path, spec: str) -> None:
    """Real restores with the shipped rule of some settings of an 8-px recording against its
    replay: same stop step, PSNR difference (out/check.json; the report carries it)."""
    rec = next(r for r in load(out) if r["side"] == 8)
    wanted = parse_tasks(spec)
    replayed = [r for r in full_records(rec, ends_with(rec, lambda b: DiscrepancyStop(SHIPPED, None, None, b)))
                if (r["task"], r["level"]) in wanted]
    gt = faces(rec["first"], rec["n"])
    result = check(G, gt, wanted, rec["first"], SHIPPED, replayed)
    print(result)
    write_json(out / "check.json", result)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("record", "replay", "report", "check"))
    p.add_argument("--first", type=int, default=48)
    p.add_argument("--n-images", type=int, default=4)
    p.add_argument("--tasks", default="all")
    p.add_argument("--out", default="runs/rules")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--settings", default="UN@M,UA@M,UNA@M,UNP@M,UAP@M,UNAP@M",
                   help="settings of the recording re-run as real restores (check)")
    p.add_argument("--tuning", default="runs/rules48/search.pt", help="replay's search (report)")
    p.add_argument("--json", default="benchmarks/results/robustness_discrepancy_rules_toyfaces64.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    if a.mode == "replay":
        return search(a.out.split(","))
    if a.mode == "report":
        return write_report(a.out.split(","), Path(a.tuning), Path(a.json))
    G = load_generator("toyfaces64")
    if a.mode == "check":
        return check_real(G, out, a.settings)
    gt = faces(a.first, a.n_images)
    out.mkdir(parents=True, exist_ok=True)
    for side, settings in groups_by_side(G, a.tasks):
        path = out / f"recording_{side}px.pt"
        if path.exists():
            continue
        t0 = time.time()
        rec = record(G, gt, settings, a.first)
        rec["seconds"] = time.time() - t0
        torch.save(rec, path)
        print(f"{side} px: {len(settings)} settings [{rec['seconds']:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
