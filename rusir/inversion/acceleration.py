"""Faster arithmetic for a restore, each a choice with a measured cost in accuracy.

    precision="fp32"   today's behaviour: everything in the generator's dtype
    precision="tf32"   CUDA matmuls and convolutions in TF32 (10-bit mantissa inputs) for the
                       call: torch.backends flags set, and put back afterwards
    precision="bf16"   the LOSS (its networks: LPIPS's VGG) under bf16 autocast; the generator
                       stays fp32 (its per-filter W++ codes move by lr = 0.005, far below bf16's
                       resolution of a value near 1)
    precision="tf32+bf16"  both: the generator in TF32, the loss in bf16
    compile=True       torch.compile of the synthesis network and of every loss term's comparison
                       (`Term.compare`); a backend name (e.g. "aot_eager") picks the backend. When
                       compiling or running a compiled function fails, a warning says so and the
                       eager function runs instead: compile is a speed-up, never a new failure.

On the CPU TF32 does nothing (the flags are CUDA's) and bf16 autocast runs (slowly). The
benchmark (benchmarks/gpu.py) measures each against fp32; tests/test_acceleration.py bounds the
difference on the CPU.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Union

import torch

__all__ = ["PRECISIONS", "check_precision", "tf32_scope", "recompile_limit", "LossRunner", "SynthesisProxy",
           "compile_or_eager", "compiled_terms"]

PRECISIONS = ("fp32", "tf32", "bf16", "tf32+bf16")
Compile = Union[bool, str]


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def check_compile(compile: Compile) -> Compile:
    if not isinstance(compile, (bool, str)) or compile == "":
        raise ValueError(f"compile must be True, False or a torch.compile backend name, got {compile!r}")
    return compile


@contextmanager
def tf32_scope(enabled: bool) -> Iterator[None]:
    """TF32 for CUDA matmuls and cuDNN convolutions inside the block, when enabled; the flags
    are put back as they were (a user's own setting is theirs)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if enabled:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


RECOMPILE_LIMIT = 64   # graphs per function while compiling: 3 latent spaces x grad / no-grad x
                       # batch sizes (chunks, the benchmark's batches) pass dynamo's default 8


@contextmanager
def recompile_limit(limit: int = RECOMPILE_LIMIT) -> Iterator[None]:
    """Dynamo's per-function graph limit raised for the block (past it dynamo silently runs
    eager, which would make a compiled run look slow), then put back."""
    import torch._dynamo.config as dynamo_config

    before = dynamo_config.recompile_limit
    dynamo_config.recompile_limit = max(before, limit)
    try:
        yield
    finally:
        dynamo_config.recompile_limit = before


class compile_or_eager:
    """`fn` compiled with torch.compile, falling back to `fn` itself (with one warning) when
    compiling or running the compiled function raises. A genuine error of `fn` (bad input)
    then raises again from the eager call."""

    def __init__(self, fn: Callable, name: str, backend: Compile = True):
        self.fn, self.name, self.failed = fn, name, False
        kwargs = {} if backend is True else {"backend": backend}
        try:
            self.compiled = torch.compile(fn, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- any failure to compile means: run eager
            self._fall_back(exc)

    def _fall_back(self, exc: Exception) -> None:
        self.failed = True
        warnings.warn(f"torch.compile of {self.name} failed ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}); running it uncompiled",
                      RuntimeWarning, stacklevel=3)

    def __getattr__(self, name: str) -> Any:     # e.g. synthesis.img_resolution: fn's own
        if name in ("fn", "compiled", "failed", "name"):
            raise AttributeError(name)
        return getattr(self.fn, name)

    def __call__(self, *args, **kwargs):
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except torch.OutOfMemoryError:
                raise                            # memory is not the compiler's fault
            except Exception as exc:  # noqa: BLE001
                self._fall_back(exc)
        return self.fn(*args, **kwargs)


class SynthesisProxy:
    """G as `render` sees it, with `synthesis` replaced (e.g. compiled); every other attribute
    is G's own, so the phases and latents read the real generator."""

    def __init__(self, G, synthesis: Callable):
        self._G, self.synthesis = G, synthesis

    def __getattr__(self, name: str) -> Any:
        if name == "_G":
            raise AttributeError(name)
        return getattr(self._G, name)


class LossRunner:
    """The loss as the step loop calls it, under bf16 autocast when asked (value back in fp32);
    keeps `needs_prediction` so `evaluate_loss` passes the clean prediction."""

    def __init__(self, loss: Callable, precision: str):
        self.loss, self.precision = loss, precision
        self.needs_prediction = getattr(loss, "needs_prediction", False)

    def __call__(self, x, y, **kwargs):
        if "bf16" not in self.precision:
            return self.loss(x, y, **kwargs)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            value = self.loss(x, y, **kwargs)
        return value.float()


@contextmanager
def compiled_terms(loss: Any, backend: Compile) -> Iterator[None]:
    """Every `Term.compare` inside `loss` (a module) compiled for the block, then put back."""
    from .terms import Term

    terms = [m for m in loss.modules() if isinstance(m, Term)] if hasattr(loss, "modules") else []
    for term in terms:
        term.compare = compile_or_eager(term.compare, f"{type(term).__name__}.compare", backend)
    try:
        yield
    finally:
        for term in terms:
            del term.compare                     # the class's method again
