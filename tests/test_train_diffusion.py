"""The diffusion prior's trainer (python -m rusir.train.diffusion): a tiny run writes a prior that
rusir.model.diffusion loads, and --resume continues the same run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from rusir.model.diffusion import load_prior
from rusir.train.diffusion import build_unet, ddpm_loss, main, parse_args

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


def test_the_ema_warms_up_as_min_ema_1_plus_step_over_10_plus_step(data, tmp_path, monkeypatch):
    """The saved EMA is e <- d e + (1 - d) net after each step, d = min(--ema, (1 + step) / (10 + step)):
    0.1, 2/11, then the cap 0.2 over three steps (a large lr, so every step moves the weights)."""
    nets = []

    class Recording(torch.optim.Adam):
        def __init__(self, params, **kw):
            self.params = list(params)
            nets.append([p.detach().clone() for p in self.params])     # the initial net = EMA
            super().__init__(self.params, **kw)

        def step(self, closure=None):
            super().step(closure)
            nets.append([p.detach().clone() for p in self.params])

    monkeypatch.setattr(torch.optim, "Adam", Recording)
    out = tmp_path / "run"
    main(["--data", str(data), "--out", str(out), "--kimg", "0.012", "--ema", "0.2", "--lr", "0.01",
          "--warmup", "0", *TINY])                                                    # 3 steps of 4
    assert len(nets) == 4
    ema = [p.double() for p in nets[0]]
    for d, net in zip([0.1, 2 / 11, 0.2], nets[1:]):
        ema = [d * e + (1 - d) * n.double() for e, n in zip(ema, net)]
    state = torch.load(out / "state.pt", map_location="cpu", weights_only=True)
    names = [n for n, _ in build_unet(parse_args(["--data", "x", "--out", "y", *TINY]), 16).named_parameters()]
    assert len(names) == len(ema)
    for name, expected in zip(names, ema):
        torch.testing.assert_close(state["ema"][name].double(), expected, rtol=0, atol=1e-6)
