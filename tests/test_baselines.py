"""Baselines (PULSE, L-BRGM, W+ Adam): they optimise, are seeded, batch exactly, and their
regularisers do what they claim; their hyperparameter tables are data that the methods accept."""
from __future__ import annotations

import inspect
import math

import pytest
import torch

from conftest import generated_target, mse, small_generator
from rusir.model.generators import GeneratorInfo, set_info
from rusir.baselines import METHODS, baseline_config, get_method
from rusir.baselines.config import TABLES
from rusir.baselines.lbrgm import lbrgm
from rusir.baselines.pulse import gaussian_fit, geocross, lr_factor, pulse, to_w
from rusir.inversion.method import RestoreResult
from rusir.inversion.restore import render, restore

FAST = {"pulse": dict(fit_samples=256), "lbrgm": dict(init_candidates=4), "adam_wplus": {}}
BASELINES = tuple(FAST)


pytestmark = pytest.mark.usefixtures("one_thread")


def run(name, G, target, **kw):
    options = {**FAST[name], "loss": mse, "progress": False, **kw}
    return get_method(name)(G, target, **options)


@pytest.mark.parametrize("name", BASELINES)
def test_each_baseline_lowers_its_objective(name, tiny32):
    target = generated_target(tiny32, seed=5)
    steps = {"pulse": 20, "lbrgm": 20, "adam_wplus": 20}[name]
    result = run(name, tiny32, target, steps=steps)
    assert isinstance(result, RestoreResult) and list(result.phases) == [name]
    if name == "adam_wplus":                       # its latent is W+ (a checkpoint records it)
        assert result.phases[name].space == "W+" and result.latent.shape[1] == tiny32.num_ws
    losses = torch.stack(result.phases[name].losses)[:, 0]
    assert len(losses) == steps and torch.isfinite(losses).all()
    print(name, "objective", losses[0].item(), "->", losses.min().item(), losses[-1].item())
    assert losses.min() < 0.7 * losses[0]
    assert result.images.shape == target.shape
    # the returned latent renders the returned images
    assert torch.allclose(render(tiny32, result.latent), result.images, atol=1e-5)


@pytest.mark.parametrize("name", BASELINES)
def test_deterministic_given_a_seed(name):
    G = small_generator()
    target = generated_target(G, seed=1)
    a = run(name, G, target, steps=4, seed=3).images
    b = run(name, G, target, steps=4, seed=3).images
    assert torch.equal(a, b)
    if name != "adam_wplus":  # the only baseline without random draws
        c = run(name, G, target, steps=4, seed=4).images
        assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", BASELINES)
def test_batch_equals_per_image(name):
    G = small_generator()
    target = generated_target(G, seed=2, batch=2)
    both = run(name, G, target, steps=5, seed=10)
    alone = [run(name, G, target[i:i + 1], steps=5, seed=10 + i) for i in range(2)]
    assert torch.allclose(both.images, torch.cat([r.images for r in alone]), atol=1e-5)
    curve = torch.stack(both.phases[name].losses)
    for i, r in enumerate(alone):
        assert torch.allclose(curve[:, i], torch.stack(r.phases[name].losses)[:, 0], rtol=1e-4, atol=1e-6)


def test_pulse_latents_stay_on_the_sphere_and_geocross_pulls_rows_together():
    G = small_generator()
    target = generated_target(G, seed=4)
    seen = []
    result = pulse(G, target, loss=None, steps=12, fit_samples=256, progress=False,
                   callback=lambda info: seen.append(info.step))
    assert seen == list(range(12))
    norms = result.info["v"].norm(dim=-1)
    assert torch.allclose(norms, torch.full_like(norms, math.sqrt(G.w_dim)), rtol=1e-5)
    free = pulse(G, target, steps=12, geocross_weight=0.0, fit_samples=256, progress=False)
    tied = pulse(G, target, steps=12, geocross_weight=50.0, fit_samples=256, progress=False)
    assert geocross(tied.latent).item() < 0.5 * geocross(free.latent).item()


def test_pulse_returns_the_best_iterate_and_records_eps():
    G = small_generator()
    target = generated_target(G, seed=6, batch=2)
    kw = dict(steps=10, fit_samples=256, progress=False, seed=1)
    result = pulse(G, target, eps=1e-9, **kw)
    curve = torch.stack(result.phases["pulse"].losses)                        # [steps, B]
    assert result.info["best_step"] == curve.argmin(0).tolist()
    mean, std = gaussian_fit(G, 256)
    assert torch.allclose(to_w(result.info["v"], mean, std), result.latent)
    assert result.info["reached_eps"] == [False, False]                       # no abort
    assert pulse(G, target, eps=10.0, **kw).info["reached_eps"] == [True, True]
    # a loss passed by the harness leaves PULSE's L2 data term alone unless asked for
    assert torch.equal(pulse(G, target, eps=1e-9, loss=lambda x, y, mask=None: (x - y).abs().flatten(1).mean(1),
                             **kw).images, result.images)
    swapped = pulse(G, target, eps=1e-9, loss=lambda x, y, mask=None: (x - y).abs().flatten(1).mean(1),
                    data_term="loss", **kw)
    assert swapped.config["data_term"] == "loss" and not torch.equal(swapped.images, result.images)
    with pytest.raises(ValueError, match="data_term"):
        pulse(G, target, data_term="l1", **kw)


def test_a_table_entry_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "pulse.yaml"
    path.write_text("defaults: {steps: 5}\ntasks:\n  upsampling: [1, 2]\n")
    with pytest.raises(ValueError, match="entry for task 'upsampling' must be a mapping"):
        baseline_config("pulse", "upsampling", "M", path=path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        baseline_config("pulse", "upsampling", "M", path=tmp_path / "none.yaml")


def test_pulse_pieces():
    assert lr_factor("linear1cycle", 0, 100) == pytest.approx(0.1)            # 0.1 -> 1 -> 0.1
    assert lr_factor("linear1cycle", 25, 100) == pytest.approx(0.55)
    assert lr_factor("linear1cycle", 50, 100) == pytest.approx(1.0)
    assert lr_factor("linear1cycledrop", 0, 100) == pytest.approx(0.1)
    assert lr_factor("linear1cycledrop", 45, 100) == pytest.approx(1.0)
    assert lr_factor("linear1cycledrop", 90, 100) == pytest.approx(0.1)
    assert lr_factor("linear1cycledrop", 100, 100) == pytest.approx(0.001)
    with pytest.raises(ValueError, match="linear1cycledrop"):
        lr_factor("cosine", 0, 10)
    w = torch.randn(1, 1, 8).repeat(1, 4, 1)
    assert geocross(w).item() == pytest.approx(0.0, abs=1e-3)
    ortho = torch.eye(2)[None] * 3                                            # angle pi / 2
    assert geocross(ortho).item() == pytest.approx((math.pi / 2) ** 2 * 2 / 4 * 2 / 8, rel=1e-4)
    G = small_generator()
    mean, std = gaussian_fit(G, 300, seed=0)
    assert gaussian_fit(G, 300, seed=0)[0] is mean                            # cached per G
    z = torch.randn(300, G.z_dim, generator=torch.Generator().manual_seed(0))
    ref = torch.nn.functional.leaky_relu(G.mapping(z, None)[:, 0], 5.0)
    assert torch.allclose(mean, ref.mean(0), atol=1e-4) and torch.allclose(std, ref.std(0), atol=1e-4)


def test_lbrgm_starts_from_the_best_candidate_and_its_prior_ties_w_to_mapping_z():
    G = small_generator()
    target = generated_target(G, seed=7)
    kw = dict(loss=mse, progress=False, init_candidates=6, seed=2)
    start = lbrgm(G, target, steps=0, **kw)
    z = torch.randn(6, G.z_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # spec 7.2, written out: truncation 0.8 toward w_avg, 0-255 pixel term
        w_avg = G.mapping.w_avg
        ws = (w_avg + 0.8 * (G.mapping(z, None) - w_avg)).double()
        images = render(G, ws.float()).double()
        scores = 0.0002 * (255 * images - 255 * target.double()).square().mean((1, 2, 3)) \
            + (images - target.double()).square().mean((1, 2, 3))
    assert start.info["init_data_loss"][0] == pytest.approx(scores.min().item(), rel=1e-5)
    assert torch.allclose(start.latent[0], ws[scores.argmin()].float(), atol=1e-6)

    def gap(result):
        return (G.mapping(result.info["z"], None) - result.latent).square().mean().item()

    loose = lbrgm(G, target, steps=15, mapping_weight=0.0, **kw)
    tight = lbrgm(G, target, steps=15, mapping_weight=300.0, **kw)
    assert gap(tight) < 0.5 * gap(loose)


class LineGenerator(torch.nn.Module):
    """A generator small enough to work L-BRGM out by hand: z, w in R^2, two W+ rows,
    mapping(z) = z + w_avg, and a flat 2x2 image whose value (in [0, 1]) is w[row 0, 0]."""
    z_dim = w_dim = 2
    num_ws = 2
    img_resolution = 2

    def __init__(self):
        super().__init__()
        self.w_avg = torch.nn.Parameter(torch.tensor([0.5, -0.25]), requires_grad=False)

    def mapping(self, z, c, truncation_psi=1.0):
        w = self.w_avg + truncation_psi * z                          # = lerp(w_avg, z + w_avg, psi)
        return w[:, None, :].repeat(1, self.num_ws, 1)

    def synthesis(self, ws, noise_mode="const"):
        return (2 * ws[:, 0, 0] - 1).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)


def test_lbrgm_known_answer_on_a_line_generator():
    """Best-of-N start and objective per spec 7.2, computed here from the paper's description:
    0.0002 mean(255 f(G(w)) - 255 y)^2 + perceptual (here mse, weight 1) + 30 mean(mapping(z) - w)^2
    + 0.4 mean z^2; candidates z ~ N(0, I) from seed + i, truncated 0.8 toward w_avg; Adam lr 0.1."""
    G, seed, n = LineGenerator(), 5, 6
    w_avg = G.w_avg.tolist()
    candidates = [torch.randn(n, 2, generator=torch.Generator().manual_seed(seed + i)).tolist()
                  for i in range(2)]
    chosen = [2, 4]  # the candidate each image's target is made to be closest to
    c = [w_avg[0] + 0.8 * candidates[i][chosen[i]][0] + 0.01 for i in range(2)]

    def data(u, ci):   # the flat image u against the flat target ci
        return 0.0002 * (255 * u - 255 * ci) ** 2 + (u - ci) ** 2

    def objective(z, w, ci):   # z: [2], w: [2 rows][2]
        mapped = [z[d] + w_avg[d] for d in range(2)]
        prior_w = sum((mapped[d] - row[d]) ** 2 for row in w for d in range(2)) / 4
        prior_z = sum(zd ** 2 for zd in z) / 2
        return data(w[0][0], ci) + 30 * prior_w + 0.4 * prior_z

    target = torch.tensor(c).view(2, 1, 1, 1).expand(2, 3, 2, 2).contiguous()
    kw = dict(loss=mse, progress=False, init_candidates=n, seed=seed)
    start = lbrgm(G, target, steps=0, **kw)
    two = lbrgm(G, target, steps=2, **kw)
    for i in range(2):
        scores = [data(w_avg[0] + 0.8 * z[0], c[i]) for z in candidates[i]]
        assert min(range(n), key=scores.__getitem__) == chosen[i]
        z0 = candidates[i][chosen[i]]
        w0 = [[w_avg[d] + 0.8 * z0[d] for d in range(2)]] * 2
        assert start.info["init_data_loss"][i] == pytest.approx(scores[chosen[i]], rel=1e-4)
        assert torch.allclose(start.latent[i], torch.tensor(w0), atol=1e-6)
        assert torch.allclose(start.info["z"][i], torch.tensor(z0), atol=1e-6)
        losses = [float(step[i]) for step in two.phases["lbrgm"].losses]
        assert losses[0] == pytest.approx(objective(z0, w0, c[i]), rel=1e-4)
        # Adam's first step moves every coordinate by lr = 0.1 against its gradient's sign.
        # At the start mapping(z) - w = 0.2 z on both rows, so
        #   d/dz_d  = 30 * (2/4) * 2 rows * 0.2 z_d + 0.4 * (2/2) z_d = 6.4 z_d,
        #   d/dw_rd = -30 * (2/4) * 0.2 z_d = -3 z_d,
        # plus on w_00 the data term's 2 (0.0002 * 255^2 + 1)(u - c).
        sign = [1.0 if zd > 0 else -1.0 for zd in z0]
        grad_w00 = -3 * z0[0] + 2 * (0.0002 * 255 ** 2 + 1) * (w0[0][0] - c[i])
        z1 = [z0[d] - 0.1 * sign[d] for d in range(2)]
        w1 = [[w0[r][d] + 0.1 * sign[d] for d in range(2)] for r in range(2)]
        w1[0][0] = w0[0][0] - 0.1 * (1.0 if grad_w00 > 0 else -1.0)
        assert losses[1] == pytest.approx(objective(z1, w1, c[i]), rel=1e-4)


def test_baselines_run_through_a_real_degradation_and_default_loss():
    from rusir.degradations import make
    G = small_generator()
    set_info(G, GeneratorInfo("small", "test", G.img_resolution, "offline"))   # as load_generator records it
    clean = generated_target(G, seed=8)
    for name in BASELINES:
        deg = make("inpainting", "M", seed=0)
        target = deg.degrade_ground_truth(clean)
        result = get_method(name)(G, target, deg, steps=3, progress=False, **FAST[name])
        assert result.images.shape == clean.shape and torch.isfinite(result.images).all()


def test_registry_and_errors():
    # DDRM restores with a diffusion prior, not by inverting G: tests/test_ddrm.py
    assert METHODS["rusir"] is restore and set(METHODS) == {"rusir", "ddrm", *BASELINES}
    with pytest.raises(ValueError, match="valid methods.*adam_wplus.*lbrgm.*pulse.*rusir"):
        get_method("brgm")
    G = small_generator()
    target = generated_target(G, seed=0)
    for name in BASELINES:
        with pytest.raises(TypeError, match="lrs"):
            get_method(name)(G, target, loss=mse, lrs=(0.1,), progress=False)


@pytest.mark.parametrize("name", TABLES)
def test_tables_are_accepted_options_with_the_code_defaults(name):
    method = get_method(name)
    params = inspect.signature(method).parameters
    defaults = baseline_config(name)
    for key, value in defaults.items():
        assert key in params, f"{name}.yaml key {key!r} is not an option of {name}()"
        assert params[key].default == value, f"{name}.yaml default {key}={value!r} differs from the code"
    for task in ("upsampling", "denoising", "deartifacting", "inpainting", "UNAP"):
        for level in ("XS", "M", "XL"):
            assert set(baseline_config(name, task, level)) <= set(params)


def test_config_merges_defaults_task_and_level(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("defaults: {steps: 10, lr: 0.5}\n"
                    "tasks:\n  denoising: {all: {steps: 20}, XL: {lr: 0.1}}\n  NP: {M: {lr: 0.3}}\n")
    assert baseline_config("pulse", path=path) == {"steps": 10, "lr": 0.5}
    assert baseline_config("pulse", "denoising", "M", path=path) == {"steps": 20, "lr": 0.5}
    assert baseline_config("pulse", "N", "XL", path=path) == {"steps": 20, "lr": 0.1}
    assert baseline_config("pulse", "np", "M", path=path) == {"steps": 10, "lr": 0.3}
    assert baseline_config("pulse", "upsampling", "XL", path=path) == {"steps": 10, "lr": 0.5}
    assert baseline_config("rusir", "upsampling", "M") == {}
    assert baseline_config("pulse", "denoising", "M")["steps"] > baseline_config("pulse", "upsampling", "M")["steps"]
    with pytest.raises(ValueError, match="unknown level"):
        baseline_config("pulse", "denoising", "XXL")
    with pytest.raises(ValueError, match="tables exist for"):
        baseline_config("brgm")
    path.write_text("defaults: {}\ntasks: {denoising: {huge: {lr: 1}}}\n")
    with pytest.raises(ValueError, match="levels"):
        baseline_config("pulse", "denoising", "M", path=path)


def test_config_falls_back_to_code_defaults_without_tables(tmp_path, monkeypatch):
    import rusir.baselines.config as config
    monkeypatch.setattr(config, "TABLES_DIR", tmp_path / "absent")
    with pytest.warns(UserWarning, match="not found"):
        assert baseline_config("lbrgm", "inpainting", "XL") == {}
    with pytest.raises(FileNotFoundError):
        baseline_config("lbrgm", path=tmp_path / "absent.yaml")
