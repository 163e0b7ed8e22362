"""The paper's design choices as data, for measuring them (notebooks/30_ablation.ipynb).

Three groups of `AblationConfig`s, each run with `run_config` on the same images/task/level:
- "phases": W only, W+ only, W++ only, W -> W+, full W -> W+ -> W++. The total step budget is
  the same for all (3 x `steps` per phase: one phase runs 3 x steps, two phases 1.5 x steps each,
  as the authors' skip-phase-II switch did), each phase at the generator's RUSIR rate for its
  space (rusir.inversion.schedule: the paper's 0.08 / 0.02 / 0.005, or a named generator's own).
- "optimizer": NGD (RUSIR) vs Adam at several multiples of those rates (`ADAM_LR_SCALES`);
  `tuned` keeps the single Adam rate that scores best over the whole grid, so NGD faces Adam at
  its best learning rate (one rate for every task and level, as RUSIR uses one).
- "loss": the generator's multiresolution loss preset vs the same terms at a single scale.

    for cfg, run in run_configs(G, truth, "upsampling", "M", configs(), steps=150, loss="offline"):
        rows += rusir.task_rows(run, config=cfg.name, group=cfg.group)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Union

from .experiment import TaskRun, mean, run_task
from ..inversion.latents import SPACES
from ..inversion.presets import load_preset
from ..model.generators import info as generator_info

__all__ = ["AblationConfig", "CONFIGS", "GROUPS", "ADAM_LR_SCALES", "configs",
           "run_config", "run_configs", "build_loss_for", "tuned"]

ADAM_LR_SCALES = (0.01, 0.03, 0.1, 0.3)           # Adam rate = scale x RUSIR's rate per phase
GROUPS = ("phases", "optimizer", "loss")


@dataclass(frozen=True)
class AblationConfig:
    """One variant of RUSIR: which phases, how many steps (x `steps`), optimizer, loss scale."""
    name: str
    group: str
    spaces: tuple[str, ...] = SPACES
    step_factors: tuple[float, ...] = (1.0, 1.0, 1.0)
    optimizer: str = "ngd"
    lr_scale: Optional[float] = None  # None: the generator's own scale (NGD); Adam: x RUSIR's rates
    multiresolution: bool = True

    def __post_init__(self):
        if len(self.step_factors) != len(self.spaces):
            raise ValueError(f"{self.name}: one step factor per phase {self.spaces}")

    def restore_kwargs(self, steps: int) -> dict:
        """Keyword arguments of `rusir.restore` for `steps` steps per phase of the full method
        (no `lrs`: restore takes the generator's rate for each phase's space)."""
        return dict(spaces=self.spaces,
                    steps=tuple(max(1, round(steps * f)) for f in self.step_factors),
                    optimizer=self.optimizer, lr_scale=self.lr_scale)


FULL = "W->W+->W++"
CONFIGS: dict[str, AblationConfig] = {c.name: c for c in [
    AblationConfig("W", "phases", ("W",), (3.0,)),
    AblationConfig("W+", "phases", ("W+",), (3.0,)),
    AblationConfig("W++", "phases", ("W++",), (3.0,)),
    AblationConfig("W->W+", "phases", ("W", "W+"), (1.5, 1.5)),
    AblationConfig(FULL, "phases"),
    AblationConfig("NGD", "optimizer"),
    *[AblationConfig(f"Adam x{s:g}", "optimizer", optimizer="adam", lr_scale=s) for s in ADAM_LR_SCALES],
    AblationConfig("multiresolution", "loss"),
    AblationConfig("single scale", "loss", multiresolution=False),
]}


def configs(group: Union[str, Sequence[str], None] = None) -> list[AblationConfig]:
    """The configs of one group (or several, or all when None), in a fixed order."""
    groups = GROUPS if group is None else ((group,) if isinstance(group, str) else tuple(group))
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown ablation group(s) {sorted(unknown)}; valid: {GROUPS}")
    return [c for c in CONFIGS.values() if c.group in groups]


def build_loss_for(G, config: AblationConfig, loss: Optional[str] = None):
    """The loss callable of `config`: preset `loss` (default: the generator's), at one or all scales."""
    base = load_preset(loss or generator_info(G).default_loss)
    return dataclasses.replace(base, multiresolution=config.multiresolution).build()


def run_config(G, ground_truth, task: str, level: str, config: AblationConfig, steps: int = 150,
               seed: int = 0, loss: Optional[str] = None, progress: bool = False) -> TaskRun:
    """Degrade, restore with `config` and score (rusir.studies.experiment.run_task)."""
    return run_task(G, ground_truth, task, level, seed=seed, loss=build_loss_for(G, config, loss),
                    progress=progress, **config.restore_kwargs(steps))


def run_configs(G, ground_truth, task: str, level: str, configs: Sequence[AblationConfig],
                steps: int = 150, seed: int = 0, loss: Optional[str] = None,
                progress: bool = False) -> Iterator[tuple[AblationConfig, TaskRun]]:
    """(config, run) for each config on one task/level; identical variants (e.g. the full method
    in every group) are run once and shared."""
    done: dict[tuple, TaskRun] = {}
    for config in configs:
        key = (tuple(sorted(config.restore_kwargs(steps).items())), config.multiresolution)
        if key not in done:
            done[key] = run_config(G, ground_truth, task, level, config, steps, seed, loss, progress)
        yield config, done[key]


def tuned(rows: Sequence[dict], metric: str = "psnr") -> list[dict]:
    """Rows with the Adam variants reduced to the best one over the grid (renamed "Adam (tuned)").

    Rows need a `config` key. The best Adam scale is chosen by the mean of `metric` over all of
    its rows (every task, level and image), i.e. one tuned rate for the whole benchmark.
    """
    adam = [n for n in dict.fromkeys(r["config"] for r in rows)
            if n in CONFIGS and CONFIGS[n].optimizer == "adam"]
    if not adam:
        return list(rows)
    best = max(adam, key=lambda n: mean([r[metric] for r in rows if r["config"] == n]))
    out = []
    for r in rows:
        if r["config"] == best:
            out.append({**r, "config": "Adam (tuned)", "adam_config": best})
        elif r["config"] not in adam:
            out.append(r)
    return out
