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
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from ..data.outputs import write_file
from ..degradations import COMPOSITIONS, LEVELS, TASKS
from ..engine.records import load_records, write_json

__all__ = ["phase_table", "summary", "to_markdown", "plot", "write_robustness", "stopped_at",
           "MIN_TARGET_SIDE"]

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
    (benchmarks/discrepancy.py) or its `info.stopped` (the runner keeps restore's info per item)."""
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
