"""Iterate averaging at the discrepancy stop against the stop alone (issue 26, 4; "Round 3b").

    python benchmarks/discrepancy_average.py --recording ../i26-robust/runs/rules48 \
        --settings UN@M,UA@M,UNA@M,UNP@M,UAP@M,UNAP@M --out runs/avg48_8px.json
    python benchmarks/discrepancy_average.py --recording ../i26-robust/runs/rules48d \
        --settings denoising@M,denoising@L --out runs/avg48_d.json
    (--within-phase: the variant; the same for the test faces 56-59: rules56, rules56d, rules58d)
    python benchmarks/discrepancy_average.py --merge tuning=runs/avg48_8px.json,runs/avg48_d.json \
        test=... --json benchmarks/results/discrepancy_average_toyfaces64.json

A stopped image's latent is the mean of its latents over the window the stop judged
(`DiscrepancyStop(average=True)`, as restore runs it), which no recording of predictions can replay: the averaged
settings run as real restores (one stack per target side, as `discrepancy_rules.py check`), and
the stop without averaging is replayed on the colleague's recording of the same faces (exact: a
real restore stops at the replay's step, PSNR within 3e-5 dB).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch
from discrepancy_rules import SHIPPED, ends_with, full_records, load
from robustness import faces, scores, stack_of

import rusir.inversion.restore as restore_module
from rusir.engine.plan import parse_tasks
from rusir.engine.records import read_json, write_json
from rusir.studies.robustness import phase_table, summary
from rusir.inversion.discrepancy import DiscrepancyStop
from rusir.model.generators import load_generator


class WithinPhase(DiscrepancyStop):
    """The variant that averages only the latents of the phase it stops in (the window's
    earlier-phase latents dropped at a boundary). Not shipped: measured as `--within-phase`."""

    def begin_phase(self, lift) -> None:
        self.latents.clear()


def averaged(G, rec, settings, within: bool = False) -> list:
    """Records of a real restore of `settings` on the recording's faces with the stop as restore
    runs it (averaging over the judged window), or with the within-phase variant."""
    gt = faces(rec["first"], rec["n"])
    degs, targets, stack = stack_of(gt, settings, rec["first"])
    make = restore_module.DiscrepancyStop
    if within:
        restore_module.DiscrepancyStop = WithinPhase
    try:
        result = restore_module.restore(G, torch.cat(targets), stack, discrepancy=SHIPPED,
                                        progress=False)
    finally:
        restore_module.DiscrepancyStop = make
    n = rec["n"]
    naive = {tuple(s): rec["naive"][k * n:(k + 1) * n] for k, s in enumerate(rec["settings"])}
    out = []
    for k, ((task, level), deg, t) in enumerate(zip(settings, degs, targets)):
        part = slice(k * n, (k + 1) * n)
        sc = {name: scores(p.images[part].detach().cpu(), gt, deg, t)
              for name, p in result.phases.items()}
        out += [{"method": "rusir", "task": task, "level": level, "image_index": rec["first"] + j,
                 "target_size": list(t.shape[-2:]), "naive": naive[(task, level)][j],
                 "phases": {name: sc[name][j] for name in sc},
                 "stopped": result.info["stopped"][k * n + j]} for j in range(n)]
    return out


def measure(G, recording: Path, spec: str, within: bool = False) -> dict:
    """The stop with and without averaging on the settings `spec` of one recording folder."""
    wanted = parse_tasks(spec)
    runs = {"stop": [], "average": []}
    for rec in load(recording):
        here = [s for s in rec["settings"] if s in wanted]
        if not here:
            continue
        replayed = full_records(rec, ends_with(rec, lambda b: DiscrepancyStop(SHIPPED, None, None, b)))
        runs["stop"] += [r for r in replayed if (r["task"], r["level"]) in here]
        t0 = time.time()
        runs["average"] += averaged(G, rec, here, within)
        print(f"{recording} {rec['side']} px {here}: {time.time() - t0:.0f} s", flush=True)
    return runs


def table(paths: list) -> dict:
    """The stop alone and with averaging over some --out files: summaries and per setting."""
    runs: dict = {"stop": [], "average": []}
    for p in paths:
        for name, recs in read_json(Path(p)).items():
            runs[name] += recs
    tables = {name: phase_table(recs) for name, recs in runs.items()}
    for key, r in tables["stop"].items():
        a = tables["average"][key]
        f = [list(t["phases"].values())[-1]["psnr"] for t in (r, a)]
        print(f"{key:16s} faces {min(r['images'])}-{max(r['images'])}: final {f[0]:.2f} -> {f[1]:.2f} "
              f"drop {r['final_drop']:+.2f} -> {a['final_drop']:+.2f}")
    sums = {name: summary(t) for name, t in tables.items()}
    for name, s in sums.items():
        print(f"{name}: mean {s['mean_final_psnr']:.2f} worst {s['worst_drop']:.2f} "
              f"({s['worst_drop_setting']}) >0.3 {s['drops_over_0.3']} naive {s['below_naive']}")
    return {"sources": paths, "summary": sums, "settings": tables}


def merge(groups: list, json_path: Path) -> None:
    """One JSON of named groups ("name=a.json,b.json"), e.g. tuning and test faces."""
    out = {"_meta": {"generator": "toyfaces64", "how": __doc__.split("\n\n")[-1].strip()}}
    for group in groups:
        name, paths = group.split("=", 1)
        print(f"== {name}")
        out[name] = table(paths.split(","))
    write_json(json_path, out)
    print(markdown(read_json(json_path)))


GROUPS = {"tuning": "tuning faces, averaging over the judged window",
          "tuning_within_phase": "tuning faces, averaging within the phase only (not shipped)",
          "test": "test faces, averaging over the judged window"}


def markdown(data: dict) -> str:
    """docs/method.md's "Round 3b" table: per group and setting, the final PSNR and the drop
    below the best earlier phase, last iterate -> averaged; then each group's summary."""
    out = ["| faces | setting | final, last iterate | final, averaged | drop, last iterate | drop, averaged |",
           "|---|---|---|---|---|---|"]
    for group in GROUPS:
        if group not in data:
            continue
        tables = data[group]["settings"]
        for key, r in tables["stop"].items():
            a = tables["average"][key]
            f = [list(t["phases"].values())[-1]["psnr"] for t in (r, a)]
            out.append(f"| {group}: {min(r['images'])}–{max(r['images'])} | {key} | {f[0]:.2f} | {f[1]:.2f} | "
                       f"{r['final_drop']:+.2f} | {a['final_drop']:+.2f} |")
    out += ["", "Over those settings (benchmarks/results/discrepancy_average_toyfaces64.json):",
            "| faces | rule | mean final PSNR | worst drop (setting) | drops > 0.3 dB |", "|---|---|---|---|---|"]
    for group, label in GROUPS.items():
        if group not in data:
            continue
        for name, rule in (("stop", "last iterate"), ("average", "averaged")):
            s = data[group]["summary"][name]
            out.append(f"| {label} | {rule} | {s['mean_final_psnr']:.2f} | {s['worst_drop']:.2f} "
                       f"({s['worst_drop_setting']}) | {len(s['drops_over_0.3'])} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--recording", help="a discrepancy_rules.py record folder")
    p.add_argument("--settings", default="UN@M,UA@M,UNA@M,UNP@M,UAP@M,UNAP@M")
    p.add_argument("--out", help="this measurement's records (JSON)")
    p.add_argument("--merge", nargs="+", help="groups to summarise: name=a.json,b.json ...")
    p.add_argument("--json", default="benchmarks/results/discrepancy_average_toyfaces64.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--within-phase", action="store_true",
                   help="average only the latents of the phase the image stops in")
    a = p.parse_args(argv)
    if a.merge:
        return merge(a.merge, Path(a.json))
    torch.set_num_threads(a.threads)
    write_json(Path(a.out), measure(load_generator("toyfaces64"), Path(a.recording), a.settings,
                                          a.within_phase))


if __name__ == "__main__":
    main()
