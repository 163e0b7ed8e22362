"""Widening a trained network must keep its function exactly (rusir.train.widen)."""
import pytest
import torch

from rusir.train.discriminator import Discriminator
from rusir.model.stylegan2 import Generator
from rusir.train.widen import widen_state


def _generator(base: int, cmax: int, seed: int) -> Generator:
    torch.manual_seed(seed)
    return Generator(16, 0, 16, 32, 3, mapping_kwargs=dict(num_layers=2),
                     synthesis_kwargs=dict(channel_base=base, channel_max=cmax)).eval()


def _perturb(net: torch.nn.Module) -> None:
    """Random trained-looking weights: fresh init has zero biases, which would hide bugs."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)


def test_widened_generator_draws_the_same_images_in_every_space():
    narrow = _generator(128, 16, seed=0)   # channels 16,16,8,4 at 4..32 px
    _perturb(narrow)
    wide = _generator(256, 32, seed=1)     # channels 32,32,16,8
    widen_state(wide, narrow.state_dict())
    ws = narrow.mapping(torch.randn(3, 16), None)
    with torch.no_grad():
        a = narrow.synthesis(ws, noise_mode="const")
        b = wide.synthesis(ws, noise_mode="const")
    assert (a - b).abs().max() < 1e-5
    # The widened net really is wider: its new output channels carry fresh random weights.
    conv = wide.synthesis.b32.conv1.weight
    assert conv.shape[0] == 8 and conv[4:, :4].abs().sum() > 0 and conv[:, 4:].abs().sum() == 0


def test_widened_discriminator_scores_the_same():
    torch.manual_seed(0)
    narrow = Discriminator(32, 3, channel_base=128, channel_max=32)   # 4, 8, 16, 32 ch at 32..4 px
    _perturb(narrow)
    wide = Discriminator(32, 3, channel_base=256, channel_max=32)     # 8, 16, 32, 32
    widen_state(wide, narrow.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert (narrow(x) - wide(x)).abs().max() < 1e-4


def test_narrowing_or_other_architectures_are_refused():
    wide, narrow = _generator(256, 32, 0), _generator(128, 16, 1)
    with pytest.raises(ValueError, match="cannot widen"):
        widen_state(narrow, wide.state_dict())
    torch.manual_seed(0)
    d4_grows = Discriminator(32, 3, channel_base=256, channel_max=64)  # 4-px width changes
    with pytest.raises(ValueError, match="input width"):
        widen_state(d4_grows, Discriminator(32, 3, channel_base=128, channel_max=32).state_dict())
