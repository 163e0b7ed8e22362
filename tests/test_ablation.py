"""rusir.studies.ablation: the design-choice variants as data, and running them."""
from __future__ import annotations

import pytest
import torch

from conftest import small_generator
from rusir.studies.ablation import (ADAM_LR_SCALES, CONFIGS, build_loss_for, configs, run_config,
                            run_configs, tuned)


def test_groups_and_budgets():
    assert [c.name for c in configs("phases")] == ["W", "W+", "W++", "W->W+", "W->W+->W++"]
    assert [c.name for c in configs("loss")] == ["multiresolution", "single scale"]
    assert [c.optimizer for c in configs("optimizer")] == ["ngd"] + ["adam"] * len(ADAM_LR_SCALES)
    assert len(configs()) == len(CONFIGS) == len(configs(["phases", "optimizer", "loss"]))
    for c in configs("phases"):              # the same total step budget for every phase subset
        kw = c.restore_kwargs(150)
        assert sum(kw["steps"]) == 450 and "lrs" not in kw  # each space's rate: restore's schedule
    assert CONFIGS["W->W+"].restore_kwargs(150)["steps"] == (225, 225)
    assert CONFIGS["W"].restore_kwargs(1)["steps"] == (3,)
    assert CONFIGS["Adam x0.1"].restore_kwargs(10)["lr_scale"] == 0.1
    with pytest.raises(ValueError, match="unknown ablation group"):
        configs("phase")


def test_loss_scales():
    G = small_generator()
    multi = build_loss_for(G, CONFIGS["multiresolution"], "offline")
    single = build_loss_for(G, CONFIGS["single scale"], "offline")
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    a, b = multi(x, y), single(x, y)
    assert a.shape == b.shape == (2,) and not torch.allclose(a, b)


def test_run_configs_shares_identical_variants():
    G = small_generator(resolution=32)
    truth = torch.rand(1, 3, 32, 32)
    chosen = [CONFIGS["W"], CONFIGS["W->W+->W++"], CONFIGS["NGD"], CONFIGS["single scale"]]
    out = list(run_configs(G, truth, "denoising", "S", chosen, steps=1, loss="offline"))
    assert [c.name for c, _ in out] == [c.name for c in chosen]
    runs = [r for _, r in out]
    assert runs[1] is runs[2] and runs[0] is not runs[1] and runs[3] is not runs[1]
    assert list(runs[0].result.phases) == ["W"] and len(runs[0].result.phases["W"].losses) == 3
    assert list(runs[3].result.phases) == ["W", "W+", "W++"]
    adam = run_config(G, truth, "denoising", "S", CONFIGS["Adam x0.3"], steps=1, loss="offline")
    assert not torch.equal(adam.result.images, runs[1].result.images)


def test_tuned_keeps_the_best_adam():
    rows = [{"config": "NGD", "psnr": 20.0}] + [
        {"config": f"Adam x{s:g}", "psnr": p} for s, p in zip(ADAM_LR_SCALES, (10.0, 25.0, 12.0, 11.0))
        for _ in range(2)]
    out = tuned(rows)
    assert [r["config"] for r in out] == ["NGD", "Adam (tuned)", "Adam (tuned)"]
    assert out[1]["adam_config"] == "Adam x0.03" and out[1]["psnr"] == 25.0
    assert tuned([{"config": "W", "psnr": 1.0}]) == [{"config": "W", "psnr": 1.0}]
