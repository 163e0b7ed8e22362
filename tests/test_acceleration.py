"""restore(..., precision=, compile=): each path gives finite images close to fp32, the defaults
change nothing, and a failing compiler falls back to eager with a warning.

Tolerances (max |pixel difference| vs fp32 after 3 steps per phase, 32 px, random-VGG LPIPS):
bf16 autocast of the loss measured 9.0e-3 on the CPU (bound 0.05); TF32 is a CUDA setting
(identical on the CPU); the "eager" compile backend is identical; inductor measured 4.2e-7
(16 px, L2 loss, 1 step per phase; not run here: ~3 minutes of compiling on a shared CPU). GPU checks skip without CUDA.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from rusir.degradations import make
from rusir.inversion.presets import build_loss
from rusir.inversion.restore import restore

from conftest import procedural_images, small_generator

pytestmark = pytest.mark.usefixtures("one_thread")

LPIPS = {"terms": {"lpips_vgg": 1.0}, "options": {"lpips_vgg": {"_allow_random_backbone_for_tests": True}}}


def _run(device="cpu", **kw):
    G = small_generator(resolution=32).to(device)
    deg = make("denoising", "M", seed=0)
    target = deg.degrade_ground_truth(procedural_images(2, 32, seed=1)).to(device)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        loss = build_loss(LPIPS)
    seen = []
    out = restore(G, target, deg, loss=loss, steps=(3, 3, 3), progress=False,
                  callback=seen.append, **kw)
    return out, seen


@pytest.fixture(scope="module")
def fp32():
    """The reference run, on one thread like every test here (a module fixture is set up before
    the function-scoped `one_thread`; another thread count sums in another order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run()[0].images
    finally:
        torch.set_num_threads(before)


def test_explicit_defaults_are_todays_run(fp32):
    out, _ = _run(precision="fp32", compile=False, cache_target=True, batch_size=None)
    assert torch.equal(out.images, fp32)


def test_bf16_autocasts_the_loss_only(fp32):
    out, seen = _run(precision="bf16")
    assert out.images.dtype == torch.float32 and all(s.images.dtype == torch.float32 for s in seen)
    assert all(s.loss.dtype == torch.float32 for s in seen)
    assert torch.isfinite(out.images).all()
    diff = (out.images - fp32).abs().max().item()
    assert 0 < diff <= 0.05, diff            # bf16 did run (not identical), and stays close


def test_tf32_sets_and_restores_the_flags(fp32):
    flags = lambda: (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)  # noqa: E731
    before = flags()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        inside = []
        G = small_generator(resolution=16)
        restore(G, procedural_images(1, 16), loss="l2", steps=(0, 0, 1), precision="tf32",
                progress=False, callback=lambda s: inside.append(flags()))
        assert inside == [(True, True)] and flags() == (False, False)
        out, _ = _run(precision="tf32")
        assert torch.equal(out.images, fp32)  # the CPU has no TF32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_precision_and_compile_are_checked():
    G = small_generator(resolution=16)
    for kw in (dict(precision="fp16"), dict(compile=""), dict(compile=3)):
        with pytest.raises(ValueError, match="precision|compile"):
            restore(G, procedural_images(1, 16), loss="l2", steps=(0, 0, 1), progress=False, **kw)


def test_every_named_precision_is_accepted_and_the_loss_keeps_needs_prediction():
    from rusir.inversion.acceleration import LossRunner, check_precision
    for name in ("fp32", "tf32", "bf16", "tf32+bf16"):
        assert check_precision(name) == name

    def loss(x, y, **kw):
        return (x - y).abs().mean(dim=(1, 2, 3))
    loss.needs_prediction = True                   # e.g. the consistency term
    for precision in ("fp32", "bf16"):
        assert LossRunner(loss, precision).needs_prediction is True
    assert LossRunner(lambda x, y: x, "fp32").needs_prediction is False


def test_compile_path_runs_and_matches_eager():
    G = small_generator(resolution=16)
    target = procedural_images(2, 16, seed=2)
    eager = restore(G, target, loss="l2", steps=(0, 1, 1), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)       # no fallback may happen here
        out = restore(G, target, loss="l2", steps=(0, 1, 1), progress=False, compile="eager")
    assert out.config["compile"] == "eager"
    assert torch.allclose(out.images, eager.images, rtol=0, atol=1e-6)


@pytest.mark.parametrize("how", ["unknown backend", "fails at run time"])
def test_compile_failure_falls_back_with_a_warning(monkeypatch, how):
    G = small_generator(resolution=16)
    target = procedural_images(2, 16, seed=2)
    eager = restore(G, target, loss="l2", steps=(0, 1, 1), progress=False)
    backend = "no_such_backend"
    if how == "fails at run time":
        def compile(fn, **kw):
            def run(*args, **kwargs):
                raise RuntimeError("inductor: C++ compiler not found")
            return run
        monkeypatch.setattr(torch, "compile", compile)
        backend = True
    with pytest.warns(RuntimeWarning, match="torch.compile of synthesis failed"):
        out = restore(G, target, loss="l2", steps=(0, 1, 1), progress=False, compile=backend)
    assert torch.equal(out.images, eager.images)


# --- on a GPU ----------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_gpu_precisions_are_finite_and_close(precision):
    ref, _ = _run("cuda")
    out, _ = _run("cuda", precision=precision)
    assert torch.isfinite(out.images).all()
    assert (out.images - ref.images).abs().max().item() <= 0.05
