"""FLOPs of one RUSIR step per phase (torch.utils.flop_counter on the real graph), at 64 px."""
from __future__ import annotations

import pytest
import torch

from rusir.degradations import make
from rusir.inversion.flops import step_flops
from rusir.inversion.presets import build_loss
from rusir.model.stylegan2 import Generator

pytestmark = pytest.mark.usefixtures("one_thread")

LPIPS = {"terms": {"lpips_vgg": 1.0}, "options": {"lpips_vgg": {"_allow_random_backbone_for_tests": True}}}


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    G = Generator(32, 0, 32, 64, 3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=1024, channel_max=32)).eval().requires_grad_(False)
    return G, build_loss(LPIPS), make("denoising", "M", seed=0)


def test_counts_are_positive_and_ordered_by_phase(setup):
    G, loss, deg = setup
    target = deg.degrade_ground_truth(torch.rand(1, 3, 64, 64))
    counts = {s: step_flops(G, target, deg, loss, s) for s in ("W", "W+", "W++")}
    for c in counts.values():
        assert c["synthesis"] > 0 and c["loss"] > 0
        assert c["step"] == pytest.approx(c["synthesis"] + c["loss"], rel=1e-6)
    syn = [counts[s]["synthesis"] for s in ("W", "W+", "W++")]
    assert syn[0] <= syn[1] < syn[2]              # W++: per-filter styles and weight gradients
    assert counts["W"]["loss"] == counts["W++"]["loss"]
    # the cached target: the loss counts x's VGG pass and its backward, not y's pass
    uncached = step_flops(G, target, deg, loss, "W", cache_target=False)["loss"]
    assert counts["W"]["loss"] < uncached < 2 * counts["W"]["loss"]


@pytest.mark.parametrize("space", ["W", "W+", "W++"])
def test_twice_the_batch_is_twice_the_flops(setup, space):
    G, loss, deg = setup
    target = deg.degrade_ground_truth(torch.rand(2, 3, 64, 64))
    one = step_flops(G, target[:1], make("denoising", "M", seed=0), loss, space)
    two = step_flops(G, target, deg, loss, space)
    assert two == {k: 2 * v for k, v in one.items()}
    if space != "W++":                            # counted as a batch, without the per-image rule
        raw = step_flops(G, target, deg, loss, space, per_image=False)
        assert raw["step"] == pytest.approx(two["step"], rel=1e-9)
