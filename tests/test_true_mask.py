"""The true Bernoulli (dead-pixel) mask for the baselines (issue 29): an option of denoising that
hands the mask the target was drawn with to the approximation; the benchmark gives it to the
methods that ask for it (PULSE, L-BRGM) and never to RUSIR."""
from __future__ import annotations

import warnings

import pytest
import torch

from conftest import mse, small_generator
from rusir import degradations
from rusir.baselines import METHODS
from rusir.degradations import cycle_8bit, expose_true_mask, exposes_true_mask
from rusir.engine import runner
from rusir.engine.records import load_records

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_approximation_multiplies_by_the_mask_the_target_was_drawn_with():
    x = 0.5 + 0.4 * torch.rand(2, 3, 16, 16)
    # 1e6 photons: the shot noise is ~1e-3, so the target is the dead pixels alone
    deg = degradations.make("denoising", "XL", seed=[5, 9], photons=1e6, true_mask=True)
    target = deg.degrade_ground_truth(x)
    keep = deg.known_keep_mask(2, 16, 16)                                 # [2, 1, 16, 16]
    assert 0.2 < keep.mean() < 0.5                                        # XL: p = 0.64
    assert torch.allclose(target, cycle_8bit(x * keep), atol=2.5 / 255)  # the target's own mask
    assert torch.allclose(deg.degrade_prediction(x), x * keep, atol=6e-3)  # known answer
    plain = degradations.make("denoising", "XL", seed=[5, 9], photons=1e6)
    assert torch.equal(plain.degrade_ground_truth(x), target)            # the option leaves targets alone
    redrawn = plain.degrade_prediction(x) == 0
    assert not torch.equal(redrawn.all(1, keepdim=True), keep == 0)       # without it: a fresh mask
    assert "true_mask" not in plain.describe() and deg.describe()["true_mask"] is True


def test_the_mask_must_come_from_this_objects_targets():
    deg = degradations.make("denoising", "M", seed=1, true_mask=True)
    with pytest.raises(ValueError, match="not known"):
        deg.degrade_prediction(torch.rand(1, 3, 8, 8))
    deg.degrade_ground_truth(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="px"):
        deg.degrade_prediction(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="True or False"):
        degradations.make("denoising", "M", true_mask="yes")


def test_a_composition_exposes_its_denoising_stage_only():
    comp = degradations.make("UNP", "M", seed=3)
    assert not exposes_true_mask(comp)
    assert expose_true_mask(comp) and exposes_true_mask(comp)
    x = torch.rand(1, 3, 64, 64)
    comp.degrade_ground_truth(x)
    h, w = comp.stages[0].target_shape(64, 64)                           # drawn after U
    keep = comp.stages[1].known_keep_mask(1, h, w)
    assert keep.shape == (1, 1, h, w) and h < 64
    pred = comp.degrade_prediction(x)                                    # uses it, no error
    assert pred.shape[-2:] == comp.target_shape(64, 64)
    assert not expose_true_mask(degradations.make("inpainting", "M"))   # no dead pixels: untouched


def test_the_benchmark_gives_the_mask_to_baselines_and_never_to_rusir(tmp_path):
    seen = {}

    def spy(name):
        def method(G, target, degradation=None, **options):
            seen[name] = exposes_true_mask(degradation)
            quick = {"rusir": dict(steps=(1, 1, 1)), "pulse": dict(steps=1, fit_samples=16)}[name]
            options.pop("steps", None)
            return METHODS[name](G, target, degradation, **{**options, **quick})
        method.run_options = getattr(METHODS[name], "run_options", ())
        method.wants_true_mask = getattr(METHODS[name], "wants_true_mask", False)
        return method

    assert METHODS["pulse"].wants_true_mask and METHODS["lbrgm"].wants_true_mask
    assert not getattr(METHODS["rusir"], "wants_true_mask", False)
    G = small_generator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.run_bench(G, "heldout:1", {"rusir": spy("rusir"), "pulse": spy("pulse")},
                         "NP@M", tmp_path / "on", steps=(1, 1, 1), loss=mse, metrics=("psnr",),
                         progress=False, fail_fast=True)
    assert seen == {"rusir": False, "pulse": True}
    recs = {r["method"]: r for r in load_records(tmp_path / "on")}
    assert recs["pulse"]["true_mask"] is True and recs["rusir"]["true_mask"] is False
    assert recs["pulse"]["degradation"]["stages"][0]["true_mask"] is True
    seen.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.run_bench(G, "heldout:1", {"pulse": spy("pulse")}, "NP@M", tmp_path / "off",
                         steps=(1, 1, 1), loss=mse, metrics=("psnr",), progress=False,
                         fail_fast=True, true_mask=False)
    assert seen == {"pulse": False}
    assert [r["true_mask"] for r in load_records(tmp_path / "off")] == [False]
