"""rusir.inversion.schedule: the paper's per-phase steps and rates, a generator's own, and what restore runs."""
from __future__ import annotations

import pytest
import torch

from conftest import fixture_path, mse, small_generator
from rusir import load_generator, restore
from rusir.inversion.latents import convert, initial_latent
from rusir.inversion.schedule import PAPER_LRS, PAPER_STEPS, resolve
from rusir.model.generators import REGISTRY, GeneratorInfo, set_info
from rusir.model.generators import info as generator_info


def test_paper_schedule_is_the_default():
    G = small_generator()
    assert resolve(G) == ((150, 150, 150), (0.08, 0.02, 0.005), 1.0)
    assert resolve(G, ("W+",)) == ((150,), (0.02,), 1.0)
    assert REGISTRY["ffhq"].steps is None and REGISTRY["ffhq"].lrs is None   # None: the paper's
    assert PAPER_STEPS == (150, 150, 150) and PAPER_LRS == (0.08, 0.02, 0.005)


def test_generator_schedule_and_explicit_values():
    G = small_generator()
    set_info(G, GeneratorInfo("own", "test", G.img_resolution, steps=(1, 2, 3), lrs=(0.5, 0.25, 0.125),
                              lr_scale=4.0))
    assert resolve(G) == ((1, 2, 3), (0.5, 0.25, 0.125), 4.0)
    assert resolve(G, ("W", "W++")) == ((1, 3), (0.5, 0.125), 4.0)   # picked by space
    assert resolve(G, ("W+",), steps=[7], lrs=[0.1], lr_scale=2) == ((7,), (0.1,), 2.0)


def test_restore_runs_the_generator_schedule():
    """NGD moves every row exactly rate x scale per step: one W step shows the rate applied."""
    G = small_generator()
    set_info(G, GeneratorInfo("own", "test", G.img_resolution, steps=(1, 2, 3), lrs=(0.5, 0.25, 0.125),
                              lr_scale=4.0))
    target = torch.rand(1, 3, 16, 16)
    result = restore(G, target, loss=mse, progress=False)
    assert [len(p.losses) for p in result.phases.values()] == [1, 2, 3]
    assert [p.lr for p in result.phases.values()] == [2.0, 1.0, 0.5]
    start = initial_latent(G, "W", 1)
    moved = (result.phases["W"].latent - start).norm(dim=-1)
    assert moved.item() == pytest.approx(2.0, rel=1e-5)
    only = restore(G, target, loss=mse, spaces=("W+",), progress=False)   # a subset: its own entry
    assert len(only.phases["W+"].losses) == 2 and only.phases["W+"].lr == 1.0
    one = restore(G, target, loss=mse, spaces=("W+",), steps=(1,), progress=False)
    moved = (one.latent - convert(start, "W+", G)).norm(dim=-1)      # [1, num_ws]
    assert moved.max().item() == pytest.approx(1.0, rel=1e-5)


def test_shipped_generator_carries_its_documented_schedule():
    """The literal values README, the model card and docs/method.md document (the registry alone
    could change unnoticed: comparing it with itself proves nothing)."""
    G = load_generator("toyfaces64")
    assert resolve(G) == ((50, 50, 300), (0.08, 0.02, 0.02), 8.0)
    assert resolve(G, ("W++",)) == ((300,), (0.02,), 8.0)
    assert generator_info(G).default_loss == "offline"


def test_official_generator_runs_the_paper_schedule(monkeypatch):
    """`load_generator("ffhq")` end to end, its download replaced by the official-format fixture."""
    from rusir.model import weights
    fixture = fixture_path("tiny32.pkl")
    monkeypatch.setattr(weights, "fetch", lambda name, download=None: fixture)
    G = load_generator("ffhq")
    assert resolve(G) == ((150, 150, 150), (0.08, 0.02, 0.005), 1.0)
    assert generator_info(G).default_loss == "paper"


@pytest.mark.parametrize("kwargs", [
    dict(steps=(-1, 1, 1)), dict(steps=(1.5, 1, 1)), dict(steps=(1, 1)), dict(steps=(True, 1, 1)),
    dict(steps="abc"), dict(lr_scale=float("nan")), dict(lr_scale=float("inf")), dict(lr_scale=0),
    dict(lr_scale=-2.0), dict(lrs=(0.1, float("nan"), 0.1)), dict(lrs=(0.1, 0.0, 0.1)),
    dict(lrs=(0.1, 0.1))])
def test_bad_schedules_are_refused_before_any_step(kwargs):
    G = small_generator()
    with pytest.raises(ValueError):
        resolve(G, **kwargs)
    steps_taken = []
    with pytest.raises(ValueError):
        restore(G, torch.rand(1, 3, 16, 16), loss=mse, callback=steps_taken.append, progress=False,
                **kwargs)
    assert not steps_taken


def test_zero_steps_skip_a_phase():
    """0 steps is allowed (documented): the phase passes its start latent on; all zeros gives the
    start image, as the baselines' steps=0."""
    G = small_generator()
    assert resolve(G, steps=(0, 0, 2))[0] == (0, 0, 2)
    assert resolve(G, steps=(2.0, 1, 1))[0] == (2, 1, 1)      # an integral float is a count
    result = restore(G, torch.rand(1, 3, 16, 16), loss=mse, steps=(0, 0, 0), progress=False)
    from rusir.inversion.loop import render
    start = render(G, convert(initial_latent(G, "W", 1), "W+", G))
    assert all(not p.losses for p in result.phases.values())
    assert torch.allclose(result.images, start, atol=1e-5)


def test_bench_refuses_bad_steps_before_any_item(tmp_path):
    from rusir.engine.runner import run_bench
    with pytest.raises(ValueError, match="steps"):
        run_bench(small_generator(), torch.rand(1, 3, 16, 16), tasks="denoising@XS",
                  out=tmp_path / "bench", steps=(-1, 1, 1), progress=False)
    assert not (tmp_path / "bench").exists()
