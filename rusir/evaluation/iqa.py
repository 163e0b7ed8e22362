"""The IQA-loss study: RUSIR with its loss replaced or extended by image-quality-assessment losses.

A follow-up study of RUSIR swaps the paper's loss for IQA losses (single and composed) and reports
SSIM, PSNR, LPIPS, LPIPS-vgg, FID, IS, KID and patch-FID per task and level. Here the study is
data (`IQA_VARIANTS`: name -> LossConfig fields) plus one runner and one table:

    records = run_iqa_study(G, heldout(4), ["baseline", "ssim", "consistency"], tasks=["upsampling"],
                            levels=["M"], out="runs/iqa")
    print(iqa_table(records))            # rows task x level x loss, metric columns, n/a + reasons
    # `rusir report runs/iqa` reads the same records (method `rusir[loss=<variant>]`)

Every term is computed on (degraded prediction, target) inside the paper's multiresolution
pyramid (+ 0.1 coarse L1) and masked where the task has a mask (`rusir.inversion.losses.CompositeLoss`),
except `consistency`, which is computed on the clean prediction x = G(latent) in [0, 1]:
L1(f_hat(x), f_hat(x + 0.01 N(0, 1))), weight 0.3 on top of the baseline, as the follow-up code
(its sigma 0.01 is applied to rusir's [0, 1] images). For a stochastic approximation (denoising's
f_hat draws fresh noise) the term also holds that randomness, as in the follow-up code. `ssim` adds
0.2 (1 - SSIM) to the baseline. The baseline is the generator's own preset (`paper`, LPIPS-VGG,
for official generators; `offline` for the embedded toyfaces64) unless `baseline=` says otherwise.

Variants whose weights are missing (LPIPS backbones offline) are skipped with their reason printed
and recorded (`status: "unavailable"`), never swapped for another loss. Metrics that cannot be
computed here (LPIPS without its backbone, IS without classifier logits, FID/KID on one image)
are None with their reason and show as "n/a" in the table.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from ..degradations import LEVELS, is_composition
from ..inversion.losses import LossConfig
from ..inversion.schedule import resolve as resolve_schedule
from ..model.generators import info as generator_info
from ..model.weights import MissingWeightsError

__all__ = ["IQA_VARIANTS", "BASELINE", "STUDY_METRICS", "STUDY_SET_METRICS", "DEFAULT_TASKS",
           "method_name", "variant_config", "variant_configs", "check_variant", "run_iqa_study",
           "iqa_rows", "iqa_table", "iqa_table_rows", "example_grid"]

BASELINE = "baseline"
DEFAULT_TASKS = ("upsampling", "denoising", "deartifacting", "inpainting")
# Per-image metrics (rusir.metrics.PER_IMAGE_METRICS names): `lpips_alex` is the study's LPIPS,
# `lpips` is LPIPS-vgg. Set metrics per (variant, task, level).
STUDY_METRICS = ("psnr", "ssim", "lpips_alex", "lpips")
STUDY_SET_METRICS = ("fid", "kid", "patch_fid", "is")

# name -> LossConfig fields; `on_baseline: True` adds the terms to the baseline's (same pyramid).
IQA_VARIANTS: dict[str, dict] = {
    BASELINE: {"on_baseline": True, "terms": {}},
    "lpips_alex": {"terms": {"lpips_alex": 1.0}},
    "lpips_vgg": {"terms": {"lpips_vgg": 1.0}},
    "ms_ssim": {"terms": {"ms_ssim": 1.0}},
    "grad": {"terms": {"grad": 1.0}},
    "ssim": {"on_baseline": True, "terms": {"ssim": 0.2}},
    "consistency": {"on_baseline": True, "terms": {"consistency": 0.3}},
    "composite": {"terms": {"lpips_vgg": 1.0, "ms_ssim": 0.5, "grad": 0.1}},
    "composite_free": {"terms": {"l1": 1.0, "ms_ssim": 0.5, "grad": 0.1}},   # weight-free
}

_COLUMNS = (("accuracy_psnr", "PSNR ↑"), ("accuracy_ssim", "SSIM ↑"),
            ("accuracy_lpips_alex", "LPIPS ↓"), ("accuracy_lpips", "LPIPS-vgg ↓"),
            ("fid", "FID ↓"), ("is", "IS ↑"), ("kid", "KID ↓"), ("patch_fid", "patch-FID ↓"))


def method_name(variant: str) -> str:
    """The benchmark method name of a variant's records: `rusir[loss=<variant>]`."""
    return f"rusir[loss={variant}]"


def _baseline_config(baseline: Union[str, LossConfig, Mapping, None], G=None) -> LossConfig:
    from ..inversion.presets import load_preset
    if isinstance(baseline, LossConfig):
        return baseline
    if isinstance(baseline, Mapping):
        return LossConfig.from_dict(baseline) if "terms" in baseline else LossConfig(dict(baseline))
    return load_preset(baseline or generator_info(G).default_loss)


def variant_config(name: str, spec=None, baseline: Union[str, LossConfig, Mapping, None] = None,
                   G=None) -> LossConfig:
    """The LossConfig of a variant: `spec` (IQA_VARIANTS[name] when None) is a dict of LossConfig
    fields (optionally `on_baseline: True`), a flat {term: weight} dict, a term/preset name or a
    LossConfig. The baseline is `baseline` (preset name / YAML / config) or G's own preset."""
    if spec is None:
        if name not in IQA_VARIANTS:
            raise ValueError(f"unknown IQA variant {name!r}; known: {list(IQA_VARIANTS)} "
                             "(or give {name: loss spec})")
        spec = IQA_VARIANTS[name]
    if isinstance(spec, LossConfig):
        return dataclasses.replace(spec, name=name)
    if isinstance(spec, str):
        from ..inversion.losses import TERMS
        if spec in TERMS:
            return LossConfig({spec: 1.0}, name=name)
        return dataclasses.replace(_baseline_config(spec), name=name)
    spec = dict(spec)
    on_baseline = bool(spec.pop("on_baseline", False))
    if "terms" not in spec:
        spec = {"terms": spec}
    if not on_baseline:
        return LossConfig.from_dict({**spec, "name": name})
    extra = set(spec) - set(LossConfig.__dataclass_fields__)
    if extra:
        raise ValueError(f"unknown loss config key(s) {sorted(extra)} in variant {name!r}")
    base = _baseline_config(baseline, G)
    terms = dict(base.terms)
    added = spec.pop("terms")
    for k, w in added.items():
        terms[k] = terms.get(k, 0.0) + float(w)
    description = spec.pop("description", None) or (
        f"{base.name or 'baseline'} + {added}" if added else base.description)
    return dataclasses.replace(base, **spec, terms=terms, name=name, description=description)


def variant_configs(variants: Union[Sequence, Mapping, None] = None,
                    baseline: Union[str, LossConfig, Mapping, None] = None, G=None
                    ) -> dict[str, LossConfig]:
    """{name: LossConfig} for a list of variant names (None: all of IQA_VARIANTS), a mapping
    {name: spec}, or a list mixing names and {name: spec} mappings."""
    if variants is None:
        variants = list(IQA_VARIANTS)
    items: list[tuple[str, object]] = []
    for entry in (variants.items() if isinstance(variants, Mapping) else variants):
        if isinstance(entry, tuple):
            items.append(entry)
        elif isinstance(entry, Mapping):
            items += list(entry.items())
        else:
            items.append((str(entry), None))
    return {name: variant_config(name, spec, baseline, G) for name, spec in items}


def check_variant(config: LossConfig) -> Optional[str]:
    """None when the loss can be built here, else why not (missing weights)."""
    try:
        config.build(degradation_fn=lambda x: x)
    except MissingWeightsError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# --- the runner ---------------------------------------------------------------------------------

class _SetMetrics:
    """Set metrics of one cell; a metric found unavailable once is not retried."""

    def __init__(self, names: Sequence[str], patch_fid_kwargs: Optional[dict]):
        self.names, self.kwargs, self.reasons = list(names), patch_fid_kwargs, {}

    def __call__(self, pred: Tensor, gt: Tensor) -> tuple[dict, dict]:
        from ..metrics import compute_metrics
        values, reasons = {}, {}
        for name in self.names:
            if name in self.reasons:
                values[name], reasons[name] = None, self.reasons[name]
                continue
            try:
                res = compute_metrics(pred, gt, names=[name], patch_fid_kwargs=self.kwargs)
            except ValueError as exc:          # e.g. FID/KID on a single image
                values[name], reasons[name] = None, f"ValueError: {exc}"
                continue
            if res.get(name) is None:
                self.reasons[name] = res["unavailable"][name]
                values[name], reasons[name] = None, self.reasons[name]
            else:
                values.update({k: v for k, v in res.items() if k != "unavailable"})
        return values, reasons


def run_iqa_study(G, images: Tensor, variants: Union[Sequence, Mapping, None] = None,
                  tasks: Sequence[str] = DEFAULT_TASKS, levels: Sequence[str] = LEVELS,
                  steps: Optional[Sequence[int]] = None, seed: int = 0,
                  baseline: Union[str, LossConfig, Mapping, None] = None,
                  metrics: Sequence[str] = STUDY_METRICS,
                  set_metrics: Sequence[str] = STUDY_SET_METRICS,
                  patch_fid_crops: Optional[int] = None, out: Union[str, Path, None] = None,
                  image_names: Optional[Sequence[str]] = None, generator_name: Optional[str] = None,
                  examples: Optional[dict] = None, progress: bool = False,
                  log: Optional[Callable[[str], None]] = print) -> list[dict]:
    """Restore `images` ([N, 3, R, R] ground truths in [0, 1]) with each loss variant on every
    (task, level) and score them; returns one record per (variant, task, level, image).

    Records follow `rusir bench` (method `rusir[loss=<variant>]`, `metrics` with accuracy_* and
    fidelity_* on 8-bit images, `unavailable` reasons) plus `variant`, `loss` (the config),
    `naive` (PSNR/SSIM of the naive baseline) and the cell's `set_metrics` (FID/KID/patch-FID/IS).
    A variant whose loss cannot be built here gives one record per (task, level) with
    `status: "unavailable"` and its `reason` (printed through `log`).
    out: also write every item as `rusir bench` does (PNGs + record.json under
    `<out>/<method>/<task>/<level>/<jjjj>/`, bench.json), so `rusir report <out>` reads them.
    examples: a dict to fill with the first image's {ground_truth, target, prediction} per
    (variant, task, level), for `example_grid`.
    The targets are the same for every variant (degradation seed `seed`).
    steps: RUSIR steps per phase; None: the generator's own schedule (rusir.inversion.schedule).
    """
    from .runner import _MetricCache, as_8bit
    from .experiment import naive_restoration, run_task
    from ..metrics import psnr, ssim

    say = log or (lambda _msg: None)
    steps = resolve_schedule(G, steps=steps)[0]
    configs = variant_configs(variants, baseline, G)
    names = list(image_names or [f"{i:04d}" for i in range(images.shape[0])])
    gt = as_8bit(images.detach().cpu().float())
    gen_name = generator_name or generator_info(G).name
    per_image = _MetricCache(metrics)
    per_cell = _SetMetrics(set_metrics, {"crops_per_image": patch_fid_crops} if patch_fid_crops else None)
    if out is not None:
        _write_study_config(Path(out), G, gen_name, names, configs, tasks, levels, steps, seed, metrics)
    records: list[dict] = []
    for variant, config in configs.items():
        reason = check_variant(config)
        if reason is not None:
            say(f"skipping variant {variant!r} ({config.terms}): {reason}")
            records += [{"method": method_name(variant), "variant": variant, "task": t, "level": lv,
                         "status": "unavailable", "reason": reason, "loss": config.to_dict()}
                        for t in tasks for lv in levels]
            continue
        for task in tasks:
            for level in levels:
                t0 = time.time()
                run = run_task(G, gt, task, level, seed=seed, loss=config, steps=tuple(steps),
                               progress=progress)
                deg, target = run.degradation, run.target.detach().cpu()
                pred = as_8bit(run.result.images.detach().cpu())
                with torch.no_grad():
                    degraded = deg.degrade_ground_truth(pred.to(run.target.device)).cpu()
                naive = naive_restoration(target, gt.shape[-1])
                values, reasons = per_cell(pred, gt)
                if examples is not None:
                    examples[(variant, task, level)] = {"ground_truth": gt[0], "target": target[0],
                                                        "prediction": pred[0]}
                for j, name in enumerate(names):
                    s = slice(j, j + 1)
                    scores = per_image(pred[s], gt[s], degraded[s], target[s])
                    rec = {
                        "key": f"{method_name(variant)}/{task}/{level}/{j:04d}",
                        "method": method_name(variant), "variant": variant, "task": task,
                        "level": level, "category": "composed" if is_composition(task) else "single",
                        "image_index": j, "image": name, "seed": seed,
                        "status": "done", "generator": gen_name, "loss": config.to_dict(),
                        "steps": list(steps), "restore_seconds": round(run.result.seconds, 3),
                        "metrics": {k: v for k, v in scores.items() if k != "unavailable"},
                        "unavailable": scores["unavailable"],
                        "naive": {"psnr": float(psnr(naive[s], gt[s])), "ssim": float(ssim(naive[s], gt[s]))},
                        "set_metrics": values, "set_unavailable": reasons,
                    }
                    records.append(rec)
                    if out is not None:
                        _write_item(Path(out), rec, {"ground_truth": gt[s], "target": target[s],
                                                     "prediction": pred[s],
                                                     "degraded_prediction": degraded[s]},
                                    run.result.latent[s].detach().cpu())
                say(f"{variant:>15s} {task} {level}: PSNR "
                    f"{_mean([r['metrics'].get('accuracy_psnr') for r in records[-len(names):]]):.2f} dB "
                    f"[{time.time() - t0:.1f} s]")
    if out is not None:
        from .runner import _write_json
        _write_json(Path(out) / "unavailable.json",
                    [r for r in records if r.get("status") == "unavailable"])
    return records


def _write_study_config(out: Path, G, gen_name, names, configs, tasks, levels, steps, seed, metrics):
    from .runner import _write_config
    _write_config(out, {
        "generator": gen_name, "resolution": int(G.img_resolution), "images": "given",
        "image_names": list(names), "methods": [method_name(v) for v in configs],
        "tasks": [f"{t}@{lv}" for t in tasks for lv in levels], "steps": list(steps), "seed": seed,
        "loss": "per method (IQA study, rusir.evaluation.iqa)", "metrics": list(metrics), "baseline_steps": None,
        "losses": {method_name(v): c.to_dict() for v, c in configs.items()}})


def _write_item(out: Path, record: dict, images: dict, latent: Tensor) -> None:
    """One item folder as `rusir bench` writes it: built in out/.tmp, moved with one os.replace."""
    from .runner import TMP, _owner_tag, _write_json, save_png
    final = out / record["key"]
    tmp = out / TMP / f"{_owner_tag()}+{record['key'].replace('/', '__')}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for name, img in images.items():
            save_png(img, tmp / f"{name}.png")
        torch.save({"latent": latent}, tmp / "latent.pt")
        _write_json(tmp / "record.json", record)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        try:
            (out / TMP).rmdir()
        except OSError:
            pass


# --- tables and figures ----------------------------------------------------------------------------

def _mean(values) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else math.nan


def iqa_rows(records: Sequence[dict], **extra) -> list[dict]:
    """Flat per-image rows (rusir.evaluation.results format: psnr, ssim, naive_psnr, psnr_gain, lpips,
    lpips_vgg, ...) of the finished records, for `rusir.evaluation.results.write_results` / `plot_metric`."""
    rows = []
    for r in records:
        if r.get("status", "done") != "done":
            continue
        m = r["metrics"]
        row = dict(extra)
        row.update(variant=r["variant"], task=r["task"], level=r["level"], image=r["image_index"],
                   psnr=m.get("accuracy_psnr"), ssim=m.get("accuracy_ssim"),
                   naive_psnr=r["naive"]["psnr"], naive_ssim=r["naive"]["ssim"],
                   psnr_gain=m.get("accuracy_psnr") - r["naive"]["psnr"],
                   lpips=m.get("accuracy_lpips_alex"), lpips_vgg=m.get("accuracy_lpips"),
                   fidelity_psnr=m.get("fidelity_psnr"), seconds=r.get("restore_seconds"))
        rows.append(row)
    return rows


def iqa_table_rows(records: Sequence[dict]) -> tuple[list[dict], dict[str, str]]:
    """One row per (task, level, variant) -- baseline first within each (task, level) -- with the
    study's metric columns (means over images; set metrics of the cell) and `dpsnr` vs the
    baseline; plus {column or variant: reason} for every n/a."""
    order_v = list(dict.fromkeys(r["variant"] for r in records))
    if BASELINE in order_v:
        order_v.remove(BASELINE)
        order_v.insert(0, BASELINE)
    cells: dict[tuple, list[dict]] = {}
    for r in records:
        cells.setdefault((r["task"], r["level"], r["variant"]), []).append(r)
    task_order = list(dict.fromkeys(r["task"] for r in records))
    keys = sorted(cells, key=lambda k: (task_order.index(k[0]),
                                        LEVELS.index(k[1]) if k[1] in LEVELS else 99,
                                        order_v.index(k[2])))
    rows, notes = [], {}
    for task, level, variant in keys:
        recs = cells[(task, level, variant)]
        row = {"task": task, "level": level, "loss": variant, "n": 0}
        if recs[0].get("status") == "unavailable":
            notes.setdefault(f"loss {variant}", "skipped, " + recs[0]["reason"])
            row.update({col: None for col, _ in _COLUMNS})
            rows.append(row)
            continue
        row["n"] = len(recs)
        for col, _ in _COLUMNS:
            if col.startswith("accuracy_"):
                vals = [r["metrics"].get(col) for r in recs]
                row[col] = None if all(v is None for v in vals) else _mean(vals)
                if row[col] is None:
                    notes.setdefault(col, next((r["unavailable"].get(col) for r in recs
                                                if r["unavailable"].get(col)), "no values"))
            else:
                row[col] = recs[0].get("set_metrics", {}).get(col)
                if row[col] is None:
                    notes.setdefault(col, recs[0].get("set_unavailable", {}).get(col, "not computed"))
        rows.append(row)
    base = {(r["task"], r["level"]): r.get("accuracy_psnr") for r in rows if r["loss"] == BASELINE}
    for r in rows:
        b = base.get((r["task"], r["level"]))
        r["dpsnr"] = None if b is None or r.get("accuracy_psnr") is None else r["accuracy_psnr"] - b
    return rows, notes


def _fmt(col: str, v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str) or col == "n":
        return str(v)
    if col in ("accuracy_psnr", "dpsnr", "fid", "patch_fid", "is"):
        return f"{v:+.2f}" if col == "dpsnr" else f"{v:.2f}"
    if col == "kid":
        return f"{v:.4f}"
    return f"{v:.3f}"


def iqa_table(records: Sequence[dict], fmt: str = "markdown") -> str:
    """The study's layout: rows task x level (one per loss variant, baseline first), metric columns
    PSNR, SSIM, LPIPS (alex), LPIPS-vgg, FID, IS, KID, patch-FID, and ΔPSNR vs the baseline.
    `fmt="markdown"` (n/a reasons as footnotes) or `"csv"` (empty cells for n/a)."""
    rows, notes = iqa_table_rows(records)
    cols = [("task", "task"), ("level", "level"), ("loss", "loss"), ("n", "n"), *_COLUMNS,
            ("dpsnr", "ΔPSNR vs baseline")]
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([c for c, _ in cols])
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c, _ in cols])
        return buf.getvalue()
    if fmt != "markdown":
        raise ValueError(f"fmt must be 'markdown' or 'csv', got {fmt!r}")
    lines = ["| " + " | ".join(h for _, h in cols) + " |",
             "|" + "|".join(":--" if c in ("task", "level", "loss") else "--:" for c, _ in cols) + "|"]
    lines += ["| " + " | ".join(_fmt(c, r.get(c)) for c, _ in cols) + " |" for r in rows]
    if notes:
        lines += ["", "n/a:"] + [f"- `{k}`: {v.splitlines()[0][:300]}" for k, v in notes.items()]
    return "\n".join(lines) + "\n"


def example_grid(examples: Mapping[tuple, dict], path: Union[str, Path], cell: int = 96) -> Path:
    """One figure of example restorations per loss: a row per (task, level), columns ground truth,
    target, then each variant's restoration of the first image. `examples` is the dict that
    `run_iqa_study(..., examples={})` fills: {(variant, task, level): {ground_truth, target,
    prediction}} ([3, H, W] each)."""
    from .figures import save_grid
    if not examples:
        raise ValueError("no examples: every variant was skipped or nothing ran")
    variants = list(dict.fromkeys(k[0] for k in examples))
    cells = list(dict.fromkeys(k[1:] for k in examples))
    rows = []
    for task, level in cells:
        first = next(examples[(v, task, level)] for v in variants if (v, task, level) in examples)
        row = [first["ground_truth"], first["target"]]
        for v in variants:
            ex = examples.get((v, task, level))
            row.append(ex["prediction"] if ex is not None else torch.ones_like(first["ground_truth"]))
        rows.append(row)
    labels = ["truth", "target"] + variants
    return save_grid(path, rows, labels, cell=cell)
