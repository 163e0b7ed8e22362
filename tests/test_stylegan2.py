"""The generator against the official golden outputs, and the W / W+ / W++ layouts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import fixture_path, small_generator
from rusir.inversion.latents import w_to_wplus, wplus_to_wpp
from rusir.model.stylegan2 import Generator

NETS = ["tiny32", "tiny64"]


def golden(name: str) -> dict[str, torch.Tensor]:
    data = np.load(fixture_path(f"{name}_golden.npz"))
    return {k: torch.from_numpy(data[k]) for k in data.files}


def state_dict_listing(name: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in fixture_path(name).read_text().splitlines():
        key, shape, _ = line.split("\t")
        rows.append((key, tuple(int(v) for v in shape.strip("()").split(",") if v.strip())))
    return rows


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", NETS)
def test_mapping_matches_golden(name, request):
    G, g = request.getfixturevalue(name), golden(name)
    with torch.no_grad():
        assert max_err(G.mapping(g["z"], None), g["ws"]) <= 1e-4
        assert max_err(G.mapping(g["z"], None, truncation_psi=0.7), g["ws_psi07"]) <= 1e-4
        ws = G.mapping(g["z"], None, truncation_psi=0.5, truncation_cutoff=3)
        assert max_err(ws, g["ws_psi05_cutoff3"]) <= 1e-4
    assert max_err(G.mapping.w_avg, g["w_avg"]) == 0


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("ws_key,img_key,noise,tol", [
    ("ws", "img_const", "const", 1e-4),
    ("ws", "img_noise_none", "none", 1e-4),
    ("ws_psi07", "img_psi07_const", "const", 1e-4),
    ("ws_random", "img_random_ws_const", "const", 1e-4),
    ("ws_big", "img_big_ws_const", "const", 1e-3),
])
def test_synthesis_matches_golden(name, ws_key, img_key, noise, tol, request):
    G, g = request.getfixturevalue(name), golden(name)
    with torch.no_grad():
        assert max_err(G.synthesis(g[ws_key], noise_mode=noise), g[img_key]) <= tol


@pytest.mark.parametrize("name", NETS)
def test_random_noise_drawn_like_official(name, request):
    G, g = request.getfixturevalue(name), golden(name)
    torch.manual_seed(102)
    with torch.no_grad():
        img = G.synthesis(g["ws_random"], noise_mode="random")
    assert max_err(img, g["img_random_ws_noise_seed102"]) <= 1e-4


@pytest.mark.parametrize("name", NETS)
def test_styles_match_golden(name, request):
    G, g = request.getfixturevalue(name), golden(name)
    names = [f"style_b{b.resolution}_{n}" for b in G.synthesis.blocks()
             for n in (["conv1"] if b.in_channels == 0 else ["conv0", "conv1"]) + ["torgb"]]
    with torch.no_grad():
        styles = G.synthesis.styles(g["ws_random"])
    assert len(styles) == len(names)
    for key, s in zip(names, styles):
        assert max_err(s, g[key]) <= 1e-4, key


@pytest.mark.parametrize("name", NETS)
def test_state_dict_equals_official_listing(name, request):
    G = request.getfixturevalue(name)
    ours = [(k, tuple(v.shape)) for k, v in G.state_dict().items()]
    assert ours == state_dict_listing(f"{name}_state_dict.txt")


def test_ffhq1024_configuration_has_official_names_and_shapes():
    G = Generator(512, 0, 512, 1024, 3, mapping_kwargs=dict(num_layers=8),
                  synthesis_kwargs=dict(channel_base=32768, channel_max=512))
    ours = [(k, tuple(v.shape)) for k, v in G.state_dict().items()]
    assert ours == state_dict_listing("ffhq1024_state_dict.txt")
    assert G.num_ws == 18
    assert sum(p.numel() for p in G.parameters()) == 30_370_060  # the count the spec gives for ffhq.pkl


def test_w_wplus_wpp_render_the_same_image(tiny64):
    torch.manual_seed(0)
    w = torch.randn(2, tiny64.w_dim)
    wp = w_to_wplus(w, tiny64.num_ws)
    wpp = wplus_to_wpp(wp, tiny64.synthesis.max_channels)
    with torch.no_grad():
        a, b, c = (tiny64.synthesis(x) for x in (w, wp, wpp))
    assert max_err(a, b) == 0
    assert max_err(b, c) <= 1e-4  # shared-weight (W+) vs grouped (W++) conv: same maths


def test_wpp_codes_act_per_filter(tiny32):
    """Changing one filter's code changes only layers that read it; changing an unused slot does nothing."""
    torch.manual_seed(1)
    wpp = wplus_to_wpp(torch.randn(1, tiny32.num_ws, tiny32.w_dim), tiny32.synthesis.max_channels)
    base = tiny32.synthesis(wpp)
    last_row = tiny32.num_ws - 1  # last toRGB: only codes 0..2 are live
    moved = wpp.clone()
    moved[:, last_row, 2] += 1.0
    changed = tiny32.synthesis(moved)
    assert max_err(changed[:, 2], base[:, 2]) > 1e-3 and max_err(changed[:, :2], base[:, :2]) == 0
    dead = wpp.clone()
    dead[:, last_row, 5:] += 10.0
    assert max_err(tiny32.synthesis(dead), base) == 0


def test_bad_latent_shape_is_rejected():
    G = small_generator()
    with pytest.raises(ValueError, match="fits none of W"):
        G.synthesis(torch.zeros(1, 3, G.w_dim))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(torch.zeros(1, G.w_dim), noise_mode="fresh")


def test_mapping_never_updates_w_avg_unless_asked():
    G = small_generator()
    before = G.mapping.w_avg.clone()
    G.train()
    G.mapping(torch.randn(4, G.z_dim))
    assert torch.equal(G.mapping.w_avg, before)
    G.mapping(torch.randn(4, G.z_dim), update_w_avg=True)
    assert not torch.equal(G.mapping.w_avg, before)


def test_fresh_generator_starts_like_the_official_one(tiny32):
    """Built from scratch (training, widening), buffers and style biases take the official
    initial values: loading a pickle overwrites them, so the golden tests cannot see them."""
    G = Generator(**tiny32.init_kwargs)
    official = dict(tiny32.named_buffers())
    filters = [k for k in official if k.endswith("resample_filter")]
    assert filters and all(torch.equal(dict(G.named_buffers())[k], official[k]) for k in filters)
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert torch.allclose(official[filters[0]], torch.outer(f, f) / 64)  # [1, 3, 3, 1], sum 1
    affine_biases = [p for k, p in G.named_parameters() if k.endswith("affine.bias")]
    assert affine_biases and all(torch.equal(b, torch.ones_like(b)) for b in affine_biases)


@pytest.mark.parametrize("resolution", [2, 48, 100])
def test_resolution_must_be_a_power_of_two(resolution):
    with pytest.raises(ValueError, match="power of two"):
        Generator(16, 0, 16, resolution, 3, synthesis_kwargs=dict(channel_base=128, channel_max=16))


def test_generator_call_is_mapping_then_synthesis():
    G = small_generator()
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(G(z), G.synthesis(G.mapping(z), noise_mode="const"))
        assert torch.equal(G(z, truncation_psi=0.5), G.synthesis(G.mapping(z, truncation_psi=0.5)))


def test_latents_lift_upwards_and_refuse_to_lower():
    from rusir.inversion.latents import convert, space_of

    G = small_generator()
    w = torch.randn(2, G.w_dim)
    wp, wpp = convert(w, "W+", G), convert(w, "W++", G)
    assert (wp.shape, wpp.shape) == ((2, G.num_ws, G.w_dim), (2, G.num_ws, G.synthesis.max_channels, G.w_dim))
    assert [space_of(x) for x in (w, wp, wpp)] == ["W", "W+", "W++"]
    assert torch.equal(convert(wpp, "W++", G), wpp) and torch.equal(convert(wp, "W++", G), wpp)
    for latent, space in ((wpp, "W"), (wpp, "W+"), (wp, "W")):
        with pytest.raises(ValueError, match="cannot lower"):
            convert(latent, space, G)
    with pytest.raises(ValueError, match="unknown latent space"):
        convert(w, "Z", G)
