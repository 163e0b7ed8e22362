"""rusir.studies.experiment: the set-up every run starts from (`rusir.setup`), and a run's summary."""
from __future__ import annotations

import pytest
import torch

import rusir
from conftest import fixture_path, small_generator, smooth_images
from rusir.studies import experiment
from rusir.inversion.presets import build_loss
from rusir.inversion.schedule import PAPER_STEPS, resolve


def test_setup_loads_builds_and_resolves_what_the_notebooks_did_by_hand(capsys):
    path = str(fixture_path("tiny32.pkl"))
    G, loss_fn, steps = rusir.setup(path, "offline", [1, 2, 3], device="cpu")
    assert isinstance(G, rusir.Generator) and not G.training
    assert next(G.parameters()).device.type == "cpu" and not any(p.requires_grad for p in G.parameters())
    assert steps == (1, 2, 3) and isinstance(steps, tuple)   # results files record str(steps)
    x = smooth_images(b=2, side=32)
    assert torch.equal(loss_fn(x, x.flip(0)), build_loss("offline")(x, x.flip(0)))
    line = capsys.readouterr().out
    assert f"generator {path!r}: 32 px, on cpu; loss offline;" in line and "(1, 2, 3)" in line


def test_setup_defaults_are_the_generators_own():
    G = small_generator()
    chosen = rusir.setup(G, verbose=False)
    assert chosen.G is G and chosen.loss is None       # None: restore takes G's own preset
    assert chosen.steps == PAPER_STEPS == resolve(G)[0]
    _, lrs, lr_scale = resolve(G)
    assert chosen.rates() == tuple(r * lr_scale for r in lrs)
    assert rusir.setup(G, loss=lambda x, y, mask=None: (x - y).abs().mean((1, 2, 3)),
                       verbose=False).loss is not None  # a callable is used as it is
    with pytest.raises(ValueError, match="unknown loss"):
        rusir.setup(G, loss="no_such_loss", verbose=False)


@pytest.mark.parametrize("cuda", [True, False])
def test_setup_takes_the_gpu_when_there_is_one(monkeypatch, cuda):
    seen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(experiment, "load_generator",
                        lambda name, device: seen.append(device) or small_generator())
    rusir.setup("anything", verbose=False)
    rusir.setup("anything", device="cpu", verbose=False)
    assert seen == ["cuda" if cuda else "cpu", "cpu"]


def test_setup_then_restore_equals_the_explicit_calls():
    G = small_generator()
    deg = rusir.degradations.make("upsampling", "XS", seed=0)
    target = deg.degrade_ground_truth(smooth_images(b=1, side=16))
    _, loss_fn, steps = rusir.setup(G, "offline", [2, 2, 2], verbose=False)
    a = rusir.restore(G, target, deg, loss=loss_fn, steps=steps, progress=False)
    b = rusir.restore(G, target, deg, loss=build_loss("offline"), steps=(2, 2, 2), progress=False)
    assert torch.equal(a.images, b.images)


def test_task_run_summary_states_both_psnrs():
    G = small_generator()
    run = rusir.run_task(G, smooth_images(b=2, side=16), "denoising", "S", steps=(1, 1, 1),
                         loss=build_loss("offline"), progress=False)
    s = run.scores
    naive, ours = (sum(s[k]["psnr"]) / 2 for k in ("naive", "restored"))
    assert run.summary() == (f"denoising S: PSNR {naive:.2f} dB (naive) -> {ours:.2f} dB (RUSIR) "
                             f"in {s['seconds']:.1f} s")


def test_setup_refuses_an_unusable_device_or_bad_steps_before_loading(monkeypatch):
    monkeypatch.setattr(experiment, "load_generator", lambda *a, **k: pytest.fail("generator loaded"))
    for device in ("bogus", "cuda:99"):
        with pytest.raises(ValueError, match="device"):
            rusir.setup("anything", device=device, verbose=False)
    with pytest.raises(ValueError, match="steps"):
        rusir.setup("anything", steps=(-1, 1, 1), device="cpu", verbose=False)


def test_run_task_seeds_the_method_as_it_seeds_the_degradation():
    """`rusir demo --seed` reaches restore(): its seed is run_task's."""
    G = small_generator()
    seen = []

    def method(G, target, degradation=None, *, loss=None, seed=0, **kw):
        seen.append(seed)
        return rusir.restore(G, target, degradation, loss="l2", steps=(1, 1, 1), progress=False, seed=seed)

    truth = smooth_images(1, G.img_resolution)
    experiment.run_task(G, truth, "denoising", "M", seed=3, method=method)
    assert seen == [3]
