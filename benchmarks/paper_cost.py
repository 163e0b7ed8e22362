"""What reproducing the paper's Tables 1-3 costs, from FLOP counts of the real graphs.

    python benchmarks/paper_cost.py            # ~5 min on 2 CPU cores; writes results/paper_cost.json

Counts one step per phase (forward + backward; matmuls and convolutions, torch's FlopCounterMode
via `rusir.inversion.flops.step_flops`) of the FFHQ-1024 generator (Tables 1-2) and of the
CelebA-HQ-256 one (Table 3) with the paper's loss, per image, and multiplies by the work of each
table: 100 test images x (20 single settings + 11 compositions) = 3,100 restorations per method
for Tables 1-2, 100 x 6 for Table 3. The weights are random (FLOPs do not depend on values).

Baselines are counted from the same parts: a PULSE step = a W+ synthesis step (its L2/GEOCROSS
loss is negligible); an L-BRGM step = a W+ step with the perceptual loss, plus its 200 initial
candidates (a forward pass each, about a third of a step). Their step counts are the committed
tables' (rusir/baselines/tables/); per-(task, level) tuning multiplies them by the grid size
and is not included.

GPU-hours = FLOPs / achieved FLOP/s. No GPU has measured rusir yet (benchmarks/gpu.py will), so
the JSON gives hours at three assumed achieved rates (10, 25 and 50 TFLOP/s: fp32 on an A100
runs at most 19.5, an H100's fp32 67 and TF32 tensor cores ~495 dense); replace the assumption
with gpu.py's `achieved_tflops_restore` when one has run.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import rusir  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu import paper_generator, paper_loss, truth_images  # noqa: E402  (the same set-up)

from rusir.baselines.config import baseline_config  # noqa: E402
from rusir.data.outputs import write_text  # noqa: E402
from rusir.degradations import COMPOSITIONS, LEVELS, TASKS, make  # noqa: E402
from rusir.inversion.flops import step_flops  # noqa: E402
from rusir.inversion.latents import SPACES  # noqa: E402
from rusir.inversion.schedule import PAPER_STEPS  # noqa: E402
from rusir.model.stylegan2 import Generator  # noqa: E402

IMAGES = 100                      # FFHQ-X test faces (Tables 1-2); Table 3 uses 100 CelebA-HQ
SETTINGS_12 = [(t, lv) for t in TASKS for lv in LEVELS] + [(c, "M") for c in COMPOSITIONS]
SETTINGS_3 = 6
RATES_TFLOPS = (10.0, 25.0, 50.0)
LBRGM_CANDIDATES = 200


def celebahq_generator() -> Generator:
    """StyleGAN2-ADA's `paper256` configuration (celebahq256 / the CelebA-HQ comparison)."""
    torch.manual_seed(0)
    G = Generator(512, 0, 512, 256, 3, mapping_kwargs=dict(num_layers=8),
                  synthesis_kwargs=dict(channel_base=16384, channel_max=512, conv_clamp=256))
    return G.eval().requires_grad_(False)


def per_image_flops(G, loss) -> dict:
    """{space: {synthesis, loss, step}} FLOPs of one step per image, on denoising M."""
    truth = truth_images(G, 1)
    deg = make("denoising", "M", seed=0)
    target = deg.degrade_ground_truth(truth)
    return {s: step_flops(G, target, deg, loss, s) for s in SPACES}


def method_flops(flops: dict, settings: list) -> dict:
    """FLOPs of one image through each method, summed over `settings` (per-setting step counts)."""
    rusir_one = sum(n * flops[s]["step"] for n, s in zip(PAPER_STEPS, SPACES))
    wplus = flops["W+"]
    out = {"rusir": rusir_one * len(settings), "pulse": 0, "lbrgm": 0}
    for task, level in settings:
        out["pulse"] += baseline_config("pulse", task, level).get("steps", 100) * wplus["synthesis"]
        steps = baseline_config("lbrgm", task, level).get("steps", 500)
        out["lbrgm"] += steps * wplus["step"] + LBRGM_CANDIDATES * wplus["step"] / 3
    return out


def hours(total: float) -> dict:
    return {f"{r:g}_tflops": total / (r * 1e12) / 3600 for r in RATES_TFLOPS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "paper_cost.json")
    a = ap.parse_args()
    loss, loss_label = paper_loss(torch.device("cpu"))
    G, g_label = paper_generator("stylegan2", 1024, 512, torch.device("cpu"))
    ffhq = per_image_flops(G, loss)
    del G
    celeba = per_image_flops(celebahq_generator(), loss)
    tables = {"tables_1_2": (ffhq, SETTINGS_12), "table_3": (celeba, [("denoising", "XL")] * SETTINGS_3)}
    record = {"what": __doc__.split("\n\n")[0], "loss": loss_label, "generator_1024": g_label,
              "images_per_setting": IMAGES, "flops_per_image_step": {"ffhq1024": ffhq,
                                                                     "celebahq256": celeba},
              "rusir_steps": list(PAPER_STEPS), "assumed_achieved_tflops": list(RATES_TFLOPS),
              "tables": {}, "torch": torch.__version__, "machine": platform.machine(),
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True).stdout.strip()}
    for name, (flops, settings) in tables.items():
        per_method = method_flops(flops, settings)
        if name == "table_3":
            per_method = {"rusir": per_method["rusir"]}     # DDRM: not in rusir yet (issue 29)
        record["tables"][name] = {
            "settings": len(settings), "restorations_per_method": len(settings) * IMAGES,
            "pflops": {m: f * IMAGES / 1e15 for m, f in per_method.items()},
            "gpu_hours": {m: hours(f * IMAGES) for m, f in per_method.items()}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(a.out, json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["tables"], indent=1))


if __name__ == "__main__":
    main()
