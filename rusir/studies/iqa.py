"""The IQA-loss study: RUSIR with its loss replaced or extended by image-quality-assessment losses.

A follow-up study of RUSIR swaps the paper's loss for IQA losses (single and composed) and reports
SSIM, PSNR, LPIPS, LPIPS-vgg, FID, IS, KID and patch-FID per task and level. Here the study is
data (`IQA_VARIANTS`: name -> LossConfig fields), run as a configuration of the benchmark runner
(each variant is a method `rusir[loss=<variant>]`, see `variant_methods`), and one table built
from the records:

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

import csv
import dataclasses
import io
import math
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from ..degradations import LEVELS
from ..inversion.losses import TERMS, LossConfig
from ..inversion.presets import load_preset
from ..inversion.restore import restore
from ..metrics import SET_METRICS
from ..model.generators import info as generator_info
from ..model.weights import MissingWeightsError
from .figures import save_grid
from ..engine.plan import bind_method
from ..engine.records import item_dir, item_key, load_records, read_png, write_json
from ..report import set_metrics_for
from ..report.summary import cell_stats
from ..engine.runner import run_bench

__all__ = ["IQA_VARIANTS", "BASELINE", "STUDY_METRICS", "DEFAULT_TASKS",
           "method_name", "variant_of", "variant_config", "variant_configs", "variant_methods",
           "check_variant", "run_iqa_study",
           "iqa_rows", "iqa_table", "iqa_table_rows", "example_grid"]

BASELINE = "baseline"
DEFAULT_TASKS = ("upsampling", "denoising", "deartifacting", "inpainting")
# Per-image metrics (rusir.metrics.PER_IMAGE_METRICS names): `lpips_alex` is the study's LPIPS,
# `lpips` is LPIPS-vgg. Set metrics per (variant, task, level).
STUDY_METRICS = ("psnr", "ssim", "lpips_alex", "lpips")

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


# --- the study: a configuration of the runner ----------------------------------------------------------

def variant_methods(configs: Mapping[str, LossConfig]) -> dict[str, Callable]:
    """{`rusir[loss=<variant>]`: RUSIR with that variant's loss} -- the study's methods for
    `rusir.engine.runner.run_bench`."""
    return {method_name(v): bind_method(restore, loss=c) for v, c in configs.items()}


def variant_of(record: Mapping) -> str:
    """The loss variant of a study record (`variant`, or parsed from `rusir[loss=<variant>]`)."""
    if "variant" in record:
        return record["variant"]
    method = record.get("method", "")
    return method[len("rusir[loss="):-1] if method.startswith("rusir[loss=") else method


def run_iqa_study(G, images: Tensor, variants: Union[Sequence, Mapping, None] = None,
                  tasks: Sequence[str] = DEFAULT_TASKS, levels: Sequence[str] = LEVELS,
                  steps: Optional[Sequence[int]] = None, seed: int = 0,
                  baseline: Union[str, LossConfig, Mapping, None] = None,
                  metrics: Sequence[str] = STUDY_METRICS,
                  set_metrics: Sequence[str] = SET_METRICS,
                  patch_fid_crops: Optional[int] = None, out: Union[str, Path, None] = None,
                  image_names: Optional[Sequence[str]] = None, generator_name: Optional[str] = None,
                  examples: Optional[dict] = None, progress: bool = False,
                  log: Optional[Callable[[str], None]] = print) -> list[dict]:
    """Restore `images` ([N, 3, R, R] ground truths in [0, 1]) with each loss variant on every
    (task, level) and score them; returns one record per (variant, task, level, image).

    The study is a configuration of the benchmark runner: `run_bench` with the variants as methods
    (`variant_methods`: `rusir[loss=<variant>]`), so the records are `rusir bench`'s (metrics
    accuracy_* and fidelity_* on 8-bit images, `unavailable` reasons, `naive` PSNR/SSIM), written
    under `out` (a temporary folder when None) -- `rusir report <out>` reads them, and a re-run
    skips finished items. The returned records add `variant`, `status: "done"` and the cell's set
    metrics (`set_metrics`, `set_unavailable`: FID/KID/patch-FID/IS from the saved PNGs, as
    `rusir report` computes them). A variant whose loss cannot be built here gives one record per
    (task, level) with `status: "unavailable"` and its `reason` (printed through `log`; listed in
    `<out>/unavailable.json`).
    examples: a dict to fill with the first image's {ground_truth, target, prediction} per
    (variant, task, level), for `example_grid`.
    The targets are the same for every variant (degradation seeds from `seed`).
    steps: RUSIR steps per phase; None: the generator's own schedule (rusir.inversion.schedule).
    """
    say = log or (lambda _msg: None)
    configs = variant_configs(variants, baseline, G)
    names = list(image_names or [f"{i:04d}" for i in range(images.shape[0])])
    cells = [(t, lv) for t in tasks for lv in levels]
    runnable, records = {}, []
    for variant, config in configs.items():
        reason = check_variant(config)
        if reason is None:
            runnable[variant] = config
            continue
        say(f"skipping variant {variant!r} ({config.terms}): {reason}")
        records += [{"method": method_name(variant), "variant": variant, "task": t, "level": lv,
                     "status": "unavailable", "reason": reason, "loss": config.to_dict()}
                    for t, lv in cells]
    with tempfile.TemporaryDirectory(prefix="rusir-iqa-") as scratch:
        folder = Path(out) if out is not None else Path(scratch)
        if runnable:
            run_bench(G, dict(zip(names, images)), variant_methods(runnable), cells, folder,
                      steps=steps, metrics=metrics, seed=seed, device=next(G.parameters()).device,
                      fail_fast=True, progress=progress, generator_name=generator_name,
                      extra_config={"losses": {method_name(v): c.to_dict() for v, c in runnable.items()}})
        done = {r["key"]: r for r in load_records(folder)} if runnable else {}
        study = {(v, t, lv): [done[item_key(method_name(v), t, lv, j)] for j in range(len(names))]
                 for v in runnable for t, lv in cells}
        per_cell = set_metrics_for(folder, [r for cell in study.values() for r in cell],
                                   names=set_metrics, crops=patch_fid_crops) if study and set_metrics else {}
        for (variant, task, level), cell in study.items():
            values, reasons = per_cell.get((method_name(variant), task, level), ({}, {}))
            for rec in cell:
                rec.update(variant=variant, status="done", set_metrics=values, set_unavailable=reasons)
            if examples is not None:
                item = item_dir(folder, cell[0]["key"])
                examples[(variant, task, level)] = {
                    k: read_png(item / f"{k}.png")[0] for k in ("ground_truth", "target", "prediction")}
            for rec in cell if out is None else ():
                rec.pop("_dir")   # the temporary folder is gone after this
            records += cell
            say(f"{variant:>15s} {task} {level}: PSNR "
                f"{_mean([r['metrics'].get('accuracy_psnr') for r in cell]):.2f} dB "
                f"[{sum(r['restore_seconds'] for r in cell):.1f} s]")
    order = {v: i for i, v in enumerate(configs)}
    records.sort(key=lambda r: order[r["variant"]])   # stable: each variant's cells stay in order
    if out is not None:
        write_json(Path(out) / "unavailable.json", [r for r in records if r.get("status") == "unavailable"])
    return records


# --- tables and figures ----------------------------------------------------------------------------

def _mean(values) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else math.nan


def iqa_rows(records: Sequence[dict], **extra) -> list[dict]:
    """Flat per-image rows (psnr, ssim, naive_psnr, psnr_gain, lpips,
    lpips_vgg, ...) of the finished records."""
    rows = []
    for r in records:
        if r.get("status", "done") != "done":
            continue
        m = r["metrics"]
        row = dict(extra)
        row.update(variant=variant_of(r), task=r["task"], level=r["level"], image=r["image_index"],
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
    order_v = list(dict.fromkeys(variant_of(r) for r in records))
    if BASELINE in order_v:
        order_v.remove(BASELINE)
        order_v.insert(0, BASELINE)
    cells: dict[tuple, list[dict]] = {}
    for r in records:
        cells.setdefault((r["task"], r["level"], variant_of(r)), []).append(r)
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
        stats, reasons = cell_stats(recs)            # the report's one aggregation
        for col, _ in _COLUMNS:
            if col.startswith("accuracy_"):
                row[col] = (stats.get(col) or {}).get("mean")
                if row[col] is None:
                    notes.setdefault(col, reasons.get(col, "no values"))
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
