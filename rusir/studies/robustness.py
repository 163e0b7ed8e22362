"""Per-phase robustness table: does a later phase ever undo an earlier one?

RUSIR claims one schedule for every task, level and composition. A benchmark run's records
(`rusir bench --config params/bench/robustness.yaml`) hold, per item, the naive baseline and each
phase's PSNR/SSIM vs the ground truth and fidelity PSNR (`runner.phase_metrics`). This module
turns them into one row per setting (task, level):

    naive | after W | after W+ | final (W++) | drop of the final below the best earlier phase

and a figure with one group per setting, so a glance shows where a phase hurts. `summary` gives
the two numbers a schedule is chosen by: the mean final PSNR over all settings, and the worst
per-setting drop. Only the records' fields are read, so any script producing records of that
shape (task, level, image_index, target_size, naive, phases) can be summarised the same way.

A CPU computes the same records faster with settings stacked into one batch
(`benchmarks/robustness.py`): `settings_by_target_side` groups the settings whose targets share a
size, `stack_settings` degrades one batch of faces by each (`rusir.degradations.Stacked`), and
`stack_records` scores a stack's per-phase images as the runner scores an item
(`rusir.engine.unit.phase_metrics`).
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from .. import degradations
from ..baselines.naive import naive_restoration
from ..data.outputs import write_file
from ..degradations import COMPOSITIONS, LEVELS, TASKS, Stacked
from ..engine.plan import parse_tasks
from ..engine.records import load_records, write_json
from ..engine.unit import phase_metrics
from ..metrics import psnr, ssim

__all__ = ["phase_table", "summary", "to_markdown", "plot", "write_robustness", "stopped_at",
           "MIN_TARGET_SIDE", "settings_by_target_side", "stack_settings", "stack_records"]

MIN_TARGET_SIDE = 8   # below this side (upsampling L, XL) a target may not be beaten by a prior
METRICS = ("psnr", "ssim", "fidelity_psnr")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _order(setting: tuple[str, str]) -> tuple:
    task, level = setting
    if task in COMPOSITIONS:
        return (1, COMPOSITIONS.index(task), 0)
    return (0, TASKS.index(task) if task in TASKS else 99, LEVELS.index(level))


def stopped_at(record: dict) -> Optional[str]:
    """Where the discrepancy stop ended the item ("W+:12"), or None: the record's `stopped` field
    (a stacked study's records) or its `info.stopped` (the runner keeps restore's info per item)."""
    if "stopped" in record:
        return record["stopped"]
    where = (record.get("info") or {}).get("stopped")
    return where[0] if isinstance(where, list) and where else None


def phase_table(records: Sequence[dict], method: str = "rusir") -> dict[str, dict]:
    """{`task@level`: row} over the records of `method` that carry per-phase metrics. A row holds
    `n`, `images`, `target_side`, `naive` {psnr, ssim}, one {psnr, ssim, fidelity_psnr} of means per
    phase (run order; the last is the final result), `final_drop` (dB by which the final phase's
    mean PSNR falls below the best earlier phase's; negative: above it), `final_vs_naive` (dB) and
    `stopped` (images the discrepancy stop ended before the last step)."""
    cells: dict[tuple[str, str], list[dict]] = {}
    for rec in records:
        if rec.get("method", method) == method and rec.get("phases"):
            cells.setdefault((rec["task"], rec["level"]), []).append(rec)
    table = {}
    for setting in sorted(cells, key=_order):
        recs = sorted(cells[setting], key=lambda r: r["image_index"])
        names = list(recs[0]["phases"])
        phases = {name: {m: _mean([r["phases"][name][m] for r in recs]) for m in METRICS}
                  for name in names}
        naive = {m: _mean([r["naive"][m] for r in recs]) for m in ("psnr", "ssim")}
        final = phases[names[-1]]["psnr"]
        earlier = [phases[n]["psnr"] for n in names[:-1]]
        table[f"{setting[0]}@{setting[1]}"] = {
            "task": setting[0], "level": setting[1], "n": len(recs),
            "images": [r["image_index"] for r in recs],
            "target_side": min(recs[0].get("target_size") or [0]),
            "naive": naive, "phases": phases,
            "final_drop": (max(earlier) - final) if earlier else 0.0,
            "final_vs_naive": final - naive["psnr"],
            "final_wins": sum(r["phases"][names[-1]]["psnr"] > r["naive"]["psnr"] for r in recs),
            "stopped": sum(stopped_at(r) is not None for r in recs),
        }
    return table


def summary(table: dict[str, dict]) -> dict:
    """The numbers a schedule is chosen by: mean final PSNR over the settings, the worst drop of
    the final phase below the best earlier phase (and where), and the settings with a target of at
    least MIN_TARGET_SIDE px whose final mean PSNR is below the naive baseline's."""
    finals = {k: list(r["phases"].values())[-1]["psnr"] for k, r in table.items()}
    worst = max(table, key=lambda k: table[k]["final_drop"])
    return {
        "settings": len(table),
        "mean_final_psnr": _mean(list(finals.values())),
        "mean_naive_psnr": _mean([r["naive"]["psnr"] for r in table.values()]),
        "worst_drop": table[worst]["final_drop"], "worst_drop_setting": worst,
        "drops_over_0.3": {k: round(r["final_drop"], 3) for k, r in table.items() if r["final_drop"] > 0.3},
        "below_naive": {k: round(r["final_vs_naive"], 3) for k, r in table.items()
                        if r["final_vs_naive"] < 0 and r["target_side"] >= MIN_TARGET_SIDE},
    }


def to_markdown(table: dict[str, dict]) -> str:
    """One row per setting: naive, each phase's PSNR (dB), the final SSIM and fidelity, the drop."""
    names = list(next(iter(table.values()))["phases"]) if table else []
    head = ["setting", "n", "target px", "naive"] + [f"after {n}" for n in names[:-1]] + \
        [f"final ({names[-1]})" if names else "final", "final SSIM", "final fidelity", "drop",
         "stopped"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, r in table.items():
        ph = [r["phases"][n]["psnr"] for n in names]
        last = r["phases"][names[-1]]
        lines.append("| " + " | ".join([key, str(r["n"]), str(r["target_side"]), f"{r['naive']['psnr']:.2f}"]
                                       + [f"{v:.2f}" for v in ph]
                                       + [f"{last['ssim']:.3f}", f"{last['fidelity_psnr']:.2f}",
                                          f"{r['final_drop']:+.2f}", f"{r.get('stopped', 0)}/{r['n']}"])
                     + " |")
    return "\n".join(lines)


def plot(tables: dict[str, dict[str, dict]], path: Union[str, Path]) -> Path:
    """One panel per table ({title: phase_table}), one group per setting: naive (grey bar) and each
    phase's mean PSNR (markers joined by a line; red where the final phase drops > 0.3 dB below an
    earlier one or, for a target of >= 8 px, ends below naive)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_keys = max(len(t) for t in tables.values())
    fig, axes = plt.subplots(len(tables), 1, figsize=(max(8.0, 0.36 * n_keys), 3.4 * len(tables)),
                             squeeze=False)
    for ax, (title, table) in zip(axes[:, 0], tables.items()):
        _panel(ax, table, title)
    fig.tight_layout()
    path = write_file(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
    return path


def _panel(ax, table: dict[str, dict], title: str) -> None:
    keys = list(table)
    names = list(table[keys[0]]["phases"])
    for i, k in enumerate(keys):
        r = table[k]
        ax.bar(i, r["naive"]["psnr"], width=0.8, color="0.85", zorder=1,
               label="naive" if i == 0 else None)
        xs = [i - 0.3 + 0.6 * j / max(1, len(names) - 1) for j in range(len(names))]
        ys = [r["phases"][n]["psnr"] for n in names]
        bad = r["final_drop"] > 0.3 or (r["final_vs_naive"] < 0 and r["target_side"] >= MIN_TARGET_SIDE)
        ax.plot(xs, ys, color="tab:red" if bad else "tab:blue", lw=1.2, zorder=2)
        for j, (x, y) in enumerate(zip(xs, ys)):
            ax.scatter(x, y, s=12, zorder=3, marker="os^"[j % 3], color=f"C{j + 2}",
                       label=f"after {names[j]}" if i == 0 else None)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([k.replace("@M", "") if table[k]["task"] in COMPOSITIONS else k for k in keys],
                       rotation=70, fontsize=7)
    ax.set_ylabel("PSNR vs truth (dB)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=4, loc="lower left")
    ax.grid(axis="y", alpha=0.3)


def write_robustness(records: Union[str, Path, Sequence[dict]], json_path: Union[str, Path],
                     figure: Optional[Union[str, Path]] = None, meta: Optional[dict] = None) -> dict:
    """Table + summary of a records folder (or records) -> JSON (and the figure); returns the data."""
    recs = load_records(records) if isinstance(records, (str, Path)) else list(records)
    table = phase_table(recs)
    if not table:
        raise ValueError("no records with per-phase metrics (run `rusir bench` with this rusir version)")
    data = {"_meta": dict(meta or {}), "summary": summary(table), "settings": table}
    write_json(json_path, data)
    if figure is not None:
        plot({"naive (bar), W -> W+ -> W++ per setting; red: a phase hurts": table}, figure)
    return data


# --- settings stacked into one batch ------------------------------------------------------------

Setting = tuple[str, str]


def settings_by_target_side(tasks: str, resolution: int) -> list[tuple[int, list[Setting]]]:
    """The settings of `tasks` (`parse_tasks`) grouped by the side of their targets for inputs of
    `resolution` px, the 8-px targets first, then the larger sides down: [(side, settings)]."""
    groups: dict[int, list[Setting]] = {}
    for task, level in parse_tasks(tasks):
        side = degradations.make(task, level).target_size(resolution)
        groups.setdefault(side, []).append((task, level))
    return [(side, groups[side]) for side in sorted(groups, key=lambda s: (s != 8, -s))]


def stack_settings(gt: Tensor, settings: Sequence[Setting], seed: int):
    """Each setting's degradation of the faces `gt` [n, 3, R, R] (image i: seed `seed` + i, as the
    demo), its targets [n, 3, h, w], and the `Stacked` degradation of one batch holding every
    setting's n images in turn: (degradations, targets, stacked)."""
    degs = [degradations.make(task, level, seed=seed) for task, level in settings]
    with torch.no_grad():
        targets = [d.degrade_ground_truth(gt) for d in degs]
    return degs, targets, Stacked([(d, gt.shape[0]) for d in degs])


def stack_records(phases: dict[str, Tensor], gt: Tensor, settings: Sequence[Setting],
                  targets: Sequence[Tensor], first: int, seed: int) -> list[dict]:
    """The runner's record fields (task, level, image_index, target_size, naive, phases) of every
    setting and face of a stack, from each phase's images [len(settings) * n, 3, R, R] and the
    targets of `stack_settings(gt, settings, seed)`. Face j is held-out face `first` + j, and is
    scored as the runner scores an item (`phase_metrics`): its 8-bit images vs the truth, and its
    own true degradation (seed `seed` + j, as in the stack) vs its target."""
    n, res = gt.shape[0], gt.shape[-1]
    records = []
    for k, ((task, level), target) in enumerate(zip(settings, targets)):
        with torch.no_grad():
            naive = naive_restoration(target, res)                   # [n, 3, R, R]
        naive_psnr, naive_ssim = psnr(naive, gt).tolist(), ssim(naive, gt).tolist()
        for j in range(n):
            one = slice(k * n + j, k * n + j + 1)
            deg = degradations.make(task, level, seed=seed + j)      # image j's, alone
            scores = phase_metrics({name: SimpleNamespace(images=images)
                                    for name, images in phases.items()},
                                   one, deg, gt[j:j + 1], target[j:j + 1])
            records.append({"method": "rusir", "task": task, "level": level,
                            "image_index": first + j, "target_size": list(target.shape[-2:]),
                            "naive": {"psnr": naive_psnr[j], "ssim": naive_ssim[j]},
                            "phases": scores})
    return records
