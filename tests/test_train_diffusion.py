"""The diffusion prior's trainer (python -m rusir.train.diffusion): a tiny run writes a prior that
rusir.model.diffusion loads, and --resume continues the same run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from rusir.model.diffusion import load_prior
from rusir.train.diffusion import ddpm_loss, main, parse_args

TINY = ["--channels", "8,8", "--attention", "0,1", "--groups", "4", "--batch", "4", "--threads", "1",
        "--log-every", "1", "--snap-every", "100"]


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "faces.npy"
    np.save(path, rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
    return path


def test_a_tiny_run_writes_a_loadable_prior_and_resumes(data, tmp_path):
    out = tmp_path / "run"
    main(["--data", str(data), "--out", str(out), "--kimg", "0.008", *TINY])     # 2 steps of 4
    meta = json.loads((out / "unet" / "training.json").read_text())
    assert (meta["steps"], meta["images_seen"], meta["dataset"]) == (2, 8, [8, 3, 16, 16])
    prior = load_prior(out)                                  # the run folder (its unet/) loads
    assert prior.resolution == 16 and prior.eps(torch.zeros(1, 3, 16, 16), 500).shape == (1, 3, 16, 16)
    main(["--data", str(data), "--out", str(out), "--kimg", "0.016", "--resume", *TINY])
    meta = json.loads((out / "unet" / "training.json").read_text())
    assert (meta["steps"], meta["images_seen"]) == (4, 16)
    assert len((out / "log.jsonl").read_text().splitlines()) == 4


def test_the_loss_is_ddpm_simple_loss():
    """A network that predicts the true noise has zero loss: the loss compares with the eps drawn."""
    alphas = torch.linspace(0.999, 0.01, 1000)
    x0 = torch.rand(3, 3, 8, 8) * 2 - 1
    seen = {}

    class Oracle(torch.nn.Module):
        def forward(self, xt, t):
            a = alphas[t].view(-1, 1, 1, 1)
            return type("Out", (), {"sample": (xt - a.sqrt() * x0) / (1 - a).sqrt()})()

    assert float(ddpm_loss(Oracle(), x0, alphas)) < 1e-8
    assert float(ddpm_loss(lambda xt, t: type("O", (), {"sample": torch.zeros_like(xt)})(), x0, alphas)) > 0.5


def test_bad_architecture_options_are_one_line_errors():
    with pytest.raises(SystemExit):
        parse_args(["--data", "x", "--out", "y", "--channels", "8,8", "--attention", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--data", "x", "--out", "y", "--channels", "6,8", "--groups", "4"])
