"""Paper-scale speed and memory of RUSIR on one GPU: the FFHQ-1024 generator, the paper's loss.

    python benchmarks/gpu.py                          # one GPU, inside --budget-s (default 420 s)
    python benchmarks/gpu.py --family stylegan3        # the same for StyleGAN3-T
    python benchmarks/gpu.py --resolution 64 --steps 2 --device cpu --budget-s 0   # CPU smoke run (CI)

Generator (`--family`, at `--resolution`): stylegan2 (default), the FFHQ-1024 architecture (z/w
512, 8 mapping layers, channel_base 32768, channel_max 512, conv_clamp 256), the real ffhq.pkl
when it is in the weight cache; stylegan3, StyleGAN3-T as trained on FFHQ-U (z/w 512, 2 mapping
layers, channel_base 32768, channel_max 512), the real stylegan3-t-ffhqu-1024x1024.pkl when
cached. Otherwise random weights ("timing only": speed and memory do not depend on the values). Loss: the paper's
(multiresolution LPIPS-VGG + 0.1 L1); random VGG weights when the torchvision file is absent
("timing only"). Tasks: upsampling, denoising, inpainting (level M) and UNAP.

Modes (restore's options): `reference` = the authors' cost profile (batch 1, fp32, the target's
LPIPS features recomputed every step, no compile); `fp32` (target cached, batched), `tf32`,
`bf16` (loss in bf16, generator in TF32) and `bf16+compile`. In priority order, as long as the
time budget lasts (what does not fit is listed under "skipped"; `--budget-s 0`: no budget, every
part runs, so a busy machine takes longer but measures the same parts):
 1. FLOPs of one step per phase (torch.utils.flop_counter) and the loss, per image;
 2. accuracy on denoising: every mode at batch 1, --steps per phase: seconds per step per
    phase, and image 0's max |difference| and PSNR change against the reference mode;
 3. speed: each fast mode on denoising at batch 1, 2, 4, ... until out of memory: seconds per
    step per phase (--time-steps per phase), images per hour for the full 150/150/150 restore,
    peak memory per image, achieved TFLOP/s against the GPU's peak for the dtype;
 4. a 16 GB GPU (torch.cuda.set_per_process_memory_fraction): the batch "auto" picks and
    whether it runs;
 5. accuracy (as 2) on the other tasks; 6. the compiled mode (accuracy, then its speed at the
    fastest batch), only with --compile-reserve-s left.
Writes benchmarks/results/gpu_<device>[-stylegan3].json (after every measurement: an interrupted run keeps
what it measured) and a markdown table beside it.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from rusir.data.outputs import write_text
from rusir.degradations import make
from rusir.inversion.flops import step_flops
from rusir.inversion.latents import SPACES
from rusir.inversion.presets import load_preset
from rusir.inversion.restore import restore
from rusir.metrics import psnr
from rusir.model import generators, weights  # noqa: F401  (generators registers ffhq.pkl)
from rusir.model import stylegan2, stylegan3

TASKS = ("upsampling", "denoising", "inpainting", "UNAP")
MODES = {
    "reference": dict(precision="fp32", compile=False, cache_target=False),
    "fp32": dict(precision="fp32", compile=False, cache_target=True),
    "tf32": dict(precision="tf32", compile=False, cache_target=True),
    "bf16": dict(precision="tf32+bf16", compile=False, cache_target=True),
    "bf16+compile": dict(precision="tf32+bf16", compile=True, cache_target=True),
}
PAPER_STEPS = 150   # per phase
# Dense tensor-core peaks, TFLOP/s, from the vendors' datasheets (SXM parts; sparsity not counted).
PEAKS = {"H200": {"fp32": 67, "tf32": 495, "bf16": 989}, "H100 PCIe": {"fp32": 51, "tf32": 378, "bf16": 756},
         "H100": {"fp32": 67, "tf32": 495, "bf16": 989}, "A100": {"fp32": 19.5, "tf32": 156, "bf16": 312},
         "L4": {"fp32": 30.3, "tf32": 60, "bf16": 121}, "T4": {"fp32": 8.1, "tf32": None, "bf16": None}}
FAMILIES = ("stylegan2", "stylegan3")
MODE_DTYPE = {"reference": "fp32", "fp32": "fp32", "tf32": "tf32", "bf16": "bf16", "bf16+compile": "bf16"}


class Budget:
    """Seconds left for measurements; 0 (or less) is no budget: never runs out."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        if self.seconds <= 0:
            return math.inf
        return self.start + self.seconds - time.perf_counter()

    def used(self) -> float:
        return time.perf_counter() - self.start


def peaks_for(name: str) -> Optional[dict]:
    for key, value in PEAKS.items():
        if all(part in name for part in key.split()):
            return value
    return None


def paper_generator(family: str, resolution: int, channel_max: int, device: torch.device):
    """(G, label): the family's 1024 px face generator (stylegan2: FFHQ; stylegan3: StyleGAN3-T
    on FFHQ-U) when its file is cached and the size is the real one, else that architecture at
    `resolution` with random weights."""
    name = {"stylegan2": "ffhq", "stylegan3": "stylegan3-t-ffhqu-1024"}[family]
    entry = weights.get(generators.REGISTRY[name].weight)
    if resolution == 1024 and channel_max == 512 and entry.path().is_file():
        return rusir.load_generator(name, device=device), f"{entry.filename} (real weights)"
    torch.manual_seed(0)
    if family == "stylegan2":
        G = stylegan2.Generator(512, 0, 512, resolution, 3, mapping_kwargs=dict(num_layers=8),
                                synthesis_kwargs=dict(channel_base=32768, channel_max=channel_max,
                                                      conv_clamp=256))
        label = "random weights, FFHQ architecture (timing only)"
    else:
        G = stylegan3.Generator(stylegan3.StyleGAN3Config(img_resolution=resolution,
                                                          channel_max=channel_max))
        label = "random weights, StyleGAN3-T FFHQ-U architecture (timing only)"
    return G.to(device).eval().requires_grad_(False), label


def paper_loss(device: torch.device):
    config = load_preset("paper")
    if all(weights.get(name).path().is_file() for name in config.weight_files()):
        return config.build().to(device), "paper (LPIPS-VGG, ImageNet VGG16)"
    random = replace(config, options={"lpips_vgg": {"_allow_random_backbone_for_tests": True}})
    torch.manual_seed(0)
    return random.build().to(device), "paper pyramid, random VGG16 weights (timing only)"


def truth_images(G, n: int) -> torch.Tensor:
    """n images G itself renders (truncated random codes), in [0, 1]: the ground truth."""
    g = torch.Generator().manual_seed(1)
    out = []
    with torch.no_grad():
        for start in range(0, n, 8):
            z = torch.randn(min(8, n - start), G.z_dim, generator=g).to(G.mapping.w_avg.device)
            out.append(((G(z, truncation_psi=0.7) + 1) / 2).clamp(0, 1).cpu())
    return torch.cat(out)   # on the CPU: a run moves only its images to the device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(G, loss, truth, task: str, mode: str, batch: int, steps: int) -> tuple[dict, torch.Tensor]:
    """One restore of `batch` images; seconds per step per phase (median, first step of each
    phase excluded), peak memory per image, image 0 and its PSNR."""
    device = G.mapping.w_avg.device
    deg = make(task, "M", seed=0)
    truth = truth[:batch].to(device)
    target = deg.degrade_ground_truth(truth)
    stamps: dict[str, list[float]] = {s: [] for s in SPACES}

    def tick(info):
        sync(device)
        stamps[info.phase].append(time.perf_counter())

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    start = time.perf_counter()
    out = restore(G, target, deg, loss=loss, steps=(steps,) * 3, progress=False, callback=tick,
                  **MODES[mode])
    seconds = time.perf_counter() - start
    per_step = {s: _median([b - a for a, b in zip(t, t[1:])]) for s, t in stamps.items()}
    peak = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else None
    return dict(task=task, mode=mode, batch=batch, steps=steps, seconds=round(seconds, 3),
                seconds_per_step=per_step, peak_bytes_per_image=None if peak is None else peak // batch,
                images_per_hour=images_per_hour(per_step, batch),
                psnr0=psnr(out.images[:1].clamp(0, 1), truth[:1]).item()), out.images[:1]


def _median(values: list[float]) -> Optional[float]:
    return sorted(values)[len(values) // 2] if values else None


def images_per_hour(per_step: dict, batch: int) -> Optional[float]:
    if any(v is None for v in per_step.values()):
        return None
    return 3600 * batch / sum(PAPER_STEPS * v for v in per_step.values())


def achieved(row: dict, flops: dict, peaks: Optional[dict]) -> None:
    """TFLOP/s per phase and over a full restore, and the share of the dtype's peak."""
    per_step = row["seconds_per_step"]
    if any(v is None for v in per_step.values()):
        return
    # the reference recomputes the target's features: its steps count the uncached loss
    extra = 0 if MODES[row["mode"]]["cache_target"] else flops["loss_uncached"] - flops["W"]["loss"]
    step = {s: flops[s]["step"] + extra for s in SPACES}
    tflops = {s: step[s] * row["batch"] / per_step[s] / 1e12 for s in SPACES}
    total = sum(step.values()) * PAPER_STEPS * row["batch"]
    overall = total / sum(PAPER_STEPS * per_step[s] for s in SPACES) / 1e12
    row.update(achieved_tflops=tflops, achieved_tflops_restore=overall)
    peak = (peaks or {}).get(MODE_DTYPE[row["mode"]])
    if peak:
        row.update(peak_tflops=peak, share_of_peak=overall / peak)


def write(record: dict, out: Path) -> None:
    write_text(out, json.dumps(record, indent=1) + "\n")
    write_text(out.with_suffix(".md"), markdown(record))


def markdown(record: dict) -> str:
    lines = [f"# RUSIR speed on {record['device_name']} ({record['family']}, {record['resolution']} px)", "",
             f"Generator: {record['generator']}. Loss: {record['loss']}. {record['note']}", "",
             "| mode | task | batch | s/step W | W+ | W++ | images/hour (150/150/150) | "
             "GiB/image | TFLOP/s | share of peak | max abs diff vs reference | dPSNR |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
    for row in record["accuracy"] + record["speed"]:
        s = row["seconds_per_step"]
        gib = None if row["peak_bytes_per_image"] is None else row["peak_bytes_per_image"] / 2**30
        lines.append(f"| {row['mode']} | {row['task']} | {row['batch']} | {fmt(s['W'], '.4f')} | "
                     f"{fmt(s['W+'], '.4f')} | {fmt(s['W++'], '.4f')} | {fmt(row['images_per_hour'], '.1f')} | "
                     f"{fmt(gib, '.2f')} | {fmt(row.get('achieved_tflops_restore'), '.1f')} | "
                     f"{fmt(row.get('share_of_peak'), '.2f')} | {fmt(row.get('max_abs_diff'), '.2e')} | "
                     f"{fmt(row.get('dpsnr'), '+.3f')} |")
    if record.get("gpu16"):
        lines += ["", f"16 GB GPU: {json.dumps(record['gpu16'])}"]
    if record["skipped"]:
        lines += ["", "Skipped (time budget or memory):"] + [f"- {s}" for s in record["skipped"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="stylegan2", choices=FAMILIES,
                    help="the generator family (random weights unless its 1024 px file is cached)")
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20, help="steps per phase of the accuracy runs")
    ap.add_argument("--time-steps", type=int, default=4, help="steps per phase of the batch sweep")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="seconds for the measurements; 0: no budget, every part runs")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-batch", type=int, default=None, help="default 64 on CUDA, 2 on the CPU")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--memory-gib", type=float, default=16.0, help="the small GPU to simulate")
    ap.add_argument("--channel-max", type=int, default=512, help="narrower layers: smoke runs only")
    ap.add_argument("--compile-reserve-s", type=float, default=150.0,
                    help="start a compiled mode only with this much budget left")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    a = ap.parse_args()
    budget = Budget(a.budget_s)
    device = torch.device(a.device)
    modes = [m for m in a.modes.split(",") if m]
    tasks = [t for t in a.tasks.split(",") if t]
    max_batch = a.max_batch or (64 if device.type == "cuda" else 2)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu {platform.machine()}"
    G, g_label = paper_generator(a.family, a.resolution, a.channel_max, device)
    loss, l_label = paper_loss(device)
    truth = truth_images(G, max_batch)
    slug = (re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") + ("" if a.family == "stylegan2" else f"-{a.family}")
            + ("" if device.type == "cuda" else "-smoke"))
    a.out.mkdir(parents=True, exist_ok=True)
    out = a.out / f"gpu_{slug}.json"
    record = dict(device_name=name, device=str(device), torch=torch.__version__,
                  family=a.family, resolution=a.resolution, channel_max=a.channel_max,
                  generator=g_label, loss=l_label,
                  note=("CPU SMOKE RUN: checks the script, measures nothing about GPUs."
                        if device.type != "cuda" else "Measured by benchmarks/gpu.py."),
                  steps=a.steps, time_steps=a.time_steps, budget_s=a.budget_s, modes=MODES,
                  peaks_tflops=peaks_for(name), sweep_task="denoising", flops_per_image={},
                  accuracy=[], speed=[],
                  gpu16=None, skipped=[])

    # 1. FLOPs per image and step (cached and uncached target) -------------------------------
    deg = make("denoising", "M", seed=0)
    target = deg.degrade_ground_truth(truth[:1].to(device))
    per_phase = {s: step_flops(G, target, deg, loss, s) for s in SPACES}
    uncached = step_flops(G, target, deg, loss, "W", cache_target=False)["loss"]
    record["flops_per_image"] = dict(per_phase=per_phase, loss_uncached=uncached)
    flops = dict(per_phase, loss_uncached=uncached)
    write(record, out)

    # 2-4. accuracy, speed, 16 GB; compiled modes last (their compile time is not known ahead)
    state = dict(reference={}, last={})
    plain = [m for m in modes if not MODES[m]["compile"]]
    compiled = [m for m in modes if MODES[m]["compile"]]
    first = "denoising" if "denoising" in tasks else tasks[0]   # the sweep's task first
    for mode in plain:
        accuracy(G, loss, truth, first, mode, a, budget, record, flops, state, out)
    for mode in plain:
        if mode != "reference":
            sweep(G, loss, truth, mode, a, max_batch, budget, record, flops, state, out, 1)
    if device.type == "cuda":
        record["gpu16"] = gpu16(G, loss, truth, a, budget, record, device)
        write(record, out)
    for task in tasks:
        if task != first:
            for mode in plain:
                accuracy(G, loss, truth, task, mode, a, budget, record, flops, state, out)
    for mode in compiled:
        if budget.left() < a.compile_reserve_s:
            record["skipped"].append(f"{mode}: {budget.left():.0f} s left < --compile-reserve-s "
                                     f"{a.compile_reserve_s:.0f} (compiling takes minutes)")
            continue
        accuracy(G, loss, truth, "denoising", mode, a, budget, record, flops, state, out)
        fastest = max((r for r in record["speed"] if r.get("images_per_hour")),
                      key=lambda r: r["images_per_hour"], default=None)
        if fastest is not None:
            sweep(G, loss, truth, mode, a, fastest["batch"], budget, record, flops, state, out,
                  fastest["batch"])
    best = max((r for r in record["speed"] if r.get("images_per_hour")),
               key=lambda r: r["images_per_hour"], default=None)
    ref = next((r for r in record["accuracy"] if r["mode"] == "reference"), None)
    if best and ref and ref.get("images_per_hour"):
        record["summary"] = dict(best=dict(mode=best["mode"], batch=best["batch"]),
                                 seconds_per_image=3600 / best["images_per_hour"],
                                 speedup_vs_reference=best["images_per_hour"] / ref["images_per_hour"])
    record["seconds"] = round(budget.used(), 1)
    write(record, out)
    print(f"wrote {out} and {out.with_suffix('.md')}")


def accuracy(G, loss, truth, task, mode, a, budget, record, flops, state, out) -> None:
    """Batch 1, --steps per phase; a fast mode's image 0 against the reference mode's."""
    reference, last = state["reference"], state["last"]
    if mode != "reference" and task not in reference:
        return
    cost = last.get(mode, last.get("reference", 0.0))
    if cost > budget.left():
        record["skipped"].append(f"accuracy {mode} {task}: ~{cost:.0f} s > {budget.left():.0f} s left")
        return
    try:
        row, image = run(G, loss, truth, task, mode, 1, a.steps)
    except torch.OutOfMemoryError as exc:
        record["skipped"].append(f"accuracy {mode} {task}: out of memory ({str(exc)[:200]})")
        torch.cuda.empty_cache()
        return
    last[mode] = row["seconds"]
    if mode == "reference":
        reference[task] = (image, row["psnr0"])
    else:
        row.update(max_abs_diff=(image - reference[task][0]).abs().max().item(),
                   dpsnr=row["psnr0"] - reference[task][1])
    achieved(row, flops, record["peaks_tflops"])
    record["accuracy"].append(row)
    write(record, out)
    print(json.dumps(row), flush=True)


def sweep(G, loss, truth, mode, a, max_batch, budget, record, flops, state, out, batch) -> None:
    """Denoising at batch, 2 batch, 4 batch, ... up to max_batch or out of memory."""
    cost = state["last"].get(mode, 0.0) * a.time_steps / max(a.steps, 1)
    while batch <= max_batch:
        if 2 * cost > budget.left():
            record["skipped"].append(f"speed {mode} batch {batch}+: ~{2 * cost:.0f} s > "
                                     f"{budget.left():.0f} s left")
            return
        try:
            row, _ = run(G, loss, truth, "denoising", mode, batch, a.time_steps)
        except torch.OutOfMemoryError as exc:
            record["speed"].append(dict(mode=mode, task="denoising", batch=batch, oom=str(exc)[:300]))
            record["skipped"].append(f"speed {mode} batch {batch}: out of memory")
            torch.cuda.empty_cache()
            write(record, out)
            return
        cost = row["seconds"]
        achieved(row, flops, record["peaks_tflops"])
        record["speed"].append(row)
        write(record, out)
        print(json.dumps(row), flush=True)
        batch *= 2


def gpu16(G, loss, truth, a, budget: Budget, record: dict, device) -> Optional[dict]:
    """With the process limited to --memory-gib: the batch "auto" picks for the fastest mode,
    and whether a restore of that batch runs."""
    rows = [r for r in record["speed"] if r.get("images_per_hour")]
    if not rows:
        return None
    mode = max(rows, key=lambda r: r["images_per_hour"])["mode"]
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, a.memory_gib * 2**30 / total)
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    result = dict(mode=mode, memory_gib=a.memory_gib, fraction=fraction)
    try:
        deg = make("denoising", "M", seed=0)
        n = min(len(truth), 32)
        target = deg.degrade_ground_truth(truth[:n].to(device))
        probe = restore(G, target, deg, loss=loss, steps=(0, 0, 1), batch_size="auto",
                        progress=False, **MODES[mode])
        result["auto_batch_size"] = chosen = probe.info["batch_size"]
        if budget.left() > 30:
            row, _ = run(G, loss, truth, "denoising", mode, chosen, a.time_steps)
            result.update(runs=True, images_per_hour=row["images_per_hour"],
                          peak_gib=row["peak_bytes_per_image"] * chosen / 2**30)
    except torch.OutOfMemoryError as exc:
        result.update(runs=False, error=str(exc)[:300])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
    return result


if __name__ == "__main__":
    main()
