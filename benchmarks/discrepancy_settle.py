"""Settling near the floor: shorter W+ / W++ steps as the loss nears the stop level (issue 26, 4;
docs/method.md, "Round 3c").

    python benchmarks/discrepancy_settle.py run --first 48 --n-images 4 \
        --tasks UN@M,UA@M,UNA@M,UNP@M,UAP@M,UNAP@M --rules off,m0.5l0.1 --out runs/settle48_8px.json
    (the same with --tasks denoising@M,denoising@L --n-images 2; --first 52 for the test faces)
    python benchmarks/discrepancy_settle.py report tuning=runs/settle48_8px.json,runs/settle48_d.json \
        test=runs/settle52_8px.json,... --json benchmarks/results/discrepancy_settle_toyfaces64.json

Every rule restores the same targets for real (one stack per target side, as
benchmarks/discrepancy_rules.py): settling changes the trajectory, so no recording replays it.
A rule is `off` (the stop as shipped before: iterate averaging, full steps) or `m<margin>l<least>`
(`rusir.inversion.discrepancy.Settle(margin, least)`); restore runs it through the module's
SETTLE. Records are written after every (rule, stack), so a run cut short keeps what it did.
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch
from robustness import faces, groups_by_side, scores, stack_of

import rusir.inversion.restore as restore_module
from rusir.engine.records import read_json, write_json
from rusir.inversion.discrepancy import DiscrepancyStop, Settle
from rusir.metrics import psnr, ssim
from rusir.model.generators import load_generator
from rusir.studies.experiment import naive_restoration
from rusir.studies.robustness import phase_table, summary


def rule(name: str):
    """`off` -> None; `m0.5l0.1` -> Settle(margin=0.5, least=0.1)."""
    if name == "off":
        return None
    m = re.fullmatch(r"m([0-9.]+)l([0-9.]+)", name)
    if not m:
        raise SystemExit(f"a rule is 'off' or m<margin>l<least>, got {name!r}")
    return Settle(float(m.group(1)), float(m.group(2)))


class Watched(DiscrepancyStop):
    """The stop as restore runs it, also keeping each image's smallest step factor (`least`: 1 if
    settling never shortened its step, so the image ran as without settling)."""
    made: list = []

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.least = torch.ones(len(self.stopped))
        Watched.made.append(self)

    def slowed(self, before, after):
        if self.scale is not None:
            self.least = torch.minimum(self.least, torch.where(self.done, 1.0, self.scale))
        return super().slowed(before, after)


def restore_stack(G, gt, settings, first, settle) -> list:
    """Records (as the runner's) of one restore of the stack of `settings` with `settle`."""
    degs, targets, stack = stack_of(gt, settings, first)
    saved = restore_module.SETTLE, restore_module.DiscrepancyStop
    restore_module.SETTLE, restore_module.DiscrepancyStop = settle, Watched
    Watched.made.clear()
    try:
        result = restore_module.restore(G, torch.cat(targets), stack, progress=False)
    finally:
        restore_module.SETTLE, restore_module.DiscrepancyStop = saved
    least = Watched.made[0].least.tolist()
    n, out = gt.shape[0], []
    for k, ((task, level), deg, t) in enumerate(zip(settings, degs, targets)):
        part = slice(k * n, (k + 1) * n)
        sc = {name: scores(p.images[part].detach().cpu(), gt, deg, t) for name, p in result.phases.items()}
        nv = naive_restoration(t, G.img_resolution)
        naive = [{"psnr": a, "ssim": b} for a, b in zip(psnr(nv, gt).tolist(), ssim(nv, gt).tolist())]
        out += [{"method": "rusir", "task": task, "level": level, "image_index": first + j,
                 "target_size": list(t.shape[-2:]), "naive": naive[j],
                 "phases": {name: sc[name][j] for name in sc},
                 "stopped": result.info["stopped"][k * n + j],
                 "least_factor": least[k * n + j]} for j in range(n)]
    return out


def run(a) -> None:
    G = load_generator("toyfaces64")
    gt = faces(a.first, a.n_images)
    out = Path(a.out)
    runs = read_json(out) if out.exists() else {}
    for side, settings in groups_by_side(G, a.tasks):
        for name in a.rules.split(","):
            done = {(r["task"], r["level"]) for r in runs.get(name, [])}
            todo = [s for s in settings if s not in done]
            if not todo:
                continue
            t0 = time.time()
            runs.setdefault(name, []).extend(restore_stack(G, gt, todo, a.first, rule(name)))
            write_json(out, runs)
            print(f"{name} {side} px {todo}: {time.time() - t0:.0f} s", flush=True)


def shared(runs: dict) -> list:
    """Fill in, for a rule that lacks a setting, the records of another rule whose images
    settling never slowed (`least_factor` 1 on every image): bit for bit what that rule would
    have run (tests/test_discrepancy.py); returns the settings so filled."""
    filled = []
    keys = {r: {(x["task"], x["level"]) for x in recs} for r, recs in runs.items()}
    for rule_name, recs in runs.items():
        for other, other_recs in runs.items():
            for setting in sorted(keys[other] - keys[rule_name]):
                part = [x for x in other_recs if (x["task"], x["level"]) == setting]
                if all(x.get("least_factor") == 1.0 for x in part):
                    recs.extend(part)
                    keys[rule_name].add(setting)
                    filled.append(f"{setting[0]}@{setting[1]}")
    return sorted(set(filled))


def report(groups: list, json_path: Path) -> None:
    """One JSON of named groups ("name=a.json,b.json"): per rule the robustness table and summary."""
    data: dict = {"_meta": {"generator": "toyfaces64", "how": __doc__.split("\n\n")[-1].strip()}}
    for group in groups:
        name, paths = group.split("=", 1)
        runs: dict = {}
        for p in paths.split(","):
            for rule_name, recs in read_json(Path(p)).items():
                runs.setdefault(rule_name, []).extend(recs)
        one_run = shared(runs)
        tables = {r: phase_table(recs) for r, recs in runs.items()}
        data[name] = {"sources": paths.split(","), "one_run": one_run, "settings": tables,
                      "summary": {r: summary(t) for r, t in tables.items()}}
    write_json(json_path, data)
    print(markdown(read_json(json_path)))


RECORD = "benchmarks/results/discrepancy_settle_toyfaces64.json"
LABELS = {"tuning": f"**Tuning faces** (used before to choose tau; {RECORD}):",
          "test": f"**Test faces never used by the project** ({RECORD}):"}


def markdown(data: dict) -> str:
    """docs/method.md's "Round 3c" tables: per group, each rule's summary, then per setting the
    robustness row of the current stop (`off`) and of settling side by side ("off / settle")."""
    out = []
    for group, g in data.items():
        if group.startswith("_"):
            continue
        out += [LABELS.get(group, f"{group}:"), "", "| rule | settings | mean final PSNR | worst drop (setting) | drops > 0.3 dB | below naive (target >= 8 px) |",
                "|---|---|---|---|---|---|"]
        for r, s in g["summary"].items():
            naive = ", ".join(f"{k} {v:+.2f}" for k, v in s["below_naive"].items()) or "none"
            out.append(f"| {r} | {s['settings']} | {s['mean_final_psnr']:.2f} | {s['worst_drop']:.2f} "
                       f"({s['worst_drop_setting']}) | {len(s['drops_over_0.3'])} | {naive} |")
        rules = list(g["settings"])
        out += ["", f"Per setting, before / settling ({RECORD}):", "| setting | faces | target px | naive | after W | after W+ | final | drop | stopped |",
                "|---|---|---|---|---|---|---|---|---|"]
        for key, row in g["settings"][rules[0]].items():
            rows = [g["settings"][r][key] for r in rules if key in g["settings"][r]]
            def both(f):
                return " / ".join(f(x) for x in rows)
            names = list(row["phases"])
            mark = " (one run)" if key in g.get("one_run", []) else ""
            out.append(f"| {key} | {min(row['images'])}–{max(row['images'])} | {row['target_side']} | "
                       f"{row['naive']['psnr']:.2f} | {row['phases'][names[0]]['psnr']:.2f} | "
                       + both(lambda x: f"{x['phases'][names[1]]['psnr']:.2f}") + " | "
                       + both(lambda x: f"{x['phases'][names[-1]]['psnr']:.2f}") + " | "
                       + both(lambda x: f"{x['final_drop']:+.2f}") + " | "
                       + both(lambda x: f"{x['stopped']}/{x['n']}") + mark + " |")
        out.append("")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--first", type=int, required=True)
    r.add_argument("--n-images", type=int, default=4)
    r.add_argument("--tasks", required=True)
    r.add_argument("--rules", default="off,m0.5l0.1")
    r.add_argument("--out", required=True)
    r.add_argument("--threads", type=int, default=1)
    g = sub.add_parser("report")
    g.add_argument("groups", nargs="+")
    g.add_argument("--json", default="benchmarks/results/discrepancy_settle_toyfaces64.json")
    a = p.parse_args(argv)
    if a.cmd == "report":
        return report(a.groups, Path(a.json))
    torch.set_num_threads(a.threads)
    run(a)


if __name__ == "__main__":
    main()
