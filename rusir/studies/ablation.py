"""The paper's design choices as data, measured by the benchmark runner (notebooks/30_ablation.ipynb).

Three groups of `AblationConfig`s, each a configuration of `rusir.engine.runner.run_bench`: a
config becomes a method `rusir[ablation=<name>]`, RUSIR with the config's own phases, steps,
optimizer, rate scale and loss bound to it (`bind_method`: the bound options win over the run's),
and the study reads the run's records:
- "phases": W only, W+ only, W++ only, W -> W+, full W -> W+ -> W++. The total step budget is
  the same for all (3 x `steps` per phase: one phase runs 3 x steps, two phases 1.5 x steps each,
  as the authors' skip-phase-II switch did), each phase at the generator's RUSIR rate for its
  space (rusir.inversion.schedule: the paper's 0.08 / 0.02 / 0.005, or a named generator's own).
- "optimizer": NGD (RUSIR) vs Adam at several multiples of those rates (`ADAM_LR_SCALES`);
  `tuned` keeps the single Adam rate that scores best over the whole grid, so NGD faces Adam at
  its best learning rate (one rate for every task and level, as RUSIR uses one).
- "loss": the generator's multiresolution loss preset vs the same terms at a single scale.

    run_ablation(G, heldout(4), ["upsampling"], ["XS", "M"], steps=150, out="runs/ablation")
    records = ablation_records(load_records("runs/ablation"))   # + config, group; Adam tuned
    summarise(records, by=("group", "ablation"))                  # rusir.report

Identical variants (the full method is also "NGD" and "multiresolution") are one method, run
once: the method of the first config in `CONFIGS` with the same options (`method_of`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from torch import Tensor

from ..engine.plan import bind_method
from ..engine.runner import BenchSummary, run_bench
from ..inversion.latents import SPACES
from ..inversion.losses import LossConfig
from ..inversion.presets import load_preset
from ..inversion.restore import restore
from ..model.generators import info as generator_info
from ..validation import MAX_STEPS, whole

__all__ = ["AblationConfig", "CONFIGS", "GROUPS", "ADAM_LR_SCALES", "STUDY_METRICS", "configs",
           "build_loss_for", "loss_config_for", "method_name", "method_of", "ablation_methods",
           "run_ablation", "ablation_records", "tuned"]

ADAM_LR_SCALES = (0.01, 0.03, 0.1, 0.3)           # Adam rate = scale x RUSIR's rate per phase
GROUPS = ("phases", "optimizer", "loss")
STUDY_METRICS = ("psnr", "ssim")                   # per image, weight-free (as the study always measured)
TUNED = "Adam (tuned)"


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

    def options(self) -> tuple:
        """What the variant runs (two configs with the same options are one method)."""
        return (self.spaces, self.step_factors, self.optimizer, self.lr_scale, self.multiresolution)


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


def loss_config_for(G, config: AblationConfig, loss: Optional[str] = None) -> LossConfig:
    """The loss of `config` as data: preset `loss` (default: the generator's), at one or all scales."""
    base = load_preset(loss or generator_info(G).default_loss)
    return dataclasses.replace(base, multiresolution=config.multiresolution)


def build_loss_for(G, config: AblationConfig, loss: Optional[str] = None):
    """The loss callable of `config` (`loss_config_for`, built)."""
    return loss_config_for(G, config, loss).build()


# --- the study as methods of the runner -------------------------------------------------------

def method_name(config: Union[AblationConfig, str]) -> str:
    """The runner's method name of a config: `rusir[ablation=<name>]`."""
    return f"rusir[ablation={getattr(config, 'name', config)}]"


def method_of(config: AblationConfig) -> str:
    """The method that runs `config`: that of the first config in `CONFIGS` with its options (so
    the full method, "NGD" and "multiresolution" share one method and one set of records)."""
    first = next(c for c in CONFIGS.values() if c.options() == config.options())
    return method_name(first)


def ablation_methods(G, chosen: Sequence[AblationConfig], steps: int,
                     loss: Optional[str] = None) -> dict[str, Callable]:
    """{method name: RUSIR bound to the config's phases, steps, optimizer, rate scale and loss},
    one method per distinct variant of `chosen` (`method_of`)."""
    steps = whole(steps, "ablation steps", 1, MAX_STEPS, "MAX_STEPS")
    methods: dict[str, Callable] = {}
    for config in chosen:
        name = method_of(config)
        if name not in methods:
            methods[name] = bind_method(restore, loss=loss_config_for(G, config, loss),
                                        **config.restore_kwargs(steps))
    return methods


def run_ablation(G, images: Tensor, tasks: Sequence[str], levels: Sequence[str],
                 groups: Union[str, Sequence[str], None] = None, steps: int = 150,
                 out: Union[str, Path] = "ablation", seed: int = 0, loss: Optional[str] = None,
                 metrics: Sequence[str] = STUDY_METRICS, batch: Optional[int] = None,
                 generator_name: Optional[str] = None, progress: bool = False) -> BenchSummary:
    """Run the configs of `groups` on every task x level over `images` ([N, 3, R, R] ground
    truths in [0, 1]) with `run_bench` into `out` (resumable: a re-run skips finished items).
    The targets are the same for every config (degradation seeds from `seed`); `batch` images
    are restored together (default: all of them). Read the results with `load_records(out)`
    and `ablation_records`."""
    chosen = configs(groups)
    steps = whole(steps, "ablation steps", 1, MAX_STEPS, "MAX_STEPS")
    methods = ablation_methods(G, chosen, steps, loss)
    cells = [f"{task}@{level}" for task in tasks for level in levels]
    return run_bench(G, images, methods, ",".join(cells), out, steps=[steps] * len(SPACES),
                     metrics=metrics, seed=seed, device=next(G.parameters()).device, loss=loss,
                     batch=batch or images.shape[0], progress=progress, generator_name=generator_name,
                     extra_config={"ablation": {c.name: method_of(c) for c in chosen}})


# --- reading its records ----------------------------------------------------------------------

def ablation_records(records: Sequence[dict], groups: Union[str, Sequence[str], None] = None,
                     metric: str = "accuracy_psnr") -> list[dict]:
    """The runner's records as the study's: per config of `groups`, its method's records with
    `ablation`, `group` and `method` set to the config's name (the record's own `config`, what ran, is kept) (so that `summarise` and
    `build_tables` group by config), the Adam variants reduced to the best one (`tuned`)."""
    out = []
    for config in configs(groups):
        method = method_of(config)
        out += [{**r, "ablation": config.name, "group": config.group, "method": config.name,
                 "ablation_method": method} for r in records if r.get("method") == method]
    return tuned(out, metric)


def _metric(record: dict, metric: str) -> Optional[float]:
    return record.get("metrics", {}).get(metric)


def tuned(records: Sequence[dict], metric: str = "accuracy_psnr") -> list[dict]:
    """Records with the Adam variants reduced to the best one over the grid (renamed
    "Adam (tuned)", its `adam_config` the chosen one).

    Records need an `ablation` key (`ablation_records`). The best Adam scale is chosen by the mean of
    `metrics[metric]` over all of its records (every task, level and image), i.e. one tuned rate
    for the whole benchmark.
    """
    adam = [n for n in dict.fromkeys(r["ablation"] for r in records)
            if n in CONFIGS and CONFIGS[n].optimizer == "adam"]
    if not adam:
        return list(records)

    def score(name: str) -> float:
        values = [v for r in records if r["ablation"] == name for v in [_metric(r, metric)] if v is not None]
        return sum(values) / len(values) if values else float("-inf")

    best = max(adam, key=score)
    out = []
    for r in records:
        if r["ablation"] == best:
            out.append({**r, "ablation": TUNED, "method": TUNED, "adam_config": best})
        elif r["ablation"] not in adam:
            out.append(r)
    return out
