"""restore(): phases chain, batching is exact, and inverting a generated image recovers it."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import generated_target, mse, small_generator
from rusir.model.generators import GeneratorInfo, set_info
from rusir.inversion.restore import render, restore


def psnr(a, b):
    return (10 * torch.log10(1 / (a - b).square().flatten(1).mean(1))).tolist()


def test_identity_inversion_recovers_a_generated_image(tiny32):
    target = generated_target(tiny32, seed=3)
    result = restore(tiny32, target, loss=mse, steps=(40, 40, 40), progress=False)
    start = mse(render(tiny32, tiny32.mapping.w_avg[None]), target).item()
    errors = {s: mse(p.images, target).item() for s, p in result.phases.items()}
    peak = (target.max() - target.min()).item() ** 2  # random fixture nets leave [0, 1] far behind
    print("identity inversion PSNR (dB, peak = target range):",
          {s: round(10 * math.log10(peak / e), 2) for s, e in errors.items()})
    assert errors["W"] < 0.05 * start
    assert errors["W++"] < errors["W+"] < errors["W"]


def test_batch_equals_per_image():
    G = small_generator()
    target = generated_target(G, seed=1, batch=2)
    kw = dict(loss=mse, steps=(5, 5, 5), progress=False)
    both = restore(G, target, **kw).images
    alone = torch.cat([restore(G, target[i:i + 1], **kw).images for i in range(2)])
    assert torch.allclose(both, alone, atol=1e-5)


def test_each_phase_starts_where_the_last_stopped():
    G = small_generator()
    target = generated_target(G, seed=2)
    result = restore(G, target, loss=mse, steps=(8, 8, 8), progress=False)
    phases = list(result.phases.values())
    for prev, nxt in zip(phases, phases[1:]):
        assert nxt.losses[0].item() == pytest.approx(mse(prev.images, target).item(), rel=1e-4, abs=1e-7)
    assert result.latent.shape == (1, G.num_ws, G.synthesis.max_channels, G.w_dim)


def test_callback_sees_every_step_and_subsets_of_phases_run():
    G = small_generator()
    seen = []
    result = restore(G, generated_target(G, 0), loss=mse, steps=(4,), lrs=(0.02,), spaces=("W+",),
                     callback=lambda info: seen.append((info.phase, info.step)), progress=False)
    assert seen == [("W+", i) for i in range(4)] and list(result.phases) == ["W+"]


def test_bad_arguments_get_clear_errors():
    G = small_generator()
    target = generated_target(G, 0)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        restore(G, target[0], loss=mse)
    with pytest.raises(ValueError, match="ordered subset"):
        restore(G, target, loss=mse, spaces=("W++", "W"), steps=(1, 1), lrs=(1, 1))
    with pytest.raises(ValueError, match="one step count"):
        restore(G, target, loss=mse, steps=(1, 1))
    with pytest.raises(ValueError, match="unknown optimizer"):
        restore(G, target, loss=mse, steps=(1, 1, 1), optimizer="sgd")


def test_generator_default_lr_scale_is_used_unless_overridden():
    G = small_generator()
    target = generated_target(G, seed=4)
    kw = dict(loss=mse, steps=(3, 3, 3), progress=False)
    explicit = restore(G, target, lr_scale=2.0, **kw).images
    paper = restore(G, target, **kw).images
    set_info(G, GeneratorInfo("scaled", "test", G.img_resolution, lr_scale=2.0))
    assert torch.equal(restore(G, target, **kw).images, explicit)
    assert torch.equal(restore(G, target, lr_scale=1.0, **kw).images, paper)
    assert not torch.equal(explicit, paper)


def test_render_resizes_to_the_working_resolution():
    G = small_generator(resolution=16)
    w = G.mapping.w_avg[None]
    with torch.no_grad():
        full = render(G, w)
        assert torch.allclose(render(G, w, resolution=8), F.avg_pool2d(full, 2), atol=1e-6)  # area
        assert torch.equal(render(G, w, resolution=32), full.repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_loss_as_data_is_built_around_the_degradation_and_time_is_measured():
    import time
    from rusir.inversion.presets import build_loss

    G = small_generator()
    target = generated_target(G, seed=5)
    kw = dict(steps=(2, 2, 2), progress=False)
    start = time.perf_counter()
    by_name = restore(G, target, loss="l2", **kw)
    elapsed = time.perf_counter() - start
    assert torch.equal(by_name.images, restore(G, target, loss=build_loss("l2"), **kw).images)
    assert 0 < by_name.seconds <= elapsed


def test_a_nan_loss_is_an_error_naming_the_phase_step_and_images():
    """A Python loss returning NaN: NGD took the NaN gradient as none and the untouched start
    image came back as the restoration, with no error."""
    from rusir.inversion.loop import NonFiniteLossError
    G = small_generator()
    target = generated_target(G, seed=1, batch=3)

    def half_broken(x, y, mask=None):
        value = mse(x, y)
        return torch.where(torch.arange(3) == 1, value * float("nan"), value)
    with pytest.raises(NonFiniteLossError, match=r"^W step 0: the loss is NaN or infinite for image\(s\) \[1\]"):
        restore(G, target, loss=half_broken, steps=(2, 2, 2), progress=False)
    calls = []

    def late_inf(x, y, mask=None):          # finite in W, infinite from the second step of W+
        calls.append(1)
        return mse(x, y) * (float("inf") if len(calls) > 3 else 1.0)
    with pytest.raises(ValueError, match=r"^W\+ step 1: the loss is NaN or infinite for image\(s\) \[0, 1, 2\]"):
        restore(G, target, loss=late_inf, steps=(2, 2, 2), progress=False)


def test_a_nan_gradient_of_a_finite_loss_is_an_error():
    """sqrt at 0 has an infinite slope: the loss is finite but its gradient NaN, which NGD
    used to read as "no gradient" (the latent did not move)."""
    from rusir.inversion.loop import NonFiniteLossError
    G = small_generator()
    target = generated_target(G, seed=1, batch=2)

    def kinked(x, y, mask=None):
        return mse(x, y) + 0 * (x - x).abs().sqrt().flatten(1).sum(1)
    with pytest.raises(NonFiniteLossError, match=r"^W step 0: the gradient of the loss is NaN or infinite for image\(s\) \[0, 1\]"):
        restore(G, target, loss=kinked, steps=(2, 2, 2), progress=False)


def test_integer_targets_are_refused():
    G = small_generator()
    with pytest.raises(ValueError, match="floating point"):
        restore(G, torch.zeros(1, 3, 16, 16, dtype=torch.uint8), loss=mse)


def test_ngd_options_reach_the_phase_and_bad_ones_are_refused():
    G = small_generator()
    target = generated_target(G, 0)
    kw = dict(loss=mse, steps=(3,), lrs=(0.02,), spaces=("W+",), progress=False)
    plain, anchored = restore(G, target, **kw), restore(G, target, ngd_options={"anchor": 0.5}, **kw)
    assert anchored.config["ngd_options"] == {"anchor": 0.5} and plain.config["ngd_options"] is None
    start = G.mapping.w_avg[None, None].expand_as(plain.latent)
    assert (anchored.latent - start).norm() < (plain.latent - start).norm()
    with pytest.raises(ValueError, match="unknown ngd_options"):
        restore(G, target, ngd_options={"momentum": 0.9}, **kw)
    with pytest.raises(ValueError, match="'ngd' only"):
        restore(G, target, optimizer="adam", ngd_options={"anchor": 0.1}, **kw)
    with pytest.raises(ValueError, match="anchor"):
        restore(G, target, ngd_options={"anchor": -1}, **kw)
