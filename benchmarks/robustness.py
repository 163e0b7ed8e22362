"""Every setting, per phase: the robustness table of RUSIR on the embedded generator (issue 20).

    python benchmarks/robustness.py --first 16 --n-images 8        # faces 16..23, all 31 settings

The benchmark runner (`rusir bench --config params/bench/robustness.yaml`, then
`python benchmarks/robustness.py --records runs/robustness`) restores one (task, level) cell at a
time. This script computes the same records faster on a CPU: it stacks every setting whose
targets have one size (the 19 settings with 64-px targets, the 8 with 8-px targets) into ONE
batch, each setting's slice degraded by its own degradation (`rusir.degradations.Stacked`),
which is exact because the images of a batch are independent ([Python API](../docs/python-api.md)).

    python benchmarks/robustness.py --shipped --first 24 --n-images 8 --out runs/shipped24
    python benchmarks/robustness.py --shipped --first 52 --n-images 4 --out runs/shipped52 \
        --merge runs/shipped24 --json benchmarks/results/robustness_shipped_toyfaces64.json

`--shipped` restores every stack as `restore` ships (its schedule, discrepancy stop and settling:
no candidates, nothing replayed) and records each item's phases and where the stop ended it: the
table the method is judged by (issue 26, 4), one JSON per group of settings, so a run cut short
keeps what it finished and a re-run resumes.
W and W+ run once per stack; W++ then runs once per candidate rate from the same W+ latent, and
a candidate with fewer W++ steps is read off its rate's trajectory at that step
(`--checkpoints`): a shorter schedule is a prefix of a longer one. Per item it keeps the runner's
record fields (naive, phases, scored as the runner scores them: `rusir.studies.robustness`,
where the grouping, stacking and scoring live), so that one summary reads either source.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir.data import heldout_paths, load_image
from rusir.engine.records import as_8bit, write_json
from rusir.inversion.restore import restore
from rusir.metrics import psnr
from rusir.model.generators import load_generator
from rusir.studies.robustness import (phase_table, plot, settings_by_target_side, stack_records,
                                      stack_settings, summary, to_markdown, write_robustness)


def faces(first: int, n: int, size: int = 64) -> torch.Tensor:
    """Held-out faces first..first+n-1, 8-bit as saved: [n, 3, size, size]."""
    return as_8bit(torch.cat([load_image(q, size) for q in heldout_paths()[first:first + n]]))


def run_stack(G, gt, settings, first, wpp, checkpoints, base_steps=(50, 50), seed=0):
    """Restore every image of `settings` (one target size) in one batch; records per candidate
    name (`W++<rate>x<step><tag>`)."""
    _, targets, stack = stack_settings(gt, settings, first)
    target = torch.cat(targets)
    base = restore(G, target, stack, spaces=("W", "W+"), steps=base_steps, lrs=(0.08, 0.02),
                   seed=seed, progress=False)
    records = {}
    for rate, steps, tag, options in wpp:
        snaps = {}
        def cb(info):
            if info.step in checkpoints:
                snaps[info.step] = info.images.detach().clone()
        r = restore(G, target, stack, spaces=("W++",), steps=(steps,), lrs=(rate,), seed=seed,
                    init=base.phases["W+"].latent, progress=False, callback=cb, ngd_options=options)
        snaps[steps] = r.phases["W++"].images
        for step, images in snaps.items():   # a shorter W++ schedule is a prefix of this one
            phases = {"W": base.phases["W"].images, "W+": base.phases["W+"].images, "W++": images}
            records[f"W++{rate}x{step}{tag}"] = stack_records(phases, gt, settings, targets, first, seed=first)
    return records


def run_shipped(G, gt, settings, first, seed=0, **options) -> list[dict]:
    """Records of ONE shipped restore of the stack of `settings` (restore's defaults; `options`
    only for tests), with where the discrepancy stop ended each item (`stopped`, None: ran
    every step)."""
    _, targets, stack = stack_settings(gt, settings, first)
    result = restore(G, torch.cat(targets), stack, seed=seed, progress=False, **options)
    phases = {name: phase.images.float() for name, phase in result.phases.items()}   # scored as 8-bit
    records = stack_records(phases, gt.float(), settings, [t.float() for t in targets], first, seed=first)
    for record, where in zip(records, result.info["stopped"]):   # both: setting-major, then face
        record["stopped"] = where
    return records


def ceiling(G, gt, first: int) -> dict:
    """The generator's ceiling on these faces: PSNR per phase of the shipped restore of the clean
    faces themselves (no degradation). A setting whose naive restoration scores above it cannot
    be beaten by any restoration this generator and schedule make."""
    result = restore(G, gt, None, progress=False)
    return {"images": list(range(first, first + gt.shape[0])),
            "psnr": {name: psnr(as_8bit(p.images), gt).tolist() for name, p in result.phases.items()}}


def shipped(G, gt, a, group: int = 5) -> None:
    """`--shipped`: every setting restored as shipped, `group` settings per stack and file."""
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for side, settings in settings_by_target_side(a.tasks, G.img_resolution):
        for start in range(0, len(settings), group):
            path = out / f"shipped_{side}px_{start // group}.json"
            if path.exists():
                continue
            t0 = time.time()
            recs = run_shipped(G, gt, settings[start:start + group], a.first)
            write_json(path, {"seconds": time.time() - t0, "records": recs})
            print(f"{side} px: {settings[start:start + group]} [{time.time() - t0:.0f} s]", flush=True)
    if not (out / "ceiling.json").exists():
        write_json(out / "ceiling.json", ceiling(G, gt, a.first))
    folders = [out] + [Path(f) for f in (a.merge.split(",") if a.merge else [])]
    write_shipped(folders, Path(a.json), Path(a.figure), a.faces_note, a.threads)


def write_shipped(folders: list[Path], json_path: Path, figure: Path, note: str | None,
                  threads: int) -> None:
    """The committed record of `--shipped` runs (one folder per face set): each set's table, the
    table over all their faces, its summary, and every item's PSNRs (naive, per phase) and stop."""
    parts = {str(f): [json.loads(q.read_text()) for q in sorted(f.glob("shipped_*px_*.json"))]
             for f in folders}
    records = {f: [r for part in ps for r in part["records"]] for f, ps in parts.items()}
    every = [r for recs in records.values() for r in recs]
    table = phase_table(every)
    meta = {"generator": "toyfaces64", "faces": note or "see face_sets",
            "degradation_seeds": "image (face i: seed i, as the demo)",
            "how": "benchmarks/robustness.py --shipped: restore as shipped (schedule, discrepancy "
                   "stop, settling), the settings of one target size stacked in one batch",
            "threads": threads, "folders": [str(f) for f in folders],
            "seconds": round(sum(q["seconds"] for ps in parts.values() for q in ps), 1)}
    sets: dict[str, dict] = {}          # folders of the same faces (settings split) form one set
    for f, recs in records.items():
        images = sorted({r["image_index"] for r in recs})
        key = f"{images[0]}-{images[-1]}" if images else f
        entry = sets.setdefault(key, {"images": images, "records": [], "ceiling": None})
        entry["records"] += recs
        if entry["ceiling"] is None and (Path(f) / "ceiling.json").exists():
            entry["ceiling"] = json.loads((Path(f) / "ceiling.json").read_text())
    for entry in sets.values():
        entry["settings"] = phase_table(entry.pop("records"))
        entry["summary"] = summary(entry["settings"])
    items = [{"task": r["task"], "level": r["level"], "image": r["image_index"], "stopped": r["stopped"],
              "naive": round(r["naive"]["psnr"], 4),
              "phases": {k: round(v["psnr"], 4) for k, v in r["phases"].items()}} for r in every]
    write_json(json_path, {"_meta": meta, "settings": table, "summary": summary(table),
                           "face_sets": sets, "items": items})
    plot({"as shipped: naive (bar), W -> W+ -> W++; red: the final phase drops > 0.3 dB or ends "
          "below naive": table}, figure)
    print(to_markdown(table))
    print(summary(table))


def parse_wpp(text: str) -> list[tuple[float, int, str, dict]]:
    """'0.02:300,0.02:300:a0.03,0.02:300:img' -> (rate, steps, name tag, NGD options) per W++
    trajectory; options: `a<rho>` anchors W++ to its start (NGD anchor=rho), `img` normalises
    per image (NGD normalize="image"); the tag is appended to the candidate's name."""
    out = []
    for item in text.split(","):
        rate, steps, *opts = item.split(":")
        options: dict = {}
        for o in (opts[0].split("+") if opts else []):
            if o.startswith("a"):
                options["anchor"] = float(o[1:])
            elif o == "img":
                options["normalize"] = "image"
            else:
                raise ValueError(f"unknown W++ option {o!r} in {item!r}; use a<rho> or img")
        out.append((float(rate), int(steps), opts[0] if opts else "", options))
    return out


def candidates(out: Path) -> dict[str, list]:
    """{candidate: records} from the stacks written under `out`; `W++x0` is the schedule without
    W++ (its final result is the W+ one)."""
    merged: dict[str, list] = {}
    for path in sorted(out.glob("records_*px.json")):
        for cand, recs in json.loads(path.read_text())["records"].items():
            merged.setdefault(cand, []).extend(recs)
    any_cand = next(iter(merged.values()), [])
    merged["W++x0"] = [{**r, "phases": {**r["phases"], "W++": r["phases"]["W+"]}} for r in any_cand]
    full = max(len(recs) for recs in merged.values())
    return {c: recs for c, recs in merged.items() if len(recs) == full}   # every setting measured


def write_choice(out: Path, chosen: str, today: str, json_path: Path, figure: Path, meta: dict,
                 compare: str | None = None) -> None:
    """The committed record: every candidate's two numbers, the chosen and today's tables (and
    `compare`'s); the figure shows them, one panel each."""
    merged = candidates(out)
    names = list(dict.fromkeys(c for c in (today, chosen, compare) if c))
    tables = {c: phase_table(merged[c]) for c in names}
    data = {"_meta": meta,
            "candidates": {c: summary(phase_table(r)) for c, r in sorted(merged.items())},
            "today": today, "chosen": chosen,
            "settings": tables[chosen], "today_settings": tables[today]}
    if compare:
        data["compare"], data["compare_settings"] = compare, tables[compare]
    write_json(json_path, data)
    label = {today: "today's schedule", chosen: "chosen", compare: "compared"}
    if chosen == today:
        label[today] = "today's schedule, kept"
    plot({f"{label[c]} ({c}): naive (bar), W -> W+ -> W++; red: the final phase drops > 0.3 dB "
          f"or ends below naive": tables[c] for c in names}, figure)
    print(f"wrote {json_path} and {figure}")


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--records", default=None, help="summarise a `rusir bench` records folder instead")
    p.add_argument("--first", type=int, default=16)
    p.add_argument("--n-images", type=int, default=8)
    p.add_argument("--tasks", default="all")
    p.add_argument("--wpp", default="0.02:300,0.005:150",
                   help="W++ rate:steps[:options] trajectories; options a<rho> (anchor), img "
                        "(per-image normalisation), joined by +, e.g. 0.02:300:a0.03")
    p.add_argument("--checkpoints", default="25,50,75,100,150,200")
    p.add_argument("--base-steps", default="50,50", help="W, W+ steps (rates 0.08, 0.02)")
    p.add_argument("--out", default="runs/robustness_stack")
    p.add_argument("--chosen", default=None, help="candidate to record, e.g. W++0.005x100")
    p.add_argument("--today", default="W++0.02x300")
    p.add_argument("--compare", default=None, help="another candidate to record and plot")
    p.add_argument("--faces-note", default=None, help="how the faces were split, for the JSON")
    p.add_argument("--json", default="benchmarks/results/robustness_toyfaces64.json")
    p.add_argument("--figure", default="figures/robustness.png")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--merge", default=None,
                   help="with --shipped: other --out folders (face sets) whose records join the table")
    p.add_argument("--shipped", action="store_true",
                   help="restore every setting as shipped (no candidates) and write its table")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.records:
        data = write_robustness(a.records, a.json, a.figure, meta={"records": a.records})
        print(to_markdown(data["settings"]))
        print(data["summary"])
        return
    G = load_generator("toyfaces64")
    gt = faces(a.first, a.n_images)
    if a.shipped:
        return shipped(G, gt, a)
    wpp = parse_wpp(a.wpp)
    checkpoints = {int(c) for c in a.checkpoints.split(",")}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for side, settings in settings_by_target_side(a.tasks, G.img_resolution):
        path = out / f"records_{side}px.json"
        if path.exists():
            continue
        t0 = time.time()
        recs = run_stack(G, gt, settings, a.first, wpp, checkpoints,
                         tuple(int(v) for v in a.base_steps.split(",")))
        write_json(path, {"seconds": time.time() - t0, "records": recs})
        print(f"{side} px: {len(settings)} settings [{time.time() - t0:.0f} s]", flush=True)
    for cand, recs in sorted(candidates(out).items()):   # candidates measured on every setting
        s = summary(phase_table(recs))
        print(f"{cand}: mean final {s['mean_final_psnr']:.2f} dB, worst drop {s['worst_drop']:.2f} "
              f"({s['worst_drop_setting']}), below naive {s['below_naive']}")
    if a.chosen:
        seconds = sum(json.loads(q.read_text())["seconds"] for q in out.glob("records_*px.json"))
        meta = {"generator": "toyfaces64",
                "faces": a.faces_note or f"held-out {a.first}..{a.first + a.n_images - 1}",
                "degradation_seeds": f"image (face i: seed {a.first} + i, as the demo)",
                "schedule": "W 50 x 0.08, W+ 50 x 0.02, then W++ at rate r for k steps (x lr_scale 8); "
                            "candidate W++<r>x<k>[a<rho>: NGD anchor=rho][img: NGD normalize=image]",
                "wpp": a.wpp, "loss": "offline",
                "how": "benchmarks/robustness.py: settings of one target size in one batch",
                "threads": a.threads, "seconds": round(seconds, 1)}
        write_choice(out, a.chosen, a.today, Path(a.json), Path(a.figure), meta, a.compare)


if __name__ == "__main__":
    main()
