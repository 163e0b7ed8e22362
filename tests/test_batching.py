"""restore(..., batch_size=n): chunks of a batch give the batch's images; "auto" stays inside the
free memory; an out-of-memory error names a batch size that fits.

Chunk k must see what its images see in the whole batch: their per-image degradation seeds
(masks, approximation noise streams) and the loss's shared noise draws. Checked in float64,
where batched kernels' rounding (~1e-16) cannot hide a coupling; in float32 NGD amplifies the
~1e-6 rounding differences of batched kernels (docs/method.md, "Batching").
"""
from __future__ import annotations

import pytest
import torch

import rusir.inversion.batching as batching
import rusir.inversion.restore as restore_module
from rusir.degradations import Inpainting, make
from rusir.inversion.presets import build_loss
from rusir.inversion.restore import restore
from rusir.model.family import wpp_filters

from conftest import procedural_images, small_generator

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 32
# every random draw of the loop: hole fill of LPIPS under a mask, the consistency term's noise
# and the degradation's fresh approximation noise inside it
LOSS = {"terms": {"l2": 1.0, "lpips_squeeze": 0.1, "consistency": 0.1},
        "options": {"lpips_squeeze": {"_allow_random_backbone_for_tests": True}}}


@pytest.fixture(scope="module")
def setup64():
    return small_generator(resolution=SIDE).double(), procedural_images(5, SIDE, seed=3).double()


def _run(G, clean, deg, **kw):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        loss = build_loss(LOSS, degradation_fn=deg).double()
    out = restore(G, deg.degrade_ground_truth(clean), deg, loss=loss, steps=(2, 2, 2),
                  lrs=(0.08, 0.02, 0.02), progress=False, seed=7, **kw)
    return out, torch.stack([torch.stack(p.losses) for p in out.phases.values()])


@pytest.mark.parametrize("task", ["upsampling", "denoising", "inpainting", "UNAP", "NP"])
def test_chunked_equals_one_batch_float64(task, setup64):
    """Batch of 5 in chunks of 2 (2 + 2 + 1) vs one batch: <= 1e-9 (measured 8e-16 to 2.2e-13)."""
    G, clean = setup64
    whole, lw = _run(G, clean, make(task, "M", seed=0))
    chunked, lc = _run(G, clean, make(task, "M", seed=0), batch_size=2)
    assert chunked.info["batch_size"] == 2 and whole.info["batch_size"] == 5
    assert (chunked.images - whole.images).abs().max() <= 1e-9
    assert torch.allclose(lc, lw, rtol=1e-9, atol=0)
    for space in whole.phases:
        assert (chunked.phases[space].latent - whole.phases[space].latent).abs().max() <= 1e-9


def test_chunks_of_a_user_mask_and_seed_list(setup64):
    G, clean = setup64
    masks = torch.ones(5, 1, SIDE, SIDE)
    for i in range(5):
        masks[i, :, 4 * i:4 * i + 6] = 0                       # a different hole per image
    whole, _ = _run(G, clean, Inpainting.from_mask(masks))
    chunked, _ = _run(G, clean, Inpainting.from_mask(masks), batch_size=3)
    assert (chunked.images - whole.images).abs().max() <= 1e-9
    seeds = [11, 4, 4, 9, 2]
    whole, _ = _run(G, clean, make("denoising", "M", seed=seeds))
    chunked, _ = _run(G, clean, make("denoising", "M", seed=seeds), batch_size=2)
    assert (chunked.images - whole.images).abs().max() <= 1e-9


def test_chunks_of_a_given_start_latent_take_their_own_rows(setup64):
    """init [5, ...] (one start per image) split with the batch: chunks == one batch."""
    G, clean = setup64
    from rusir.inversion.latents import init_w
    w = init_w(G, 5)
    init = w + 0.3 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1), dtype=w.dtype)
    whole, _ = _run(G, clean, make("denoising", "M", seed=0), init=init)
    chunked, _ = _run(G, clean, make("denoising", "M", seed=0), init=init, batch_size=2)
    assert whole.info["init"] == "given" and (chunked.images - whole.images).abs().max() <= 1e-9


def test_batch_size_is_checked_and_recorded(setup64):
    G, clean = setup64
    for bad in (0, -1, 1.5, "big", True):
        with pytest.raises(ValueError, match="batch_size"):
            restore(G, clean, batch_size=bad, loss="l2", steps=(0, 0, 1), progress=False)

    class Blur:                                                 # not a rusir Degradation
        def degrade_prediction(self, x):
            return x
    with pytest.raises(ValueError, match="rusir Degradation"):
        restore(G, clean, Blur(), loss="l2", steps=(0, 0, 1), batch_size=2, progress=False)
    out = restore(G, clean, Blur(), loss="l2", steps=(0, 0, 1), batch_size=8, progress=False)
    assert out.config["batch_size"] == 8 and out.info["batch_size"] == 5
    auto = restore(G, clean, loss="l2", steps=(0, 0, 1), batch_size="auto", progress=False)
    assert auto.info["batch_size"] == 5                         # the CPU: the whole batch


def test_a_chunk_that_is_the_whole_batch_is_the_degradation_itself():
    """No copy when nothing is split (the common case, batch_size >= batch); a real part is a
    copy with its images' seeds."""
    deg = make("denoising", "M", seed=[4, 5, 6])
    assert batching.chunk_degradation(deg, 0, 3, 3) is deg
    part = batching.chunk_degradation(deg, 1, 3, 3)
    assert part is not deg and part.seeds_for(2) == deg.seeds_for(3)[1:]


def test_a_step_that_costs_nothing_per_image_takes_the_whole_batch_if_the_rest_fits():
    assert batching.fit_batch_size(5, free=100, fixed=100, per_image=0, safety=1.0) == 5
    assert batching.fit_batch_size(5, free=100, fixed=101, per_image=0, safety=1.0) == 0


# --- "auto": the largest chunk inside the measured budget --------------------------------------

@pytest.mark.parametrize("free_gib,fixed_gib,per_image_gib", [
    (16, 1.0, 2.5), (16, 0.3, 0.7), (80, 2.0, 9.0), (24, 0.0, 20.0), (141, 3.1, 5.3)])
def test_auto_never_exceeds_the_measured_budget(monkeypatch, free_gib, fixed_gib, per_image_gib):
    gib = 2 ** 30
    measured = []

    def step_memory(n):                                         # the cost one W++ step would measure
        measured.append(n)
        return int((fixed_gib + per_image_gib * n) * gib)

    monkeypatch.setattr(batching, "free_memory", lambda device: int(free_gib * gib))
    n = batching.auto_batch_size(64, torch.device("cuda"), step_memory)
    budget = batching.SAFETY * free_gib * gib
    assert measured == [1, 2]
    assert 1 <= n <= 64 and step_memory(n) <= budget
    assert n == 64 or step_memory(n + 1) > budget               # and the largest that fits


def test_auto_in_restore_uses_the_mocked_reading(monkeypatch, setup64):
    G, clean = setup64
    gib = 2 ** 30
    monkeypatch.setattr(batching, "free_memory", lambda device: 10 * gib)
    monkeypatch.setattr(restore_module, "_step_memory",
                        lambda G, problem, config, wrap, n: int((1 + 3 * n) * gib))
    out = restore(G, clean, loss="l2", steps=(1, 1, 1), batch_size="auto", progress=False)
    assert out.info["batch_size"] == 2                          # 1 + 3 * 2 = 7 <= 9 < 10
    with pytest.raises(torch.OutOfMemoryError, match="one image needs"):
        monkeypatch.setattr(batching, "free_memory", lambda device: 2 * gib)
        restore(G, clean, loss="l2", steps=(1, 1, 1), batch_size="auto", progress=False)


def test_auto_counts_the_latents_the_stop_keeps(monkeypatch, setup64):
    """With the discrepancy stop on, each image holds STOP_WINDOW W++ latents for iterate
    averaging: "auto" must budget them, or it plans a chunk that cannot fit (issue 26)."""
    G, clean = setup64                                          # float64: 8 bytes per value
    per_image = restore_module.STOP_WINDOW * G.num_ws * wpp_filters(G) * G.w_dim * 8
    monkeypatch.setattr(batching, "free_memory", lambda device: int(2.5 * per_image / batching.SAFETY))
    monkeypatch.setattr(restore_module, "_step_memory", lambda G, problem, config, wrap, n: n)
    deg = make("denoising", "M", seed=1)
    target = deg.degrade_ground_truth(clean)
    kept = restore(G, target, deg, loss="l2", steps=(1, 1, 1), batch_size="auto", discrepancy=1.05,
                   progress=False)
    free = restore(G, target, deg, loss="l2", steps=(1, 1, 1), batch_size="auto", discrepancy=None,
                   progress=False)
    assert kept.info["batch_size"] == 2                         # 2.5 images' latents: 2 fit
    assert free.info["batch_size"] == 5                         # without the stop nothing is kept


# --- out of memory -----------------------------------------------------------------------------

@pytest.mark.parametrize("limit", [1, 3])
def test_out_of_memory_names_a_batch_size_that_fits(monkeypatch, setup64, limit):
    """A mock device on which more than `limit` images at a time run out of memory."""
    G, clean = setup64
    real = restore_module.render_degraded

    def render_degraded(G, latent, degradation, resolution=None):
        if latent.shape[0] > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(G, latent, degradation, resolution)

    monkeypatch.setattr(restore_module, "render_degraded", render_degraded)
    deg = make("inpainting", "M", seed=0)
    target = deg.degrade_ground_truth(clean)
    with pytest.raises(torch.OutOfMemoryError, match=rf"batch_size={limit}\)? fits") as err:
        restore(G, target, deg, loss="l2", steps=(1, 1, 1), progress=False)
    assert "5 images at a time" in str(err.value)
    out = restore(G, target, deg, loss="l2", steps=(1, 1, 1), progress=False, batch_size=limit)
    assert out.images.shape[0] == 5


def test_out_of_memory_with_not_one_image(monkeypatch, setup64):
    G, clean = setup64

    def render_degraded(*args, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(restore_module, "render_degraded", render_degraded)
    with pytest.raises(torch.OutOfMemoryError, match="not even one image fits"):
        restore(G, clean, make("denoising", "M"), loss="l2", steps=(1, 1, 1), progress=False)


# --- the command line --------------------------------------------------------------------------

def test_restore_files_in_batches(tmp_path):
    from rusir.degradations.base import to_pil
    from rusir.restore_files import restore_files

    files = []
    for i, img in enumerate(procedural_images(3, 64, seed=9)):
        files.append(tmp_path / f"face{i}.png")
        to_pil(img).save(files[-1])
    kw = dict(steps=(1, 1, 1), simulate=True, device="cpu")
    one = restore_files(files, "denoising", out=tmp_path / "one", **kw)
    two = restore_files(files, "denoising", out=tmp_path / "two", files_per_call=2, **kw)
    assert [p.name for p in one.values()] == [p.name for p in two.values()]
    for path in files:                        # every output written, latents one image each
        latent = torch.load(tmp_path / "two" / f"{path.stem}_latent.pt")
        assert latent["W++"].shape[0] == 1 and (tmp_path / "two" / f"{path.stem}_phases.png").is_file()
        w = latent["W++"]                     # its own latent, not the whole group's storage
        assert w.untyped_storage().nbytes() == w.numel() * w.element_size()
    with pytest.raises(ValueError, match="files per call"):
        restore_files(files, "denoising", out=tmp_path / "bad", files_per_call=0, **kw)
    with pytest.raises(ValueError, match="does not apply with --align"):
        restore_files(files, "denoising", out=tmp_path / "bad", files_per_call=2, align=True,
                      steps=(1, 1, 1), device="cpu")


def test_cli_refuses_a_bad_files_per_call(tmp_path, capsys):
    from rusir.cli import main

    assert main(["restore", "x.png", "--task", "denoising", "--files-per-call", "0"]) == 2
    assert "--files-per-call: a batch size (or 'auto') must be a whole number >= 1" in capsys.readouterr().err


def test_restore_batch_size_is_a_deprecated_name_of_files_per_call(tmp_path, monkeypatch, capsys):
    """`rusir restore --batch-size` still works, with a warning; both names at once are refused."""
    import rusir.restore_files as rf
    from rusir.cli import main

    seen = {}
    monkeypatch.setattr(rf, "restore_files", lambda *a, **kw: seen.update(kw) or {})
    assert main(["restore", "x.png", "--task", "denoising", "--batch-size", "3"]) == 0
    assert seen["files_per_call"] == 3 and "deprecated" in capsys.readouterr().err
    assert main(["restore", "x.png", "--task", "denoising", "--files-per-call", "auto"]) == 0
    assert seen["files_per_call"] == "auto" and "deprecated" not in capsys.readouterr().err
    assert main(["restore", "x.png", "--task", "denoising", "--batch-size", "2", "--files-per-call", "2"]) == 2
    assert "give --files-per-call only" in capsys.readouterr().err


def test_restore_files_passes_the_seed_to_restore(tmp_path, monkeypatch):
    """File i of a group restores with seed + i, as it would alone (the loss's noise follows it)."""
    import rusir.restore_files as rf
    from rusir.degradations.base import to_pil

    files = []
    for i, img in enumerate(procedural_images(3, 64, seed=9)):
        files.append(tmp_path / f"face{i}.png")
        to_pil(img).save(files[-1])
    seeds, real = [], rf.restore
    monkeypatch.setattr(rf, "restore", lambda *a, **kw: seeds.append(kw["seed"]) or real(*a, **kw))
    rf.restore_files(files, "denoising", out=tmp_path / "o", files_per_call=2, seed=5, steps=(1, 1, 1),
                     simulate=True, device="cpu")
    assert seeds == [5, 7]
