"""Every setting, per phase: the robustness table of RUSIR on the embedded generator (issue 20).

    python benchmarks/robustness.py --first 16 --n-images 8        # faces 16..23, all 31 settings

The benchmark runner (`rusir bench --config params/bench/robustness.yaml`, then
`python benchmarks/robustness.py --records runs/robustness`) restores one (task, level) cell at a
time. This script computes the same records faster on a CPU: it stacks every setting whose
targets have one size (the 19 settings with 64-px targets, the 8 with 8-px targets) into ONE
batch, each setting's slice degraded by its own degradation (`Stacked`), which is exact because
the images of a batch are independent (README, "Python API"). W and W+ run once per stack; W++
then runs once per candidate rate from the same W+ latent, and a candidate with fewer W++ steps is
read off its rate's trajectory at that step (`--checkpoints`): a shorter schedule is a prefix of a
longer one. Per item it keeps the runner's record fields (naive, phases) so that
`rusir.studies.robustness` summarises either source.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir import degradations
from rusir.data import heldout_paths, load_image
from rusir.studies.experiment import naive_restoration
from rusir.engine.plan import parse_tasks
from rusir.engine.records import as_8bit, write_json
from rusir.studies.robustness import phase_table, plot, summary, to_markdown, write_robustness
from rusir.inversion.restore import restore
from rusir.metrics import psnr, ssim
from rusir.model.generators import load_generator


class Stacked:
    """Several degradations side by side over one batch: slice k of the batch is degraded by
    degradation k; masks of unmasked slices are ones (a loss with an all-ones mask equals one
    without: inpainting's term masks by multiplication)."""

    def __init__(self, parts: list[tuple[object, int]]):
        self.parts = parts
        self.mask = None

    def degrade_prediction(self, x: torch.Tensor) -> torch.Tensor:
        return self._each(lambda deg, part: deg.degrade_prediction(part), x)

    def redraw(self, x: torch.Tensor, draw: int = 0) -> torch.Tensor:
        """Each slice's true degradation drawn afresh (the discrepancy principle's floor)."""
        return self._each(lambda deg, part: deg.redraw(part, draw), x)

    def _each(self, apply, x: torch.Tensor) -> torch.Tensor:
        """`apply(degradation k, slice k)` per slice, joined; the masks joined likewise."""
        outs, masks, i = [], [], 0
        for deg, n in self.parts:
            outs.append(apply(deg, x[i:i + n]))
            masks.append(getattr(deg, "mask", None))
            i += n
        y = torch.cat(outs)
        if any(m is not None for m in masks):
            self.mask = torch.cat([m if m is not None else y.new_ones(o.shape[0], 1, *o.shape[-2:])
                                   for m, o in zip(masks, outs)])
        return y


def scores(images: torch.Tensor, gt: torch.Tensor, deg, target: torch.Tensor) -> list[dict]:
    """Per image: PSNR/SSIM vs truth and fidelity PSNR, on the 8-bit images (as the runner)."""
    pred = as_8bit(images.detach().clamp(0, 1))
    with torch.no_grad():
        degraded = deg.degrade_ground_truth(pred)
    p, s, f = psnr(pred, gt).tolist(), ssim(pred, gt).tolist(), psnr(degraded, target).tolist()
    return [{"psnr": a, "ssim": b, "fidelity_psnr": c} for a, b, c in zip(p, s, f)]


def faces(first: int, n: int, size: int = 64) -> torch.Tensor:
    """Held-out faces first..first+n-1, 8-bit as saved: [n, 3, size, size]."""
    return as_8bit(torch.cat([load_image(q, size) for q in heldout_paths()[first:first + n]]))


def groups_by_side(G, tasks: str) -> list[tuple[int, list]]:
    """The settings of `tasks` grouped by target side, the 8-px targets first."""
    groups: dict[int, list] = {}
    for task, level in parse_tasks(tasks):
        side = degradations.make(task, level).target_size(G.img_resolution)
        groups.setdefault(side, []).append((task, level))
    return [(side, groups[side]) for side in sorted(groups, key=lambda s: (s != 8, -s))]


def stack_of(gt, settings, first):
    """Every setting's degradation (image i: seed first + i, as the demo), its targets, and the
    Stacked degradation over one batch of all of them."""
    degs = [degradations.make(task, level, seed=first) for task, level in settings]
    with torch.no_grad():
        targets = [d.degrade_ground_truth(gt) for d in degs]
    return degs, targets, Stacked([(d, gt.shape[0]) for d in degs])


def run_stack(G, gt, settings, first, wpp, checkpoints, base_steps=(50, 50), seed=0):
    """Restore every image of `settings` (one target size) in one batch; records per item and
    per candidate name."""
    degs, targets, stack = stack_of(gt, settings, first)
    n = gt.shape[0]
    target = torch.cat(targets)
    base = restore(G, target, stack, spaces=("W", "W+"), steps=base_steps, lrs=(0.08, 0.02),
                   seed=seed, progress=False)
    per = {}
    def slices(images):
        return [images[k * n:(k + 1) * n] for k in range(len(settings))]
    phase_scores = {name: [scores(im, gt, d, t) for im, d, t in zip(slices(ph.images), degs, targets)]
                    for name, ph in base.phases.items()}
    for rate, steps, tag, options in wpp:
        snaps = {}
        def cb(info):
            if info.step in checkpoints:
                snaps[info.step] = info.images.detach().clone()
        r = restore(G, target, stack, spaces=("W++",), steps=(steps,), lrs=(rate,), seed=seed,
                    init=base.phases["W+"].latent, progress=False, callback=cb, ngd_options=options)
        snaps[steps] = r.phases["W++"].images
        for step, images in snaps.items():
            name = f"W++{rate}x{step}{tag}"
            per[name] = [scores(im, gt, d, t) for im, d, t in zip(slices(images), degs, targets)]
    records = {}
    for k, ((task, level), deg, t) in enumerate(zip(settings, degs, targets)):
        naive = naive_restoration(t, G.img_resolution)
        np_, ns = psnr(naive, gt).tolist(), ssim(naive, gt).tolist()
        for cand, sc in per.items():
            records.setdefault(cand, []).extend(
                {"method": "rusir", "task": task, "level": level, "image_index": first + j,
                 "target_size": list(t.shape[-2:]), "naive": {"psnr": np_[j], "ssim": ns[j]},
                 "phases": {"W": phase_scores["W"][k][j], "W+": phase_scores["W+"][k][j],
                            "W++": sc[k][j]}} for j in range(n))
    return records


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
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.records:
        data = write_robustness(a.records, a.json, a.figure, meta={"records": a.records})
        print(to_markdown(data["settings"]))
        print(data["summary"])
        return
    G = load_generator("toyfaces64")
    gt = faces(a.first, a.n_images)
    wpp = parse_wpp(a.wpp)
    checkpoints = {int(c) for c in a.checkpoints.split(",")}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for side, settings in groups_by_side(G, a.tasks):
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
