"""Shared test helpers: fixture paths (skip cleanly when ../shared is absent) and tiny generators."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (see rusir/__init__)

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "stylegan2-ada-tiny"

torch.set_num_threads(min(2, torch.get_num_threads()))


def load_script(relative: str, name: str) -> ModuleType:
    """A benchmark/script file (not a package module) imported as module `name`, registered in
    sys.modules (dataclasses look their module up by name)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def fixture_path(name: str, family: str = "stylegan2-ada") -> Path:
    """Path of a shared fixture file (`family`: stylegan2-ada or stylegan3); skips the test with a
    reason when it is absent."""
    path = FIXTURES.parent / f"{family}-tiny" / name
    if not path.exists():
        pytest.skip(f"fixture {path} absent: ../shared (official {family} fixtures) is not beside the repo")
    return path


@pytest.fixture(scope="session")
def sg3t32_pkl() -> Path:
    """The tiny official-format StyleGAN3-T pickle (32 px)."""
    return fixture_path("sg3t32.pkl", "stylegan3")


@pytest.fixture(scope="session")
def tiny32():
    from rusir.model.pkl import load_network_pickle
    return load_network_pickle(fixture_path("tiny32.pkl"))


@pytest.fixture(scope="session")
def tiny64():
    from rusir.model.pkl import load_network_pickle
    return load_network_pickle(fixture_path("tiny64.pkl"))


def small_generator(seed: int = 0, resolution: int = 16):
    """A tiny randomly initialised generator that needs no fixture (fast unit tests)."""
    from rusir.model.stylegan2 import Generator
    torch.manual_seed(seed)
    G = Generator(16, 0, 16, resolution, 3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16))
    G.mapping.w_avg.normal_(0, 0.5)
    return G.eval().requires_grad_(False)


def tiny_diffusion_prior(resolution: int = 16) -> str:
    """A folder with a randomly initialised, tiny diffusers UNet2DModel (for DDRM in tests that
    run every method); made once per process."""
    import tempfile
    from diffusers import UNet2DModel
    folder = Path(tempfile.gettempdir()) / f"rusir-test-prior-{os.getpid()}-{resolution}"
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        UNet2DModel(sample_size=resolution, block_out_channels=(8, 8), layers_per_block=1,
                    down_block_types=("DownBlock2D", "DownBlock2D"), norm_num_groups=4,
                    up_block_types=("UpBlock2D", "UpBlock2D")).save_pretrained(folder)
    return str(folder)


def procedural_images(n: int = 4, size: int = 128, seed: int = 1234) -> torch.Tensor:
    """Procedural photo-like images [n, 3, size, size] in [0, 1]: shading, hard discs, mild texture."""
    import math
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        img = torch.rand(3, 1, 1, generator=g) * 0.5 + 0.25
        img = img + 0.3 * (torch.rand(3, 1, 1, generator=g) - 0.5) * (xx + yy - 1)
        for _ in range(4):
            cx, cy, r = torch.rand(3, generator=g).tolist()
            disc = (((xx - cx) ** 2 + (yy - cy) ** 2) < (0.05 + 0.2 * r) ** 2).float()
            img = img * (1 - 0.7 * disc) + 0.7 * disc * torch.rand(3, 1, 1, generator=g)
        f = torch.rand(2, generator=g) * 20 + 10
        img = img + 0.04 * torch.sin(f[0] * math.pi * xx) * torch.sin(f[1] * math.pi * yy)
        out.append((img + 0.02 * torch.randn(3, size, size, generator=g)).clamp(0, 1))
    return torch.stack(out)


def smooth_images(b: int = 3, side: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random images: bicubic enlargements of 8x8 noise, in [0, 1]."""
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, 3, 8, 8, generator=g)
    return F.interpolate(low, size=side, mode="bicubic", align_corners=False).clamp(0, 1)


def noisy(y: torch.Tensor, sigma: float, seed: int = 1, clamp: bool = False) -> torch.Tensor:
    """y plus seeded Gaussian noise of std sigma (optionally clamped to [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    out = y + sigma * torch.randn(y.shape, generator=g)
    return out.clamp(0, 1) if clamp else out


def generated_target(G, seed: int, batch: int = 1, spread: float = 0.35) -> torch.Tensor:
    """An image the generator itself makes (a W code a little away from w_avg), exactly as
    rendered: it may overshoot [0, 1], which methods accept with a warning."""
    from rusir.inversion.loop import render
    g = torch.Generator().manual_seed(seed)
    w = G.mapping.w_avg[None] + spread * torch.randn(batch, G.w_dim, generator=g)
    with torch.no_grad():
        return render(G, w)


def mse(x, y, mask=None):
    """The simplest per-image loss [B] (tests that are about the loop, not the loss)."""
    return (x - y).square().flatten(1).mean(1)


@pytest.fixture
def one_thread():
    """Tiny nets on a shared CPU run far faster on one thread; restore the setting after.
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
