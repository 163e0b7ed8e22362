"""The StyleGAN3 generator against the official one: golden outputs of the tiny official-format
fixtures (T 32 px, R 64 px; ../shared/fixtures/stylegan3-tiny/README.md), loaded by the
exec-free loader, on CPU float32. Tolerances as the README suggests: 1e-4 max abs, 1e-3 for the
image whose values reach +-64 (img_big_ws)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from conftest import ROOT
from rusir.model.filtered_lrelu import lowpass_filter
from rusir.model.stylegan3 import Generator, StyleGAN3Config, design_layers
from rusir.model.stylegan3_pkl import load_stylegan3_pickle, stylegan3_design
from rusir.model.unpickler import read_network_pickle

SG3_FIXTURES = ROOT.parent / "shared" / "fixtures" / "stylegan3-tiny"
NAMES = ["sg3t32", "sg3r64"]
TOL = 1e-4
TOL_BIG = 1e-3

pytestmark = pytest.mark.usefixtures("one_thread")


def sg3_fixture(name: str):
    path = SG3_FIXTURES / name
    if not path.exists():
        pytest.skip(f"fixture {path} absent: ../shared (official StyleGAN3 fixtures) is not beside the repo")
    return path


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    """(name, our generator holding the file's G_ema, golden arrays as tensors)."""
    name = request.param
    G = load_stylegan3_pickle(sg3_fixture(f"{name}.pkl"))
    with np.load(sg3_fixture(f"{name}_golden.npz")) as g:
        golden = {k: torch.from_numpy(g[k]) for k in g.files}
    return name, G, golden


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_mapping_and_truncation(case):
    _, G, g = case
    with torch.no_grad():
        assert max_err(G.mapping(g["z"]), g["ws"]) <= TOL
        assert max_err(G.mapping(g["z"], truncation_psi=0.7), g["ws_psi07"]) <= TOL
        cut = G.mapping(g["z"], truncation_psi=0.5, truncation_cutoff=3)
        assert max_err(cut, g["ws_psi05_cutoff3"]) <= TOL
    assert torch.equal(G.mapping.w_avg, g["w_avg"])


def test_styles_exact_and_every_layer_output(case):
    """Styles equal the golden to the bit; each layer's output (sample 0) within 1e-4."""
    _, G, g = case
    S, ws = G.synthesis, g["ws_random"]
    with torch.no_grad():
        assert torch.equal(S.input.affine(ws[:, 0]), g["style_input"])
        x = S.input(ws[:, 0])
        assert max_err(x[:1], g["layer_x_input"]) <= TOL
        for i, layer in enumerate(S.layers()):
            name = layer.spec.name
            assert torch.equal(layer.affine(ws[:, i + 1]), g[f"style_{name}"]), name
            x = layer(x, ws[:, i + 1])
            assert max_err(x[:1], g[f"layer_x_{name}"]) <= TOL, name


@pytest.mark.parametrize("ws_key,img_key,tol", [("ws", "img", TOL), ("ws_psi07", "img_psi07", TOL),
                                                ("ws_random", "img_random_ws", TOL),
                                                ("ws_big", "img_big_ws", TOL_BIG)])
def test_images(case, ws_key, img_key, tol):
    _, G, g = case
    with torch.no_grad():
        assert max_err(G.synthesis(g[ws_key]), g[img_key]) <= tol


def test_generator_forward_is_mapping_then_synthesis(case):
    _, G, g = case
    with torch.no_grad():
        assert max_err(G(g["z"]), g["img"]) <= TOL
        assert max_err(G(g["z"], truncation_psi=0.7), g["img_psi07"]) <= TOL


def test_user_transform_buffer_and_amplitude_fade(case):
    """A zoom written into `transform` (as gen_images.py does) changes the image as officially;
    the fade of the Fourier amplitudes is exercised only by it."""
    _, G, g = case
    transform = G.synthesis.input.transform
    saved = transform.clone()
    try:
        with torch.no_grad():
            transform.copy_(g["transform_zoom"])
            zoomed = G.synthesis(g["ws_random"])
        assert max_err(zoomed, g["img_random_ws_zoom"]) <= TOL
        assert max_err(zoomed, g["img_random_ws"]) > 1e-2
    finally:
        transform.copy_(saved)


def test_loading_g_instead_of_g_ema_misses_the_goldens():
    path = sg3_fixture("sg3t32.pkl")
    with np.load(sg3_fixture("sg3t32_golden.npz")) as g:
        ws, img = torch.from_numpy(g["ws_random"]), torch.from_numpy(g["img_random_ws"])
    G_ema, G_raw = load_stylegan3_pickle(path), load_stylegan3_pickle(path, key="G")
    with torch.no_grad():
        assert max_err(G_ema.synthesis(ws), img) <= TOL
        assert max_err(G_raw.synthesis(ws), img) > 1e-3
    assert not any(p.requires_grad for p in G_ema.parameters()) and not G_ema.training


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_names_shapes_and_order(name):
    path = sg3_fixture(f"{name}_state_dict.txt")
    listed = [line.split("\t")[:2] for line in path.read_text().splitlines() if line.strip()]
    G = load_stylegan3_pickle(sg3_fixture(f"{name}.pkl"))
    assert [[k, str(tuple(v.shape))] for k, v in G.state_dict().items()] == listed


@pytest.mark.parametrize("listing,cfg", [
    ("sg3t_ffhqu1024_state_dict.txt", StyleGAN3Config()),
    ("sg3r_ffhqu1024_state_dict.txt", StyleGAN3Config(channel_base=65536, channel_max=1024, conv_kernel=1,
                                                      use_radial_filters=True))])
def test_ffhqu_1024_configurations_match_the_official_listing(listing, cfg):
    """Built from the configuration formulas alone: the official FFHQ-U 1024 state-dict names,
    shapes and order (T: 22,313,167 parameters; R: 15,093,151)."""
    listed = [line.split("\t")[:2] for line in sg3_fixture(listing).read_text().splitlines() if line.strip()]
    G = Generator(cfg)
    assert [[k, str(tuple(v.shape))] for k, v in G.state_dict().items()] == listed
    assert sum(p.numel() for p in G.parameters()) == (22_313_167 if cfg.conv_kernel == 3 else 15_093_151)


def _close(a, b) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-12) if isinstance(x, float) else x == y
               for x, y in zip(a.__dict__.values(), b.__dict__.values()))


@pytest.mark.parametrize("name", NAMES)
def test_design_formulas_reproduce_the_files_layers(name):
    """The file's per-layer values equal what design_layers computes from the configuration,
    and the stored filters equal the recomputed Kaiser designs."""
    record = read_network_pickle(sg3_fixture(f"{name}.pkl"))["G_ema"]
    cfg, inp, layers = stylegan3_design(record)
    inp2, layers2 = design_layers(cfg)
    assert _close(inp, inp2)
    assert [s.name for s in layers] == [s.name for s in layers2]
    assert all(_close(a, b) for a, b in zip(layers, layers2))
    G = load_stylegan3_pickle(sg3_fixture(f"{name}.pkl"))
    for layer in G.synthesis.layers():
        s = layer.spec
        for stored, designed in [
                (layer.up_filter, lowpass_filter(s.up_taps, s.in_cutoff, 2 * s.in_half_width,
                                                 s.tmp_sampling_rate)),
                (layer.down_filter, lowpass_filter(s.down_taps, s.out_cutoff, 2 * s.out_half_width,
                                                   s.tmp_sampling_rate, radial=s.down_radial))]:
            assert (stored is None) == (designed is None) == s.is_torgb
            if stored is not None:
                assert max_err(stored, designed) <= 1e-7, s.name


def test_float64_generator_agrees(case):
    """`G.double()` runs the same maths in float64: it lands on the float32 goldens to their
    rounding, so the float32 path is not merely self-consistent."""
    _, G, g = case
    G64 = copy.deepcopy(G).double()
    with torch.no_grad():
        img = G64.synthesis(g["ws_random"].double())
    assert img.dtype == torch.float64
    assert max_err(img.float(), g["img_random_ws"]) <= TOL


@pytest.mark.parametrize("kwargs,message", [
    (dict(img_resolution=48), "power of two"), (dict(z_dim=0), "z_dim"),
    (dict(num_critical=14), "num_critical"), (dict(conv_clamp=float("nan")), "conv_clamp")])
def test_bad_configuration_is_one_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StyleGAN3Config(**kwargs)
