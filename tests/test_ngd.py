"""NGD: each row moves exactly lr; zero or non-finite rows stay put."""
import pytest
import torch

from rusir.inversion.ngd import NGD, normalized_direction


def test_step_length_equals_lr_per_row():
    torch.manual_seed(0)
    p = torch.randn(3, 5, 8, requires_grad=True)
    before = p.detach().clone()
    p.grad = torch.randn(3, 5, 8) * torch.logspace(-6, 3, 5).view(1, 5, 1)  # wildly different scales
    NGD([p], lr=0.02).step()
    moved = (p.detach() - before).norm(dim=-1)
    assert torch.allclose(moved, torch.full_like(moved, 0.02), atol=1e-6)
    direction = (before - p.detach()) / 0.02
    assert torch.allclose(direction, p.grad / p.grad.norm(dim=-1, keepdim=True), atol=1e-5)


def test_zero_and_nonfinite_rows_do_not_move():
    g = torch.randn(4, 6)
    g[1] = 0
    g[2, 0] = float("nan")
    g[3, 1] = float("inf")
    d = normalized_direction(g)
    assert torch.equal(d[1:], torch.zeros(3, 6))
    assert d[0].norm().item() == pytest.approx(1.0, abs=1e-6)


def test_tiny_gradients_still_take_a_full_step():
    d = normalized_direction(torch.full((1, 4), 1e-15))
    assert d.norm().item() == pytest.approx(1.0, abs=1e-5)


def test_rejects_non_positive_lr():
    with pytest.raises(ValueError, match="positive"):
        NGD([torch.zeros(1, requires_grad=True)], lr=0)


def test_step_with_closure_returns_its_loss_and_moves_lr():
    p = torch.tensor([[3.0, 4.0]], requires_grad=True)
    opt = NGD([p], lr=0.5)

    def closure():
        opt.zero_grad()
        loss = p.square().sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 25.0
    assert torch.allclose(p.detach(), torch.tensor([[3.0, 4.0]]) * (1 - 0.5 / 5))


def test_non_finite_latent_is_an_error_not_a_silent_nan():
    p = torch.tensor([[1.0, float("inf")]], requires_grad=True)
    p.grad = torch.tensor([[1.0, 0.0]])
    with pytest.raises(FloatingPointError, match="non-finite"):
        NGD([p], lr=0.1).step()
