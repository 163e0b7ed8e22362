"""NGD: each row moves exactly lr; zero or non-finite rows stay put."""
import pytest
import torch
from torch import Tensor

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


def _one_step(grad: Tensor, start: Tensor, **options) -> Tensor:
    p = start.clone().requires_grad_(True)
    p.grad = grad.clone()
    NGD([p], lr=0.1, **options).step()
    return p.detach()


def test_default_options_are_the_plain_step_exactly():
    torch.manual_seed(1)
    start, grad = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    plain = start.clone().sub_(normalized_direction(grad), alpha=0.1)   # the step before options
    assert torch.equal(_one_step(grad, start), plain)
    assert torch.equal(_one_step(grad, start, anchor=0.0, normalize="row"), plain)


def test_anchor_pulls_back_toward_the_start_by_rho():
    start = torch.tensor([[1.0, 2.0]])
    # step: (1, 2) - 0.1 * (1, 0) = (0.9, 2); then start + (1 - 0.25) * ((0.9, 2) - start)
    assert torch.allclose(_one_step(torch.tensor([[5.0, 0.0]]), start, anchor=0.25),
                          torch.tensor([[1 - 0.75 * 0.1, 2.0]]))
    # a steady gradient settles at lr (1 - rho) / rho from the start, whatever its size
    p = torch.zeros(1, 2, requires_grad=True)
    opt = NGD([p], lr=0.1, anchor=0.25)
    for _ in range(200):
        p.grad = torch.tensor([[-3.0, -4.0]])
        opt.step()
    assert p.detach().norm().item() == pytest.approx(0.1 * 0.75 / 0.25, rel=1e-4)


def test_image_normalisation_moves_rows_by_their_share_of_one_image_norm():
    grad = torch.zeros(2, 3, 2)
    grad[0, 0] = torch.tensor([3.0, 4.0])       # image 0: rows of norm 5, 0.5 and none (zero)
    grad[0, 1] = torch.tensor([0.0, 0.5])
    grad[1] = torch.tensor([1e-3, 0.0])         # image 1: three equal rows move lr each
    moved = -_one_step(grad, torch.zeros(2, 3, 2), normalize="image")
    image0 = 0.1 * 2 ** 0.5 * grad[0] / grad[0].norm()       # 2 rows with a gradient
    assert torch.allclose(moved[0], image0, atol=1e-6)
    assert moved[0, 2].abs().sum() == 0
    assert torch.allclose(moved[1].norm(dim=-1), torch.full((3,), 0.1), atol=1e-6)
    assert moved.norm(dim=(1, 2)).tolist() == pytest.approx([0.1 * 2 ** 0.5, 0.1 * 3 ** 0.5], rel=1e-5)
    w_pp = -_one_step(torch.randn(2, 3, 4, 5), torch.zeros(2, 3, 4, 5), normalize="image")   # W++ shape
    assert torch.linalg.vector_norm(w_pp, dim=(1, 2, 3)).tolist() == pytest.approx([0.1 * 12 ** 0.5] * 2, rel=1e-5)


def test_bad_options_are_refused():
    p = [torch.zeros(1, requires_grad=True)]
    with pytest.raises(ValueError, match="anchor"):
        NGD(p, lr=0.1, anchor=1.0)
    with pytest.raises(ValueError, match="normalize"):
        NGD(p, lr=0.1, normalize="layer")
