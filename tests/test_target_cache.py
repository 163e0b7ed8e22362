"""The loss's target side is computed once per restore, and caching it changes nothing.

`MultiResolutionLoss` caches its target side (masked and pooled targets, masks, each term's
`target(y)`: LPIPS features, Sobel maps). Every task's restore must give the same images and
losses with the cache as without (bit for bit: the same operations on the same values), the
cache must actually be used (the target side computed once), and it must notice a target
edited in place or another mask.
"""
from __future__ import annotations

import pytest
import torch

from rusir.degradations import make
from rusir.inversion.losses import LPIPSTerm, MultiResolutionLoss
from rusir.inversion.presets import build_loss
from rusir.inversion.restore import restore

from conftest import procedural_images, small_generator

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 32
TASKS = ["upsampling", "denoising", "deartifacting", "inpainting", "UNAP", "NA+P"]
LPIPS = {"terms": {"lpips_vgg": 1.0, "l2": 0.5, "grad": 0.1},
         "options": {"lpips_vgg": {"_allow_random_backbone_for_tests": True}}}


def _degradation(task):
    if task == "NA+P":   # a composition whose last stage masks: the cached mask is resized each step
        return make("NAP", "M", seed=0)
    return make(task, "M", seed=0)


def _loss(spec, deg):
    with torch.random.fork_rng():   # the same random backbone for both runs
        torch.manual_seed(0)
        return build_loss(spec, degradation_fn=deg)


@pytest.mark.parametrize("preset", ["offline", "lpips"])
@pytest.mark.parametrize("task", TASKS)
def test_cached_restore_equals_uncached(task, preset):
    G = small_generator(resolution=SIDE)
    clean = procedural_images(2, SIDE, seed=5)
    spec = "offline" if preset == "offline" else LPIPS
    runs = {}
    for cache in (True, False):
        deg = _degradation(task)
        out = restore(G, deg.degrade_ground_truth(clean), deg, loss=_loss(spec, deg),
                      steps=(1, 1, 1), lrs=(0.08, 0.02, 0.02), cache_target=cache, progress=False)
        runs[cache] = out.images, torch.stack([torch.stack(p.losses) for p in out.phases.values()])
    assert torch.equal(runs[True][0], runs[False][0]), "images"
    assert torch.equal(runs[True][1], runs[False][1]), "losses"


def _counting_lpips():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        term = LPIPSTerm("vgg", _allow_random_backbone_for_tests=True)
    calls = []
    original = term.target
    term.target = lambda y: calls.append(y.shape) or original(y)
    return MultiResolutionLoss(term), calls


def test_unmasked_target_features_are_computed_once():
    loss, calls = _counting_lpips()
    y, x = procedural_images(2, 64, seed=1), procedural_images(2, 64, seed=2)
    first = loss(x, y)
    assert len(calls) == 4                   # x and y, at 64 and 32 px
    calls.clear()
    for _ in range(3):
        assert torch.equal(loss(x, y), first)
    assert len(calls) == 3 * 2               # only x's features, at 64 and 32 px: y is cached
    loss.cache_target = False
    calls.clear()
    assert torch.equal(loss(x, y), first)
    assert len(calls) == 4                   # x and y at both levels


def test_masked_noise_filled_target_is_recomputed_but_equal():
    """Under a mask LPIPS sees y + fresh noise: its features cannot be cached (recomputed at
    every call), and the result still equals the uncached loss, call by call."""
    deg = make("inpainting", "M", seed=0)
    y = deg.degrade_ground_truth(procedural_images(2, 64, seed=1))
    x = procedural_images(2, 64, seed=2)
    cached, calls = _counting_lpips()
    plain, _ = _counting_lpips()
    plain.cache_target = False
    for _ in range(3):
        calls.clear()
        assert torch.equal(cached(x, y, deg.mask), plain(x, y, deg.mask))
        assert len(calls) == 4               # x + n and y + n at both levels


def test_cache_notices_edits_and_other_masks():
    """A changed target or mask VALUE (edited in place, or another tensor of the same shape)
    is never served from the cache; the reference is computed without any cache."""
    loss = build_loss("offline")
    fresh = build_loss("offline")
    fresh.cache_target = False
    y, x = procedural_images(2, 32, seed=1), procedural_images(2, 32, seed=2)
    before = loss(x, y)
    y.mul_(0.5)                              # in place: the version changes
    assert torch.equal(loss(x, y), fresh(x, y)) and not torch.equal(loss(x, y), before)
    mask = torch.ones(2, 1, 32, 32)
    mask[:, :, :8] = 0
    first = loss(x, y, mask)
    assert torch.equal(first, fresh(x, y, mask))
    other = mask.clone()
    other[:, :, -8:] = 0                     # same shape, other values
    assert torch.equal(loss(x, y, other), fresh(x, y, other))
    assert not torch.equal(fresh(x, y, other), first)
    other[:, :, 8:16] = 0                    # the same mask object, edited in place
    assert torch.equal(loss(x, y, other), fresh(x, y, other))
    with torch.autocast("cpu", dtype=torch.bfloat16):   # autocast is part of the key
        assert torch.equal(loss(x, y, other), fresh(x, y, other))
    loss.clear_target_cache()
    assert loss.pyramid._cached is None


@pytest.mark.parametrize("net", ["vgg", "squeeze"])
def test_split_lpips_is_the_packages_forward(net):
    """target(y) + compare(x, .) is lpips.LPIPS.forward cut in two: bit for bit."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        term = LPIPSTerm(net, _allow_random_backbone_for_tests=True)
    x, y = procedural_images(2, 48, seed=1), procedural_images(2, 48, seed=2)
    whole = term.model(x, y, normalize=True).reshape(2)
    assert torch.equal(term.compare(x, term.target(y)), whole)
    assert torch.equal(term(x, y), whole)
