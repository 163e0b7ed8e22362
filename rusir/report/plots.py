"""Each metric against the degradation level: one figure per metric, a panel per task, a line
per method with its standard error as error bars (Table 1's cells, `rusir.report.layout`)."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from ..data.outputs import write_file
from ..degradations.base import LEVELS
from .layout import PaperTable, method_label, metric_label

__all__ = ["plot_metrics_vs_level"]


def plot_metrics_vs_level(table: PaperTable, out: Union[str, Path]) -> list[Path]:
    """`<out>/metric_vs_level_<metric>.png` for every metric with a value; returns the paths."""
    # imported on use: choosing the Agg backend at import time would change a notebook's backend
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    tasks = list(dict.fromkeys(task for task, _ in table.rows))
    paths = []
    for metric in table.groups:
        if all(c.mean is None for (_, _, m), c in table.cells.items() if m == metric):
            continue
        fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            for method in table.methods:
                pts = sorted((LEVELS.index(lv), c.mean, c.se or 0.0) for (t, lv) in table.rows
                             if t == task and lv in LEVELS
                             for c in [table.cell((t, lv), method, metric)]
                             if c is not None and c.mean is not None)
                if pts:
                    ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                                marker="o", capsize=3, label=method_label(method))
            ax.set_xticks(range(len(LEVELS)), LEVELS)
            ax.set_title(task)
            ax.set_xlabel("level")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(metric_label(metric))
        axes[0][-1].legend(fontsize="small")
        fig.tight_layout()
        path = out / f"metric_vs_level_{metric}.png"
        write_file(path, lambda tmp: fig.savefig(tmp, dpi=100))
        plt.close(fig)
        paths.append(path)
    return paths
