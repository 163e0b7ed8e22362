"""RestoreConfig: everything one `restore` call runs with, resolved and checked once.

`restore(G, target, degradation, **options)` builds it at its edge (`RestoreConfig.resolve`)
from the caller's options and the generator's own defaults (`rusir.model.generators.info`), so
every later function reads one frozen object instead of a dict by string key, and
`result.config` says what ran -- not what was asked for. Two kinds of fields:

- the options (`OPTIONS`): what `restore` takes; the object reads like a mapping of them
  (`config["steps"]`, `**config`), so `restore(G, target, deg, **result.config)` repeats a run;
- what the run was (`IDENTITY`): the generator's name and sha256, the loss that ran (a preset
  name or a description), and the chunk size that actually ran (`batch_size` is the request:
  None, n or "auto").

`as_dict()` gives both as plain JSON data (what the benchmark records as `record["config"]`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Iterator, Optional, Sequence, Union

from ..model.generators import info
from ..validation import MAX_SEED, number, side, whole
from .acceleration import check_compile, check_precision
from .batching import check_batch_size
from .discrepancy import check_tau, supports
from .latents import SPACES
from .losses import LossConfig
from .schedule import resolve as resolve_schedule

__all__ = ["RestoreConfig", "OPTIONS", "IDENTITY", "OPTIMIZERS", "NGD_OPTIONS", "check_spaces",
           "check_optimizer", "check_jitter", "describe_loss"]

OPTIMIZERS = ("ngd", "adam")
NGD_OPTIONS = ("anchor", "normalize")
OPTIONS = ("steps", "lrs", "lr_scale", "spaces", "optimizer", "resolution", "seed", "batch_size",
           "precision", "compile", "cache_target", "ngd_options", "discrepancy", "jitter")
IDENTITY = ("generator", "generator_sha256", "loss", "chunk")


@dataclass(frozen=True)
class RestoreConfig(Mapping):
    """The resolved configuration of one restore (see the module doc). Read-only; build it with
    `RestoreConfig.resolve`, which checks every value (ValueError naming the bad one)."""
    steps: tuple[int, ...]
    lrs: tuple[float, ...]
    lr_scale: float
    spaces: tuple[str, ...] = SPACES
    optimizer: str = "ngd"
    resolution: int = 0
    seed: int = 0
    batch_size: Union[int, str, None] = None     # as requested: None, n or "auto"
    precision: str = "fp32"
    compile: Union[bool, str] = False
    cache_target: bool = True
    ngd_options: Optional[dict] = None            # NGD's anchor / normalize; None: plain step
    discrepancy: Optional[float] = None           # tau; None: off
    jitter: float = 0.0                           # relative noise on the start (check_jitter)
    generator: str = ""                           # info(G).name
    generator_sha256: Optional[str] = None        # info(G).sha256 when known
    loss: Any = None                              # preset name, loss data, or a description
    chunk: Optional[int] = None                   # images per chunk that ran (None: not run yet)

    @classmethod
    def resolve(cls, G, degradation=None, loss=None, *, steps=None, lrs=None, lr_scale=None,
                spaces: Sequence[str] = SPACES, optimizer: str = "ngd", resolution=None,
                seed: int = 0, batch_size=None, precision: str = "fp32", compile=False,
                cache_target: bool = True, ngd_options: Optional[dict] = None,
                discrepancy=None, jitter=0.0) -> "RestoreConfig":
        """The configuration `restore` runs with for these options: None takes G's own defaults
        (schedule, tau, loss preset: `info(G)`), else the paper's. Every value is checked here,
        before any step."""
        spaces = check_spaces(spaces)
        steps, lrs, lr_scale = resolve_schedule(G, spaces, steps, lrs, lr_scale)
        own = info(G)
        return cls(steps=steps, lrs=lrs, lr_scale=lr_scale, spaces=spaces,
                   optimizer=check_optimizer(optimizer, ngd_options),
                   resolution=side(resolution or G.img_resolution, "resolution"),
                   seed=whole(seed, "seed", 0, MAX_SEED, "MAX_SEED"),
                   batch_size=check_batch_size(batch_size), precision=check_precision(precision),
                   compile=check_compile(compile), cache_target=bool(cache_target),
                   ngd_options=dict(ngd_options) if ngd_options else None,
                   discrepancy=_resolve_tau(own.discrepancy, discrepancy, degradation),
                   jitter=check_jitter(jitter), generator=own.name, generator_sha256=own.sha256,
                   loss=describe_loss(loss, own.default_loss))

    def ran(self, chunk: int) -> "RestoreConfig":
        """This configuration with the chunk size that actually ran."""
        return replace(self, chunk=int(chunk))

    # --- read like a mapping of the options (so **config reruns) ---

    def __getitem__(self, key: str):
        if key not in OPTIONS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(OPTIONS)

    def __len__(self) -> int:
        return len(OPTIONS)

    def as_dict(self) -> dict:
        """Options and identity as plain JSON data (lists for tuples)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def check_spaces(spaces: Sequence[str]) -> tuple[str, ...]:
    """An ordered, non-empty subset of (W, W+, W++)."""
    spaces = tuple(spaces)
    if not spaces or any(s not in SPACES for s in spaces) or list(spaces) != sorted(spaces, key=SPACES.index):
        raise ValueError(f"spaces must be an ordered subset of {SPACES}, got {spaces}")
    return spaces


def check_optimizer(name: str, ngd_options: Optional[dict] = None) -> str:
    """`ngd` or `adam`; ngd_options only for ngd and only the known ones."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    options = dict(ngd_options or {})
    if options and name != "ngd":
        raise ValueError(f"ngd_options apply to optimizer 'ngd' only, not {name!r}")
    unknown = sorted(set(options) - set(NGD_OPTIONS))
    if unknown:
        raise ValueError(f"unknown ngd_options {unknown}; choose from {list(NGD_OPTIONS)}")
    return name


def check_jitter(value) -> float:
    """The start's relative perturbation: a finite number >= 0 (0: the plain start), at most 1
    (the perturbation is meant at rounding level, `rusir.engine.unit.REPEAT_JITTER`)."""
    return number(value, "jitter", 0.0, 1.0, limit=None, strict=False)


def describe_loss(loss, default: str):
    """The loss that runs, as data: the generator's preset name for None, the data itself for a
    preset name / dict / LossConfig, else a callable's name."""
    if loss is None:
        return default
    if isinstance(loss, LossConfig):
        return loss.to_dict()
    if isinstance(loss, (str, Mapping)):
        return loss if isinstance(loss, str) else dict(loss)
    return getattr(loss, "__name__", type(loss).__name__)


def _resolve_tau(own: Optional[float], value, degradation) -> Optional[float]:
    """The discrepancy tau a restore runs with: the given one, else the generator's own; one
    asked for explicitly needs a degradation that has a true side."""
    tau = check_tau(own if value is None else value)
    if tau is not None and degradation is not None and not supports(degradation):
        if value is not None:
            raise ValueError(f"discrepancy={value} needs a degradation with a true side (a "
                             f"rusir.degradations.Degradation); {type(degradation).__name__} has "
                             "no redraw(): pass discrepancy=0")
        return None
    return tau


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    return repr(value)
