"""Shared test helpers: fixture paths (skip cleanly when ../shared is absent) and tiny generators."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "stylegan2-ada-tiny"

torch.set_num_threads(min(2, torch.get_num_threads()))


def fixture_path(name: str) -> Path:
    """Path of a shared fixture file; skips the test with a reason when it is absent."""
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"fixture {path} absent: ../shared (official StyleGAN2-ADA fixtures) is not beside the repo")
    return path


@pytest.fixture(scope="session")
def tiny32():
    from rusir.pkl import load_network_pickle
    return load_network_pickle(fixture_path("tiny32.pkl"))


@pytest.fixture(scope="session")
def tiny64():
    from rusir.pkl import load_network_pickle
    return load_network_pickle(fixture_path("tiny64.pkl"))


def small_generator(seed: int = 0, resolution: int = 16):
    """A tiny randomly initialised generator that needs no fixture (fast unit tests)."""
    from rusir.stylegan2 import Generator
    torch.manual_seed(seed)
    G = Generator(16, 0, 16, resolution, 3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16))
    G.mapping.w_avg.normal_(0, 0.5)
    return G.eval().requires_grad_(False)
