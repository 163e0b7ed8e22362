"""rusir.inversion.discrepancy: stop an image at its target's noise level (issue 20)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import small_generator
from rusir import degradations, restore
from rusir.degradations.base import cycle_8bit
from rusir.inversion.discrepancy import DiscrepancyStop, check_tau, noise_floor
from rusir.inversion.presets import build_loss
from rusir.model.generators import REGISTRY, GeneratorInfo, set_info


def l1(x, y, mask=None):
    return (x - y).abs().mean(dim=(1, 2, 3))


def image(n=2, side=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return cycle_8bit(torch.rand(n, 3, side, side, generator=g))


# ------------------------------------------------------------------------------------ redraw
def test_redraw_draws_the_noise_again_and_keeps_what_is_known():
    x = image()
    noisy = degradations.make("denoising", "M", seed=3)
    y = noisy.degrade_ground_truth(x)
    a, b = noisy.redraw(x, 0), noisy.redraw(x, 1)
    assert not torch.equal(a, y) and not torch.equal(a, b)
    assert torch.equal(a, noisy.redraw(x, 0))                       # seeded: repeatable
    assert torch.equal(y, noisy.degrade_ground_truth(x))            # the target's stream untouched
    for task in ("inpainting", "deartifacting"):                    # nothing random but the known
        deg = degradations.make(task, "M", seed=3)
        assert torch.equal(deg.redraw(x, 5), deg.degrade_ground_truth(x)), task
    unap = degradations.make("UNAP", "M", seed=3)
    big = image(side=64)
    target, again = unap.degrade_ground_truth(big), unap.redraw(big, 2)
    holes = unap.mask[:, 0] == 0                                    # the same mask, the noise anew
    assert holes.any() and (target.amax(1)[holes] == 0).all() and (again.amax(1)[holes] == 0).all()
    assert not torch.equal(target, again)


def test_floor_at_the_truth_is_what_the_truth_scores_against_its_targets():
    """In expectation floor(x) is the loss of x's approximation against x's own true degradation,
    which is what the truth scores against a target; and an 8-bit image is its own identity."""
    x = image(n=1)
    deg = degradations.make("denoising", "M", seed=0)
    loss = build_loss("offline")
    floors, truths = [], []
    for k in range(40):
        approx = deg.degrade_prediction(x)
        floors.append(noise_floor(loss, deg, x, approx, None, k))
        target = degradations.make("denoising", "M", seed=100 + k).degrade_ground_truth(x)
        truths.append(loss(deg.degrade_prediction(x), target))
    floor, truth = torch.cat(floors).mean(), torch.cat(truths).mean()
    assert floor == pytest.approx(truth.item(), rel=0.05)
    identity = degradations.make("identity", None)
    assert noise_floor(loss, identity, x, x, None, 0).item() == 0


def test_each_floor_estimate_is_a_fresh_redraw():
    """The k-th estimate of a stop uses redraw k of the true degradation: one redraw reused
    would average the same noise `samples` times and hide the floor's spread."""
    from rusir.inversion.loop import Rendered
    x = image(n=2)
    deg = degradations.make("denoising", "M", seed=[3, 4])
    loss = build_loss("offline")
    stop = DiscrepancyStop(1.0, loss, deg, batch=2, every=1, window=1)
    rendered = Rendered(x, deg.degrade_prediction(x), None)
    floors = []
    for step in range(4):
        assert stop.due(step)
        floors.append(stop.estimate(rendered))
        stop.observe("W", step, torch.zeros(2), floors[-1])
    for k, floor in enumerate(floors):
        assert torch.equal(floor, noise_floor(loss, deg, x, rendered.degraded, None, k)), k
    assert len({tuple(f.tolist()) for f in floors}) == len(floors)


def test_the_floor_leaves_the_losss_target_cache_alone():
    """The floor's fresh draw is scored with the cache off: the restore's cached target side
    stays (no recomputation after every estimate) and the cache is back on afterwards."""
    x = image(n=2)
    deg = degradations.make("denoising", "M", seed=[3, 4])
    loss = build_loss("offline")
    y = deg.degrade_ground_truth(x)
    loss(deg.degrade_prediction(x), y)
    cached = loss.pyramid._cached
    assert cached is not None and cached.y is y
    noise_floor(loss, deg, x, deg.degrade_prediction(x), None, 0)
    assert loss.pyramid._cached is cached and loss.cache_target is True


# ----------------------------------------------------------------------------------- the rule
def test_an_image_stops_when_its_mean_loss_reaches_tau_times_the_floor():
    stop = DiscrepancyStop(1.0, l1, None, batch=2, every=10, window=10)
    floor = torch.tensor([0.1, 0.1])
    losses = [torch.tensor([0.30 - 0.01 * t, 0.5]) for t in range(40)]
    for t in range(20):                                   # W: recorded, never stopped
        assert not stop.observe("W", t, losses[t], floor if stop.due(t) else None).any()
    assert stop.stopped == [None, None]
    for t in range(20, 40):
        new = stop.observe("W+", t - 20, losses[t], floor if stop.due(t - 20) else None)
        window = sum(v[0].item() for v in losses[t - 9:t + 1]) / 10
        assert bool(new[0]) == (window <= 0.1 and stop.stopped[0] == f"W+:{t - 20}")
    # image 0: mean of the last 10 losses is 0.30 - 0.01 (t - 4.5) <= 0.1 first at t = 25
    assert stop.stopped == ["W+:5", None] and not stop.all_done


def test_the_floor_is_the_mean_of_the_last_estimates():
    """One estimate and one loss per step. Image 0: 0.25 is above mean(0.3, 0.1, 0.1) = 0.167 at
    step 2 (the largest estimate, 0.3, would stop it), 0.16 above 0.1 at step 3 (the 0.3 has left
    the last three), 0.1 stops it at step 4; image 1 stops at step 2 (0.16 <= 0.167)."""
    stop = DiscrepancyStop(1.0, l1, None, batch=2, every=1, window=1, samples=3)
    floors = [0.3, 0.1, 0.1, 0.1, 0.1]
    losses = [(0.5, 0.5), (0.5, 0.5), (0.25, 0.16), (0.16, 0.5), (0.1, 0.5)]
    news = [stop.observe("W+", k, torch.tensor(v), torch.tensor([f, f])).tolist()
            for k, (f, v) in enumerate(zip(floors, losses))]
    assert news == [[False, False], [False, False], [False, True], [False, False], [True, False]]
    assert stop.stopped == ["W+:4", "W+:2"]


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "1", True])
def test_bad_tau_is_refused(value):
    with pytest.raises(ValueError, match="discrepancy"):
        check_tau(value)
    assert check_tau(None) is None and check_tau(0) is None and check_tau(1.2) == 1.2


# ------------------------------------------------------------------------------------ restore
def noisy_problem(batch=2, seed=0, dtype=torch.float32):
    G = small_generator(seed=seed).to(dtype)
    with torch.no_grad():
        clean = (G(torch.randn(batch, G.z_dim, dtype=dtype), None).clamp(-1, 1) + 1) / 2
    deg = degradations.make("denoising", "XL", seed=7)
    return G, deg.degrade_ground_truth(cycle_8bit(clean)), deg


KW = dict(steps=(12, 8, 8), lrs=(0.05, 0.05, 0.05), progress=False, loss="offline")


def test_a_stopped_image_keeps_its_latent_and_the_restore_ends_when_all_stop(averaging):
    """Both images stop at W+'s first step, with the mean of the judged window (W's last 9
    iterates and W+'s first, the same latent lifted), and keep it through W++."""
    from rusir.inversion.latents import convert
    G, target, deg = noisy_problem(dtype=torch.float64)
    result = restore(G, target, deg, discrepancy=1e6, **KW)      # every image: first judged step
    assert result.info["stopped"] == ["W+:0", "W+:0"]
    assert [len(p.losses) for p in result.phases.values()] == [12, 1, 0]
    w, w_plus = averaging[0].kept[:2]
    mean = torch.stack([convert(x, "W+", G) for x in w[-9:]] + w_plus[:1]).mean(0)
    assert torch.allclose(result.phases["W+"].latent, mean, atol=1e-12)
    assert torch.allclose(result.images, result.phases["W+"].images, atol=1e-9)


class Shifted:
    """A degradation whose approximation is the identity and whose true side adds `c[draw]`
    (one row of per-image offsets per floor estimate): under an L1 loss the floor estimates are
    exactly those offsets, so where a restore stops is known in advance."""
    mask = None

    def __init__(self, c: torch.Tensor):
        self.c = c                                                     # [draws, B]

    def degrade_prediction(self, x):
        return x

    def redraw(self, x, draw=0):
        return x + self.c[min(draw, len(self.c) - 1)].view(-1, 1, 1, 1).to(x)


def forced(average: bool):
    """DiscrepancyStop as restore makes it, with averaging forced on or off and no settling
    (full steps up to the stop: the stop steps these tests expect)."""
    return lambda *args, **kw: DiscrepancyStop(*args, **{**kw, "average": average, "settle": None})


@pytest.fixture
def last_iterate(monkeypatch):
    """restore's stop without iterate averaging: a stopped image keeps its last iterate."""
    import rusir.inversion.restore as module
    monkeypatch.setattr(module, "DiscrepancyStop", forced(False))


def test_a_restore_stops_at_the_mean_of_its_recent_floors(last_iterate):
    """Estimates at W 0, W 10, W+ 0, W++ 0. Image 0's mean loss over its last 10 steps is 0.261 at
    W++ step 5 and 0.2515 at step 6: it stops at step 6 against the mean of its last three
    estimates (0.265, 0.25, 0.25: 0.255; their largest would stop it a step early), keeping that
    step's image while image 1 (estimates 0.2) runs every step."""
    G, target, _ = noisy_problem(dtype=torch.float64)
    c = torch.tensor([[0.2, 0.2], [0.265, 0.2], [0.25, 0.2], [0.25, 0.2]], dtype=torch.float64)
    seen = {}
    result = restore(G, target, Shifted(c), discrepancy=1.0, callback=lambda info: seen.update(
        {(info.phase, info.step): info.images.clone()}), **{**KW, "loss": l1})
    assert result.info["stopped"] == ["W++:6", None]
    assert torch.allclose(result.images[0], seen["W++", 6][0], atol=1e-9)
    assert len(seen) == 12 + 8 + 8


def test_a_recording_replays_what_a_restore_with_the_stop_does(last_iterate):
    """A restore that estimates floors and stops nothing (tau 1e-9) reports, per step, the loss
    and floor its stop judges (`StepInfo`): fed to a `DiscrepancyStop`, they end each image where
    a real restore with that tau does, with the same images (without iterate averaging: a
    recording keeps predictions, not the latents a mean needs). The retired stop-rule studies
    (docs/retired-studies.md) replayed rules this way."""
    G, target, _ = noisy_problem(dtype=torch.float64)
    c = torch.tensor([[0.2, 0.2], [0.265, 0.2], [0.25, 0.2], [0.25, 0.2]], dtype=torch.float64)
    kw = {**KW, "loss": l1}
    steps = []                                           # (phase, step, loss [B], floor, images)
    restore(G, target, Shifted(c), discrepancy=1e-9, callback=lambda info: steps.append(
        (info.phase, info.step, info.loss, info.floor, info.images.detach().clone())), **kw)
    for tau in (1.0, 1e6):
        stop = DiscrepancyStop(tau, None, None, 2)
        ended = [None, None]                             # image i: the step its stop ends it at
        for phase, step, loss, floor, images in steps:
            for i in torch.nonzero(stop.observe(phase, step, loss, floor)).flatten().tolist():
                ended[i] = (f"{phase}:{step}", images[i])
        real = restore(G, target, Shifted(c), discrepancy=tau, **kw)
        assert real.info["stopped"] == [e and e[0] for e in ended] and any(ended)
        for i, e in enumerate(ended):
            if e is not None:
                assert torch.allclose(real.images[i], e[1], atol=1e-9)


def test_a_floor_that_is_never_reached_changes_nothing():
    """Estimating the floor draws nothing from the run's streams: bit-identical to no stop."""
    G, target, deg = noisy_problem()
    off = restore(G, target, degradations.make("denoising", "XL", seed=7), discrepancy=0, **KW)
    never = restore(G, target, deg, discrepancy=1e-9, **KW)
    assert never.info["stopped"] == [None, None] and off.config["discrepancy"] is None
    assert torch.equal(off.images, never.images)
    assert all(torch.equal(a, b) for a, b in zip(off.phases["W++"].losses, never.phases["W++"].losses))


def assert_stops_per_image(tau: float, stopped=None) -> None:
    """Three images restored as one batch, in chunks of 2 and alone stop at the same steps with
    the same images (float64): no image's stop depends on the others."""
    G, target, _ = noisy_problem(batch=3, dtype=torch.float64)
    def run(idx, **kw):
        deg = degradations.make("denoising", "XL", seed=[7 + i for i in idx])
        return restore(G, target[idx], deg, discrepancy=tau, **KW, **kw)
    batch, chunked = run([0, 1, 2]), run([0, 1, 2], batch_size=2)
    if stopped is not None:
        assert batch.info["stopped"] == stopped
    assert batch.info["stopped"] == chunked.info["stopped"]
    assert torch.allclose(batch.images, chunked.images, atol=1e-9)
    for i in range(3):
        alone = run([i])
        assert alone.info["stopped"] == [batch.info["stopped"][i]]
        assert torch.allclose(alone.images, batch.images[i:i + 1], atol=1e-9)


def test_stops_are_per_image_batched_chunked_or_alone():
    assert_stops_per_image(1.3)


def test_a_stopped_image_stops_at_once_while_the_rest_of_its_batch_goes_on(monkeypatch):
    """Batched runs (--batch, multi-file restores, the robustness batch of 16) must keep each
    image's stop: a stopped image's latent is frozen from its stop on, as if it ran alone.
    (Averaging off, so that the frozen latent is W's last one; averaged: the tests below.)"""
    import rusir.inversion.restore as module
    monkeypatch.setattr(module, "DiscrepancyStop", forced(False))
    G, target, _ = noisy_problem(batch=3, dtype=torch.float64)

    def run(idx):
        deg = degradations.make("denoising", "XL", seed=[7 + i for i in idx])
        return restore(G, target[idx], deg, discrepancy=1.1, **KW)
    batch = run([0, 1, 2])
    stopped = batch.info["stopped"]
    assert None in stopped and any(stopped)          # some stop, some run every step
    assert len(batch.phases["W++"].losses) == KW["steps"][2]
    for i, where in enumerate(stopped):
        if where is None:
            continue
        phase, step = where.split(":")
        assert phase == "W+" and step == "0"         # frozen at W's last latent from then on
        for later in ("W+", "W++"):
            assert torch.allclose(batch.phases[later].images[i], batch.phases["W"].images[i],
                                  atol=1e-9)
        alone = run([i])
        assert alone.info["stopped"] == [where]
        assert torch.allclose(alone.images, batch.images[i:i + 1], atol=1e-9)


# ------------------------------------------------------------- iterate averaging (Round 3b)
def test_a_stop_that_averages_gives_newly_done_images_the_mean_of_the_window():
    stop = DiscrepancyStop(1.0, l1, None, batch=2, every=1, window=3, average=True)
    latents = [torch.full((2, 4), float(k), dtype=torch.float64) for k in range(5)]
    for k, x in enumerate(latents):
        stop.remember(x)
        new = stop.observe("W+", k, torch.tensor([0.5 if k < 4 else 0.1, 0.5]), torch.tensor([0.4, 0.4]))
    assert new.tolist() == [True, False]                            # window 3: mean(0.5, 0.5, 0.1) <= 0.4
    out = stop.settled(latents[-1], new)
    assert torch.equal(out[0], torch.full((4,), 3.0, dtype=torch.float64))   # mean of 2, 3, 4
    assert torch.equal(out[1], latents[-1][1])
    stop.begin_phase(lambda x: x.unsqueeze(1).repeat(1, 2, 1))      # the next phase: lifted
    assert [x.shape for x in stop.latents] == [(2, 2, 4)] * 3
    assert torch.equal(stop.latents[0][0], torch.full((2, 4), 2.0, dtype=torch.float64))
    off = DiscrepancyStop(1.0, l1, None, batch=2, window=3)
    off.remember(latents[0])
    assert not off.latents                                          # nothing kept when not averaging


class RecordingStop(DiscrepancyStop):
    """restore's stop, keeping a copy of every latent it is given per phase (and, settling, each
    step's factor beside it); `options` override restore's, `made` lists the stops built."""
    options: dict = {}
    made: list = []

    def __init__(self, *args, **kw):
        super().__init__(*args, **{**kw, **self.options})
        self.kept: list = []
        self.made.append(self)

    def begin_phase(self, lift):
        super().begin_phase(lift)
        self.kept.append([])

    def remember(self, latent):
        super().remember(latent)
        self.kept[-1].append(latent.clone())

    def slowed(self, before, after):
        if self.settle is not None:
            self.kept[-1][-1] = (self.kept[-1][-1], self.scale)
        return super().slowed(before, after)


def recording(monkeypatch, **options) -> list:
    """Make restore build RecordingStops with `options`; returns the list they join."""
    import rusir.inversion.restore as module
    made: list = []
    monkeypatch.setattr(module, "DiscrepancyStop",
                        type("Recording", (RecordingStop,), {"options": options, "made": made}))
    return made


@pytest.fixture
def averaging(monkeypatch):
    """restore's stop with averaging on (and no settling), keeping a copy of every latent it is
    given per phase."""
    return recording(monkeypatch, average=True, settle=None)


def test_a_restore_that_averages_ends_a_stopped_image_at_the_mean_of_its_window(averaging):
    """Image 0 stops at W++ step 6 (as without averaging) and keeps the mean of the 10 iterates
    whose losses the stop judged: W+'s last 3 (lifted into W++) and W++'s before steps 0..6
    (their images are the ones the callback saw); image 1 never stops and is untouched."""
    from rusir.inversion.latents import convert
    from rusir.inversion.loop import render
    G, target, _ = noisy_problem(dtype=torch.float64)
    c = torch.tensor([[0.2, 0.2], [0.265, 0.2], [0.25, 0.2], [0.25, 0.2]], dtype=torch.float64)
    seen = {}
    kw = {**KW, "loss": l1, "callback": lambda info: seen.update({(info.phase, info.step): info.images.clone()})}
    result = restore(G, target, Shifted(c), discrepancy=1.0, **kw)
    assert result.info["stopped"] == ["W++:6", None]
    kept = averaging[0].kept                                        # per phase: W, W+, W++
    for phase, latents in zip(("W", "W+", "W++"), kept):
        for k, latent in enumerate(latents):
            assert torch.allclose(render(G, latent, None), seen[phase, k], atol=1e-9)
    window = [convert(x, "W++", G) for x in kept[1][-3:]] + kept[2][:7]
    mean = torch.stack(window).mean(0)[0]
    latent = result.phases["W++"].latent
    assert torch.allclose(latent[0], mean, atol=1e-12, rtol=0)
    assert not torch.allclose(latent[0], window[-1][0], atol=1e-6)     # not the last iterate
    plain = restore(G, target, Shifted(c), discrepancy=1.0, **{**KW, "loss": l1})
    assert torch.allclose(latent[1], plain.phases["W++"].latent[1], atol=1e-12)


def test_averaging_is_per_image_batched_chunked_or_alone(averaging):
    assert_stops_per_image(1.2, ["W+:6", "W+:0", "W+:0"])           # image 0: a mean of 7 latents


def test_averaging_that_never_fires_changes_nothing(averaging):
    G, target, deg = noisy_problem()
    off = restore(G, target, degradations.make("denoising", "XL", seed=7), discrepancy=0, **KW)
    never = restore(G, target, deg, discrepancy=1e-9, **KW)
    assert never.info["stopped"] == [None, None] and averaging[0].kept[2]
    assert torch.equal(off.images, never.images)
    assert all(torch.equal(a, b) for a, b in zip(off.phases["W++"].losses, never.phases["W++"].losses))


def test_generators_own_tau_and_degradations_without_a_true_side():
    assert REGISTRY["toyfaces64"].discrepancy is not None and REGISTRY["ffhq"].discrepancy is None
    G, target, deg = noisy_problem(batch=1)
    set_info(G, GeneratorInfo("own", "test", G.img_resolution, discrepancy=1e6))
    assert restore(G, target, deg, **KW).info["stopped"] == ["W+:0"]    # the generator's own tau
    assert restore(G, target, deg, discrepancy=0, **KW).info["stopped"] == [None]
    plain = SimpleNamespace(degrade_prediction=lambda x: x)             # no true side: off
    assert restore(G, target, plain, **KW).config["discrepancy"] is None
    with pytest.raises(ValueError, match="true side"):
        restore(G, target, plain, discrepancy=1.0, **KW)


@pytest.mark.parametrize("value", ["-1", "nan", "x"])
def test_cli_refuses_a_bad_tau_in_one_line(tmp_path, capsys, value):
    from PIL import Image

    from rusir.cli import main
    Image.new("RGB", (8, 8), (120, 80, 60)).save(tmp_path / "a.png")
    assert main(["restore", str(tmp_path / "a.png"), "--task", "UN", "--discrepancy", value,
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--discrepancy" in err[-1] and "Traceback" not in "".join(err)
    assert not (tmp_path / "out").exists()


def test_restore_files_passes_tau_through(tmp_path, monkeypatch):
    """`rusir restore --discrepancy 0` restores without the stop (the paper's method)."""
    from rusir import restore_files as rf
    from rusir.inversion import restore as module
    seen = []
    real = module.restore

    def spy(*args, **kwargs):
        seen.append(kwargs.get("discrepancy"))
        return real(*args, **{**kwargs, "steps": (1, 1, 1)})
    monkeypatch.setattr(rf, "restore", spy)
    from PIL import Image
    Image.new("RGB", (8, 8), (120, 80, 60)).save(tmp_path / "a.png")
    rf.restore_files([tmp_path / "a.png"], "UN", out=tmp_path / "out", discrepancy=0)
    rf.restore_files([tmp_path / "a.png"], "UN", out=tmp_path / "out2")
    assert seen == [0, None]
    with pytest.raises(ValueError, match="discrepancy"):
        rf.restore_files([tmp_path / "a.png"], "UN", out=tmp_path / "out3", discrepancy=-1)


def test_losses_that_need_the_prediction_get_it():
    """The IQA study's consistency term needs the clean prediction: the floor passes it."""
    G, target, deg = noisy_problem(batch=1)
    loss = build_loss({"terms": {"l2": 1.0, "consistency": 1.0}}, degradation_fn=deg)
    assert loss.needs_prediction
    result = restore(G, target, deg, discrepancy=1e6, **{**KW, "loss": loss})
    assert result.info["stopped"] == ["W+:0"]


def test_restore_averages_at_the_stop_by_default(monkeypatch):
    """The shipped stop averages (docs/method.md, "Round 3b"): a restore equals one with
    averaging forced on, and differs from one that keeps the last iterate."""
    import rusir.inversion.restore as module
    G, target, _ = noisy_problem(dtype=torch.float64)
    def run():
        return restore(G, target, degradations.make("denoising", "XL", seed=7), discrepancy=1e6,
                       **KW).images
    shipped = run()
    for average in (True, False):
        with monkeypatch.context() as m:
            m.setattr(module, "DiscrepancyStop", forced(average))
            assert torch.allclose(run(), shipped, atol=1e-12) == average


# ------------------------------------------------------------ settling near the floor (Round 3c)
def test_settle_shortens_the_step_linearly_from_the_margin_to_the_stop_level():
    from rusir.inversion.discrepancy import Settle
    s = Settle(margin=0.5, least=0.1)
    level = torch.full((6,), 0.2)
    fit = level * torch.tensor([3.0, 1.5, 1.25, 1.1, 1.0, 0.5])    # ratios to the stop level
    assert torch.allclose(s.factor(fit, level), torch.tensor([1.0, 1.0, 0.5, 0.2, 0.1, 0.1]))
    nothing = s.factor(torch.tensor([0.0, 0.3]), torch.tensor([0.0, -1.0]))
    assert nothing.tolist() == [1.0, 1.0]                           # no level: full steps
    for bad in (dict(margin=0), dict(margin=float("inf")), dict(least=0), dict(least=1.5),
                dict(margin="1")):
        with pytest.raises(ValueError, match="Settle"):
            Settle(**bad)


def test_a_settling_stop_scales_only_the_steps_of_images_near_their_level():
    """W is never slowed; in W+ image 0 (window loss 1.25 x its level) steps half as far,
    image 1 (far above its level) keeps its step bit for bit."""
    from rusir.inversion.discrepancy import Settle
    stop = DiscrepancyStop(1.0, l1, None, batch=2, every=1, window=2, settle=Settle(0.5, 0.1))
    floor = torch.tensor([0.2, 0.2])
    for k in range(2):
        stop.observe("W", k, torch.tensor([0.25, 1.0]), floor)
        assert stop.scale is None
    stop.observe("W+", 0, torch.tensor([0.25, 1.0]), floor)
    assert torch.allclose(stop.scale, torch.tensor([0.5, 1.0], dtype=torch.float64))
    before = torch.randn(2, 3, 4, dtype=torch.float64)
    after = before + torch.randn(2, 3, 4, dtype=torch.float64)
    out = stop.slowed(before, after)
    assert torch.allclose(out[0], before[0] + 0.5 * (after[0] - before[0]), atol=1e-15)
    assert torch.equal(out[1], after[1])
    plain = DiscrepancyStop(1.0, l1, None, batch=2, every=1, window=2)
    plain.observe("W+", 0, torch.tensor([0.25, 1.0]), floor)
    assert plain.scale is None and plain.slowed(before, after) is after


@pytest.fixture
def settling(monkeypatch):
    """restore's stop with settling on (margin 0.5, least 0.1), keeping each step's factor and
    latent (before the step) per phase."""
    import rusir.inversion.restore as module
    from rusir.inversion.discrepancy import Settle
    monkeypatch.setattr(module, "SETTLE", Settle(0.5, 0.1))
    return recording(monkeypatch, settle=Settle(0.5, 0.1))


def test_a_settling_restore_moves_each_row_its_factor_times_the_rate(settling):
    """Image 0's floor estimates (0.2 at W 0 and 10, then 0.265, 0.25) bring its loss near its
    level from W+ on (never down to it: no stop), where each NGD row then moves factor x lr per
    step; W rows, and image 1's (floor 1e-3, never near), move exactly lr."""
    G, target, _ = noisy_problem(dtype=torch.float64)
    c = torch.tensor([[0.2, 1e-3], [0.2, 1e-3], [0.265, 1e-3], [0.25, 1e-3]], dtype=torch.float64)
    result = restore(G, target, Shifted(c), discrepancy=1.0, **{**KW, "loss": l1})
    kept = settling[0].kept
    slowed = 0
    for phase, steps in zip(("W", "W+", "W++"), kept):
        for (x, scale), (y, _) in zip(steps, steps[1:]):
            moved = (y - x).norm(dim=-1)                            # [B, ...rows]
            f = torch.ones(2, dtype=torch.float64) if scale is None else scale.double()
            for i in range(2):
                rows = moved[i][moved[i] > 0]
                lr = result.phases[phase].lr
                assert torch.allclose(rows, f[i] * lr, rtol=1e-9), (phase, i)
            slowed += int((f < 1).sum())
            assert phase != "W" or scale is None                    # W is never slowed
    assert slowed > 0 and result.info["stopped"] == [None, None]


def test_settling_that_never_fires_changes_nothing(settling):
    """An image whose loss never nears its level runs bit for bit as without settling."""
    G, target, deg = noisy_problem()
    off = restore(G, target, degradations.make("denoising", "XL", seed=7), discrepancy=0, **KW)
    never = restore(G, target, deg, discrepancy=1e-9, **KW)
    assert never.info["stopped"] == [None, None]
    assert all(s is not None and bool((s == 1).all()) for _, s in settling[0].kept[2])
    assert torch.equal(off.images, never.images)
    assert all(torch.equal(a, b) for a, b in zip(off.phases["W++"].losses, never.phases["W++"].losses))


def test_settling_is_per_image_batched_chunked_or_alone(settling):
    """An image's factor depends on its own losses and floors only: batched, chunked and alone
    give the same stops and images (float64)."""
    assert_stops_per_image(1.2)
    assert any(s is not None and bool((s < 1).any()) for made in settling
               for phase in made.kept for _, s in phase)


def test_restore_settles_by_default(monkeypatch):
    """The shipped stop settles (docs/method.md, "Round 3c"): SETTLE is Settle(0.5, 0.1) and a
    restore whose images near their level equals one with that settling forced on and differs
    from one with full steps."""
    import rusir.inversion.restore as module
    from rusir.inversion.discrepancy import SETTLE, Settle
    assert module.SETTLE is SETTLE and SETTLE == Settle(margin=0.5, least=0.1)
    G, target, _ = noisy_problem(dtype=torch.float64)
    c = torch.tensor([[0.2, 1e-3], [0.2, 1e-3], [0.265, 1e-3], [0.25, 1e-3]], dtype=torch.float64)
    def run():
        return restore(G, target, Shifted(c), discrepancy=1.0, **{**KW, "loss": l1}).images
    shipped = run()
    for settle in (Settle(0.5, 0.1), None):
        with monkeypatch.context() as m:
            m.setattr(module, "SETTLE", settle)
            assert torch.allclose(run(), shipped, atol=1e-12) == (settle is not None)
