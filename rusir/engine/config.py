"""RunConfig: what one benchmark run is, as one frozen object -- what `bench.json` holds.

`run_bench` builds it once from its checked arguments (`RunConfig.build`), writes it as
`bench.json` (`records.write_config`, which refuses to resume a folder holding another
configuration) and hands it to the work units. The generator is named by its name AND its file's
sha256 AND its own defaults (schedule, tau, loss preset: `rusir.model.generators.GeneratorInfo`),
so a folder started with one generator and resumed with a retuned one is refused, not silently
mixed. bench.json fields (`as_dict`):

    generator, generator_sha256, generator_defaults {steps, lrs, lr_scale, discrepancy, loss},
    resolution, images, images_manifest (sha256 of the folder's manifest.json when the images
    are a set built by `rusir data build`, verified before the run; else null), image_names, methods, method_options {method: its bound options},
    tasks, steps, seed, loss, metrics, baseline_steps, degradation_seeds, dtype, discrepancy,
    chunk, true_mask (the dead-pixel mask given to the methods that ask for it), repeats
    (restorations of each item; a resumed run may ask for more: the largest is
    kept, as the image list grows) and the study's extra fields (e.g. the IQA study's `losses`).

What each item actually ran is its record's `config` (the method's `result.config`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

from ..inversion.batching import check_batch_size
from ..inversion.discrepancy import check_tau
from ..model.generators import info as generator_info
from .plan import parse_repeats
from .records import jsonable

__all__ = ["RunConfig", "generator_defaults", "bound_options", "check_discrepancy"]


def generator_defaults(G) -> dict:
    """A generator's own defaults for RUSIR (`info(G)`): the schedule, tau and loss preset that
    `restore` uses when a run does not set them."""
    own = generator_info(G)
    return {"steps": None if own.steps is None else list(own.steps),
            "lrs": None if own.lrs is None else list(own.lrs), "lr_scale": own.lr_scale,
            "discrepancy": own.discrepancy, "loss": own.default_loss}


def bound_options(fns: Mapping[str, Any]) -> dict:
    """{method: the keyword arguments bound to it with bind_method} ({} for a plain method)."""
    return {name: jsonable(dict(getattr(fn, "fixed", {}))) for name, fn in fns.items()}


def check_discrepancy(value) -> Optional[float]:
    """A run's tau: None leaves each method its own (the generator's); 0 turns the stop off
    (recorded 0.0, passed on as 0); else a finite number > 0 (`check_tau`)."""
    if value is None:
        return None
    tau = check_tau(value)
    return 0.0 if tau is None else tau


@dataclass(frozen=True)
class RunConfig:
    """The configuration of one benchmark run (see the module doc); checked by `build`."""
    generator: str
    generator_sha256: Optional[str]
    generator_defaults: Mapping[str, Any]
    resolution: int
    images: Any                                  # the image spec, paths, or a hash of tensors
    image_names: tuple[str, ...]
    methods: tuple[str, ...]
    method_options: Mapping[str, Any]
    tasks: tuple[str, ...]                       # T@L
    steps: tuple[int, ...]                       # RUSIR's steps per phase
    seed: int
    loss: Any                                    # a preset name, a callable's name, or None
    metrics: tuple[str, ...]
    baseline_steps: Optional[int]
    degradation_seeds: str
    dtype: str
    discrepancy: Optional[float] = None          # tau for the methods that take it; None: theirs
    chunk: Union[int, str, None] = None          # restore(batch_size=...) inside a unit
    repeats: int = 1                             # restorations of each item (--repeats)
    true_mask: bool = True                       # dead-pixel mask to the methods that ask for it
    images_manifest: Optional[str] = None        # sha256 of a built set's manifest.json
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, G, *, generator_name: str, images, image_names: Sequence[str],
              fns: Mapping[str, Any], tasks: Sequence[tuple[str, str]], steps: Sequence[int],
              seed: int, loss, metrics: Sequence[str], baseline_steps: Optional[int],
              degradation_seeds: str, dtype: str, discrepancy=None, chunk=None, repeats=1,
              images_manifest: Optional[str] = None,
              extra: Optional[Mapping] = None, true_mask: bool = True) -> "RunConfig":
        """The run's configuration; `discrepancy`, `chunk` and `repeats` are checked here (the
        rest by run_bench as it reads its arguments)."""
        own = generator_info(G)
        extra = dict(extra or {})
        clash = sorted(set(extra) & {f for f in cls.__dataclass_fields__ if f != "extra"})
        if clash:
            raise ValueError(f"extra_config may not set the run's own fields {clash}")
        return cls(generator=str(generator_name), generator_sha256=own.sha256,
                   generator_defaults=generator_defaults(G), resolution=int(G.img_resolution),
                   images=images, image_names=tuple(image_names), methods=tuple(fns),
                   method_options=bound_options(fns),
                   tasks=tuple(f"{t}@{lv}" for t, lv in tasks), steps=tuple(int(s) for s in steps),
                   seed=int(seed), loss=loss, metrics=tuple(metrics), baseline_steps=baseline_steps,
                   degradation_seeds=degradation_seeds, dtype=dtype,
                   discrepancy=check_discrepancy(discrepancy),
                   chunk=check_batch_size(chunk), repeats=parse_repeats(repeats),
                   true_mask=bool(true_mask), images_manifest=images_manifest, extra=extra)

    def as_dict(self) -> dict:
        """bench.json's content: the fields as plain JSON data, the extra fields at top level."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "extra"}
        return jsonable({**data, **dict(self.extra)})
