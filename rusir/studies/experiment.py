"""One restoration experiment: set it up (generator, loss, schedule), degrade ground truth,
restore it, score it against the naive baseline.

Shared by the demo, the CLI, the notebooks and the benchmark so that they all measure the
same thing the same way:

    G, loss_fn, steps = setup("toyfaces64", loss=None, steps=None)   # prints what it chose
    run = run_task(G, heldout(4), "upsampling", "M", loss=loss_fn, steps=steps)
    print(run.summary())   # "upsampling M: PSNR <naive> dB (naive) -> <ours> dB (RUSIR) in <s> s"
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor

from .. import degradations
from ..inversion.presets import build_loss
from ..inversion.restore import RestoreResult, restore
from ..inversion.latents import SPACES
from ..inversion.schedule import check_steps, resolve as resolve_schedule
from ..baselines.naive import naive_restoration
from ..metrics import psnr, ssim
from ..model.family import StyleGenerator
from ..model.generators import DEFAULT, info as generator_info, load_generator

__all__ = ["Setup", "setup", "check_device", "TaskRun", "naive_restoration", "score", "run_task", "mean"]


class Setup(NamedTuple):
    """What `setup` chose; unpacks as `G, loss_fn, steps = setup(...)`."""
    G: StyleGenerator
    loss: Optional[Callable]   # None: `restore` takes the generator's own loss preset
    steps: tuple[int, ...]     # RUSIR steps per phase W, W+, W++ (given, or the generator's own)

    def rates(self) -> tuple[float, ...]:
        """The NGD step size of each phase (rate x lr_scale) that `restore` will use."""
        _, lrs, lr_scale = resolve_schedule(self.G, steps=self.steps)
        return tuple(r * lr_scale for r in lrs)


def check_device(device: Union[str, torch.device, None] = None) -> torch.device:
    """The device to run on, checked before anything is loaded: None -> cuda when available, else
    cpu; a name torch does not know, or cuda / cuda:N / mps where this machine has none, is a
    ValueError that says so."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r}: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"device {str(device)!r}: CUDA is not available here ({why}); use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} "
                             "CUDA device(s)")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {str(device)!r}: MPS is not available here; use cpu")
    elif dev.type != "cpu":
        backend = getattr(torch, dev.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise ValueError(f"device {str(device)!r} is not available here; use cpu, cuda or mps")
    return dev


def setup(generator: Union[str, Any] = DEFAULT, loss: Any = None,
          steps: Optional[Sequence[int]] = None, device: Union[str, torch.device, None] = None,
          verbose: bool = True) -> Setup:
    """The three things every restoration run starts from, resolved once.

    generator: a registry name ("toyfaces64", "ffhq", ...), a .pkl / .safetensors path, or a
        generator already loaded (used as it is).
    loss: a loss by name or as data (`build_loss`: preset, term, YAML path, dict, LossConfig),
        a loss callable, or None for the generator's own preset (chosen by `restore`).
    steps: RUSIR steps per phase; None: the generator's own schedule (rusir.inversion.schedule).
    device: default "cuda" when available, else "cpu" (ignored for a loaded generator); checked
        before the generator is loaded (`check_device`).
    verbose: print one line saying what was chosen.
    """
    if steps is not None:
        check_steps(steps, len(SPACES))     # before the generator is loaded
    if isinstance(generator, torch.nn.Module):
        G = generator
    else:
        G = load_generator(generator, device=str(check_device(device)))
    spec = loss
    if loss is not None and not callable(loss):
        loss = build_loss(loss)
    chosen = Setup(G, loss, resolve_schedule(G, steps=steps)[0])
    if verbose:
        own = generator_info(G)
        what = (f"{own.default_loss} (the generator's own)" if spec is None
                else spec if isinstance(spec, str) else type(spec).__name__)
        print(f"generator {own.name!r}: {G.img_resolution} px, on {next(G.parameters()).device}; "
              f"loss {what}; RUSIR steps {chosen.steps} at rates {list(chosen.rates())}")
    return chosen


@dataclass
class TaskRun:
    """Everything one (task, level) run on a batch of ground-truth images produced."""
    task: str
    level: str
    ground_truth: Tensor             # [B, 3, R, R]
    target: Tensor                   # [B, 3, h, w] true degradation (8-bit cycled)
    result: RestoreResult
    naive: Tensor                    # [B, 3, R, R] naive baseline (bicubic / the target itself)
    degradation: object
    scores: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One line: mean PSNR of the naive baseline and of RUSIR, and the time taken."""
        s = self.scores
        return (f"{self.task} {self.level}: PSNR {mean(s['naive']['psnr']):.2f} dB (naive) -> "
                f"{mean(s['restored']['psnr']):.2f} dB (RUSIR) in {s['seconds']:.1f} s")


def score(prediction: Tensor, ground_truth: Tensor) -> dict[str, list[float]]:
    """PSNR and SSIM per image (weight-free, always available)."""
    pred = prediction.clamp(0, 1)
    return {"psnr": psnr(pred, ground_truth).tolist(), "ssim": ssim(pred, ground_truth).tolist()}


def run_task(G, ground_truth: Tensor, task: str, level: str = "M", seed: int = 0,
             loss: Optional[Callable] = None, method: Callable = restore,
             degradation_kwargs: Optional[dict] = None, **restore_kwargs) -> TaskRun:
    """Degrade `ground_truth` ([B, 3, R, R] in [0, 1]) with `task` at `level`, restore, score.

    `seed` seeds both the degradation and the method.
    Scores: `restored` and `naive` (PSNR/SSIM vs ground truth) and `fidelity_psnr` (PSNR of the
    TRUE degradation of the restoration vs the target).
    """
    device = next(G.parameters()).device
    ground_truth = ground_truth.to(device)
    deg = degradations.make(task, level, seed=seed, **(degradation_kwargs or {}))
    target = deg.degrade_ground_truth(ground_truth)
    # the same seed for the method's own noise (RUSIR: the loss's; PULSE: its starts)
    result = method(G, target, deg, loss=loss, seed=seed, **restore_kwargs)
    naive = naive_restoration(target, ground_truth.shape[-1])
    with torch.no_grad():
        fidelity = deg.degrade_ground_truth(result.images.clamp(0, 1))
    scores = {"restored": score(result.images, ground_truth), "naive": score(naive, ground_truth),
              "fidelity_psnr": psnr(fidelity, target).tolist(),
              "phases": {s: score(p.images, ground_truth) for s, p in result.phases.items()},
              "seconds": result.seconds}
    return TaskRun(task, level, ground_truth, target, result, naive, deg, scores)


def mean(values: Sequence[float]) -> float:
    """The mean of a list of floats (0 for an empty list)."""
    return float(sum(values) / max(len(values), 1))
