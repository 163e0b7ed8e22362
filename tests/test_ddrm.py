"""DDRM (rusir.baselines.ddrm) and the SVD forms of the degradations (rusir.degradations.svd).

With a Gaussian prior x0 ~ N(mu, C) the ideal noise predictor is analytic, so DDRM's output is
Gaussian too and two known answers exist:
* its exact mean and covariance, propagated through DDRM's update equations with dense matrices
  and the SVD of H from torch.linalg.svd (independent of the operators under test): samples must
  agree within sampling error;
* the exact posterior, where DDRM is exact: noiseless inpainting of a prior whose observed and
  missing pixels are independent, with eta = 0 and many steps (DDIM on the missing pixels is then
  the probability-flow ODE of their prior = posterior). At the paper's 20 steps and eta 0.85 it
  is not an exact posterior sampler even with an ideal denoiser (docs/ddrm.md, measured below).
"""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore:target values span")

from rusir.baselines import METHODS, get_method
from rusir.baselines.ddrm import ddrm, ddrm_sample, timesteps
from rusir.degradations import make
from rusir.degradations.svd import BlockAverage, Diagonal, block_basis, linear_operator
from rusir.degradations.upsampling import average_pool_downsample
from rusir.model import weights
from rusir.model.diffusion import ASSETS, DiffusionPrior, load_prior, make_scheduler

R = 4
D = 3 * R * R
ALPHAS = make_scheduler().alphas_cumprod.double()


def gaussian_prior(seed: int = 1, independent_of=None):
    """(mu [D], C [D, D]) of a random Gaussian prior on [-1, 1] images [3, R, R]; with a boolean
    mask [D], C has no correlation between masked and unmasked coordinates."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    c = q @ torch.diag(torch.linspace(0.02, 0.5, D, dtype=torch.float64)) @ q.T
    if independent_of is not None:
        same = independent_of[:, None] == independent_of[None, :]
        c = torch.where(same, c, torch.zeros_like(c))
    return 0.3 * torch.randn(D, generator=g, dtype=torch.float64), c


def affine_denoiser(mu, c, t: int):
    """x0 = M x + b, the exact E[x0 | x_t] of the Gaussian prior at step t (x_t = sqrt(a) x0 +
    sqrt(1 - a) eps)."""
    a = float(ALPHAS[t])
    k = math.sqrt(a) * c @ torch.linalg.inv(a * c + (1 - a) * torch.eye(D, dtype=torch.float64))
    return k, mu - math.sqrt(a) * k @ mu


def eps_of(mu, c):
    """The ideal noise predictor eps(x_t, t) [B, 3, R, R] of the Gaussian prior."""
    def eps(x, t):
        a, (m, b) = float(ALPHAS[t]), affine_denoiser(mu, c, t)
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        x0 = flat @ m.T + b
        return ((flat - math.sqrt(a) * x0) / math.sqrt(1 - a)).reshape(x.shape).to(x.dtype)
    return eps


def dense(op) -> torch.Tensor:
    """H [m, D] of an operator, from its forward map on the basis images."""
    basis = torch.eye(D, dtype=torch.float64).reshape(D, 3, R, R)
    return op.forward(basis).reshape(D, -1).T


def exact_moments(mu, c, h, y, sigma_y, steps, eta, eta_b):
    """Mean [D] and covariance [D, D] of DDRM's output, propagated exactly (module doc)."""
    u, sv, vh = torch.linalg.svd(h, full_matrices=True)
    v = vh.T
    s = torch.zeros(D, dtype=torch.float64)
    s[:len(sv)] = sv
    observed = s > 1e-12
    ybar = torch.zeros(D, dtype=torch.float64)
    ybar[:len(sv)] = (u.T @ y)[:len(sv)] / sv.clamp_min(1e-12)
    inv = torch.where(observed, sigma_y / s.clamp_min(1e-12), torch.zeros_like(s))
    sigma = lambda t: 0.0 if t < 0 else math.sqrt((1 - float(ALPHAS[t])) / float(ALPHAS[t]))
    seq = timesteps(steps)
    # x_bar_T = mean + diag(std) z
    sT = sigma(seq[-1])
    start = observed & (s * sT > sigma_y)
    mean_bar = torch.where(start, ybar, torch.zeros_like(s))
    std = torch.where(start, (sT ** 2 - inv ** 2).clamp_min(0).sqrt(), torch.full_like(s, sT))
    scale = math.sqrt(float(ALPHAS[seq[-1]]))
    m, p = scale * v @ mean_bar, scale ** 2 * v @ torch.diag(std ** 2) @ v.T
    for t, t_next in zip(reversed(seq), [*reversed(seq[:-1]), -1]):
        a = float(ALPHAS[t])
        k, b = affine_denoiser(mu, c, t)
        e_k = (torch.eye(D, dtype=torch.float64) - math.sqrt(a) * k) / math.sqrt(1 - a)
        e_b = -math.sqrt(a) * b / math.sqrt(1 - a)
        m0, p0 = k @ m + b, k @ p @ k.T               # x0's moments: the output at the end
        sn = sigma(t_next)
        before, after = observed & (s * sn > sigma_y), observed & (s * sn < sigma_y)
        r = math.sqrt(1 - eta ** 2) * sn
        inv1 = torch.where(inv > 0, inv, torch.ones_like(inv))
        # x_bar' = F x + f + diag(g) z, per spectral row
        f_x0 = torch.where(before, 1 - eta_b, torch.where(after, 1 - r / inv1, 1.0))
        f_eps = torch.where(before | after, 0.0, r)
        f_const = torch.where(before, eta_b * ybar, torch.where(after, r * ybar / inv1, 0.0))
        g = torch.where(before, (sn ** 2 - eta_b ** 2 * inv ** 2).clamp_min(0).sqrt(),
                        torch.full_like(s, eta * sn))
        F = f_x0[:, None] * (v.T @ k) + f_eps[:, None] * (v.T @ e_k)
        f = f_x0 * (v.T @ b) + f_eps * (v.T @ e_b) + f_const
        scale = 1 / math.sqrt(1 + sn ** 2)
        m = scale * v @ (F @ m + f)
        p = scale ** 2 * v @ (F @ p @ F.T + torch.diag(g ** 2)) @ v.T
    return m0, p0


def sample(op, mu, c, y_img, sigma_y, steps, eta, eta_b, n=4000, seed=2):
    gen = torch.Generator().manual_seed(seed)
    noise = lambda: torch.randn(n, D, generator=gen, dtype=torch.float64)
    y = y_img.expand(n, *y_img.shape[1:])
    return ddrm_sample(eps_of(mu, c), ALPHAS, op, y, sigma_y, noise, steps, eta, eta_b).reshape(n, D)


def check_moments(out, mean, cov, rel_cov=0.15, z=4.5):
    """Sample moments vs exact ones: mean within z standard errors per coordinate, covariance
    within `rel_cov` in Frobenius norm (sampling error ~ sqrt(D / n) = 0.11 at n = 4000)."""
    n = out.shape[0]
    se = (cov.diagonal().clamp_min(1e-12) / n).sqrt()
    assert float(((out.mean(0) - mean).abs() / se).max()) < z
    assert float((torch.cov(out.T) - cov).norm() / cov.norm()) < rel_cov


# --- the operators ------------------------------------------------------------------------

def test_block_average_is_average_pooling_with_an_orthogonal_v():
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    op = BlockAverage(4, 8, dtype=torch.float64)
    assert torch.allclose(op.forward(x), average_pool_downsample(x, 4))
    z = op.vt(x)
    assert torch.allclose(op.v(z), x) and torch.allclose(z.norm(dim=1), x.flatten(1).norm(dim=1))
    q = block_basis(4, dtype=torch.float64)
    assert torch.allclose(q.T @ q, torch.eye(16, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(q[:, 0], torch.full((16,), 0.25, dtype=torch.float64))
    # U^T y / s recovers V^T x on the observed coordinates: the block mean times f
    y = op.forward(x)
    observed = op.singulars[0] > 0
    assert torch.allclose((op.ut(y) / op.singulars.clamp_min(1e-12))[:, observed], z[:, observed])


def test_the_degradations_get_their_linear_model():
    x = torch.rand(2, 3, 64, 64)
    inpaint = make("inpainting", "XL", seed=[3, 4])
    target = inpaint.degrade_ground_truth(x)
    op = linear_operator(inpaint, 64, 2)
    assert torch.allclose(op.forward(x), inpaint.approximation(x), atol=1e-6)
    assert (op.singulars[0] != op.singulars[1]).any()          # each image its own mask
    assert target.shape == op.forward(x).shape
    unc = make("uncropping", "XL", seed=[0, 1])
    unc.degrade_ground_truth(x)
    assert torch.allclose(linear_operator(unc, 64, 2).forward(x), unc.approximation(x))
    for task in ("avgpool_upsampling", "nearest_upsampling"):
        deg = make(task, "L", seed=0)
        assert torch.allclose(linear_operator(deg, 64, 2).forward(x), average_pool_downsample(x, 16),
                              atol=1e-6)
    noisy = make("clamped_gaussian_noise", "XL", seed=0)
    assert torch.equal(linear_operator(noisy, 64, 2).forward(x), x)
    with pytest.raises(ValueError, match="linear degradation model"):
        linear_operator(make("deartifacting", "M", seed=0), 64, 2)


# --- known answers with a Gaussian prior ---------------------------------------------------

@pytest.mark.parametrize("case, eta_b", [("pool", 1.0), ("denoise", 1.0), ("mask", 1.0), ("denoise", 0.5)])
def test_ddrm_output_distribution_is_the_exact_one(case, eta_b):
    """Paper defaults (20 steps, eta 0.85, eta_b 1), correlated prior: DDRM's sample mean and
    covariance equal its exact output moments within sampling error (eta_b 0.5: the measured
    branch's mix of y and x0, which eta_b 1 reduces to y alone)."""
    mu, c = gaussian_prior()
    g = torch.Generator().manual_seed(5)
    op, sigma_y = {"pool": (BlockAverage(2, R, dtype=torch.float64), 0.05),
                   "denoise": (Diagonal(torch.ones(1, 1, R, R, dtype=torch.float64)), 0.2),
                   "mask": (Diagonal((torch.rand(1, 1, R, R, generator=g) > 0.5).double()), 0.1)}[case]
    h = dense(op)
    x = mu + torch.linalg.cholesky(c) @ torch.randn(D, generator=g, dtype=torch.float64)
    y = h @ x + sigma_y * torch.randn(h.shape[0], generator=g, dtype=torch.float64)
    y_img = y.reshape(1, *op.forward(torch.zeros(1, 3, R, R, dtype=torch.float64)).shape[1:])
    mean, cov = exact_moments(mu, c, h, y, sigma_y, 20, 0.85, eta_b)
    check_moments(sample(op, mu, c, y_img, sigma_y, 20, 0.85, eta_b), mean, cov)


def test_ddrm_samples_the_exact_posterior_where_it_is_exact():
    """Noiseless inpainting, observed and missing pixels independent under the prior: the
    posterior is y on the observed pixels and the prior on the missing ones; DDRM with eta = 0
    and 1000 steps samples it within sampling error. (At 20 steps and eta 0.85 the missing
    pixels' covariance is off by ~40%: the check below would fail there.)"""
    g = torch.Generator().manual_seed(7)
    mask = (torch.rand(1, 1, R, R, generator=g) > 0.5).double()
    op = Diagonal(mask)
    observed = op.singulars[0] > 0
    mu, c = gaussian_prior(independent_of=observed)
    x = mu + torch.linalg.cholesky(c) @ torch.randn(D, generator=g, dtype=torch.float64)
    y_img = (op.singulars[0] * x).reshape(1, 3, R, R)
    out = sample(op, mu, c, y_img, 0.0, 1000, 0.0, 1.0)
    missing = ~observed
    check_moments(out[:, missing], mu[missing], c[missing][:, missing])
    assert float((out[:, observed] - x[observed]).abs().max()) < 0.05    # kept, up to sigma_1 noise
    paper = sample(op, mu, c, y_img, 0.0, 20, 0.85, 1.0)
    with pytest.raises(AssertionError):
        check_moments(paper[:, missing], mu[missing], c[missing][:, missing])


def test_sampling_starts_from_the_forward_process_at_the_noisiest_step():
    """x_T is the forward process at the first (noisiest) step: sqrt(a_T) y + sqrt(1 - a_T) z on
    noiselessly observed pixels, sqrt(1 - a_T) z on missing ones (sigma_T of seq[-1], not seq[0])."""
    mask = torch.zeros(1, 1, R, R, dtype=torch.float64)
    mask[..., :2, :] = 1
    op, z = Diagonal(mask), torch.randn(1, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = mask.expand(1, 3, R, R) * 0.5
    calls = []

    def eps(x, t):
        calls.append((t, x.clone()))
        return torch.zeros_like(x)

    ddrm_sample(eps, ALPHAS, op, y, 0.0, lambda: z, steps=20)
    t, x = calls[0]
    a = float(ALPHAS[950])                                   # timesteps(20) = 0, 50, ..., 950
    assert t == 950
    torch.testing.assert_close(x, math.sqrt(a) * y + math.sqrt(1 - a) * z.reshape(1, 3, R, R))


# --- the method in rusir's call shape ------------------------------------------------------

class _GaussianUNet(torch.nn.Module):
    """A `diffusers.UNet2DModel` stand-in: the Gaussian prior's ideal noise predictor."""

    def __init__(self, mu, c, resolution=R):
        super().__init__()
        self.eps, self.config = eps_of(mu, c), SimpleNamespace(sample_size=resolution)

    def forward(self, x, t):
        return SimpleNamespace(sample=self.eps(x, int(t[0])))


class _G(torch.nn.Module):
    """What DDRM reads of the generator: resolution and device."""
    img_resolution = R

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))


def _prior(mu=None, c=None, resolution=R):
    if mu is None:
        mu, c = gaussian_prior()
    return DiffusionPrior(_GaussianUNet(mu, c, resolution), ALPHAS.float(), "gaussian")


def test_noiseless_fully_observed_target_is_reproduced():
    x = torch.rand(2, 3, R, R)
    result = ddrm(_G(), x, None, prior=_prior(), sigma_y=0.0, progress=False)
    assert result.images.shape == x.shape
    assert float((result.images - x).abs().max()) < 0.02        # the last step's noise, sigma_1 ~ 0.01
    assert result.config == dict(steps=20, eta=0.85, eta_b=1.0, sigma_y=0.0, prior="gaussian",
                                 resolution=R, seed=0)
    assert len(result.phases["ddrm"].losses) == 20


def test_inpainting_keeps_the_observed_pixels_and_fills_the_rest():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, R, R, generator=g)
    mask = (torch.rand(1, 1, R, R, generator=g) > 0.5).float()
    deg = SimpleNamespace(name="inpainting", mask=mask)
    seen = []
    result = ddrm(_G(), x * mask, deg, prior=_prior(), sigma_y=0.0, progress=False, seed=3,
                  callback=seen.append)
    known = mask.expand_as(x).bool()
    assert float((result.images - x)[known].abs().max()) < 0.02
    assert float((seen[-1].images - x)[known].abs().max()) < 0.05     # the preview is in [0, 1] too
    assert result.info["linear_model"].startswith("masking with the known")
    assert float((result.images - x * mask)[~known].abs().max()) > 0.05   # filled, not left black


def test_a_batch_equals_its_images_alone_and_seeds_matter():
    x = torch.rand(2, 3, R, R, generator=torch.Generator().manual_seed(1))
    deg = make("gaussian_noise", "M", seed=[0, 1])
    y = deg.degrade_ground_truth(x).float()
    prior = _prior()
    both = ddrm(_G(), y, deg, prior=prior, seed=[5, 5], progress=False).images
    alone = ddrm(_G(), y[1:], make("gaussian_noise", "M", seed=1), prior=prior, seed=5,
                 progress=False).images
    assert torch.allclose(both[1:], alone, atol=1e-5)
    other = ddrm(_G(), y[1:], make("gaussian_noise", "M", seed=1), prior=prior, seed=6,
                 progress=False).images
    assert not torch.allclose(other, alone, atol=1e-3)


def test_bad_input_is_one_clear_error():
    x = torch.rand(1, 3, R, R)
    with pytest.raises(ValueError, match="eta must be in"):
        ddrm(_G(), x, None, prior=_prior(), eta=1.5, progress=False)
    with pytest.raises(ValueError, match="steps must be in"):
        ddrm(_G(), x, None, prior=_prior(), steps=0, progress=False)
    with pytest.raises(ValueError, match="sigma_y"):
        ddrm(_G(), x, None, prior=_prior(), sigma_y=-1, progress=False)
    with pytest.raises(ValueError, match="8 px"):
        ddrm(_G(), x, None, prior=_prior(resolution=8), progress=False)
    with pytest.raises(TypeError, match="unexpected option"):
        ddrm(_G(), x, None, prior=_prior(), lr=0.1, progress=False)
    with pytest.raises(ValueError, match="unknown diffusion prior"):
        ddrm(_G(), x, None, prior="/nonexistent/prior", progress=False)


def test_registered_and_the_celebahq_prior_names_its_files_offline(monkeypatch, tmp_path):
    assert get_method("ddrm") is ddrm and "ddrm" in METHODS and ddrm.seeds_per_image
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    for name in ("ddpm-celebahq-256-config", "ddpm-celebahq-256-unet"):
        entry = weights.get(name)
        assert "google/ddpm-celebahq-256/resolve/" in entry.url
        monkeypatch.setitem(weights.WEIGHTS, name, weights.WeightFile(
            entry.name, entry.url, entry.filename, entry.sha256, str(tmp_path), entry.note))
    with pytest.raises(weights.MissingWeightsError, match="config.json"):
        load_prior("ddpm-celebahq-256")


def test_the_embedded_prior_loads_and_is_the_default_of_toyfaces64():
    from rusir.model.diffusion import default_prior
    from rusir.model.generators import load_generator
    from rusir.model.weights import file_sha256
    G = load_generator("toyfaces64")
    assert default_prior(G) == "toyfaces64-ddpm"
    prior = load_prior("toyfaces64-ddpm")
    assert prior.resolution == G.img_resolution == 64
    folder = ASSETS / "toyfaces64-ddpm"
    assert file_sha256(folder / "diffusion_pytorch_model.safetensors").startswith("6a802ebe")
    meta = json.loads((folder / "training.json").read_text())
    assert (meta["steps"], meta["images_seen"]) == (803, 12848)          # docs/ddrm.md's numbers
    x = torch.rand(1, 3, 64, 64)
    out = ddrm(G, x, make("gaussian_noise", "XL", seed=0), steps=2, progress=False)
    assert out.images.shape == x.shape and out.config["prior"] == "toyfaces64-ddpm"


def test_the_fid_sampler_draws_the_prior():
    """rusir.model.diffusion.sample_images (the prior's FID samples, training grids): with the
    Gaussian prior's ideal noise predictor, 50 DDIM steps draw N(mu, C) within sampling error."""
    from rusir.model.diffusion import sample_images
    mu, c = gaussian_prior()
    n = 2000
    noise = torch.randn(n, 3, R, R, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = (sample_images(_GaussianUNet(mu, c), make_scheduler(), noise, 50) * 2 - 1).reshape(n, D)
    check_moments(x, mu, c, rel_cov=0.25)
