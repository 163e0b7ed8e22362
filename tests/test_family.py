"""The generator seam (rusir.model.family): StyleGAN2 and StyleGAN3 implement it, and RUSIR's
three latent spaces work on both through it alone."""
from __future__ import annotations

import pytest
import torch

from conftest import ROOT, small_generator
from rusir.inversion.latents import convert, init_w, initial_latent
from rusir.model.family import StyleGenerator, check_generator, wpp_filters

SG3_FIXTURES = ROOT.parent / "shared" / "fixtures" / "stylegan3-tiny"

pytestmark = pytest.mark.usefixtures("one_thread")


def sg3(name: str):
    from rusir.model.stylegan3_pkl import load_stylegan3_pickle
    path = SG3_FIXTURES / f"{name}.pkl"
    if not path.exists():
        pytest.skip(f"fixture {path} absent: ../shared (official StyleGAN3 fixtures) is not beside the repo")
    return load_stylegan3_pickle(path)


@pytest.fixture(scope="module", params=["sg3t32", "sg3r64"])
def G3(request):
    return sg3(request.param)


def _w(G, seed: int = 0, batch: int = 2) -> torch.Tensor:
    """W codes [B, w_dim] the generator itself maps (truncated, so images are typical)."""
    z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return G.mapping(z, None, truncation_psi=0.7)[:, 0]


def test_both_families_implement_the_seam(G3):
    for G in (small_generator(), G3):
        assert isinstance(G, StyleGenerator)
        check_generator(G)
        layers = G.modulated_layers()
        assert all(0 <= layer.row < G.num_ws for layer in layers)
        assert wpp_filters(G) == max(layer.filters for layer in layers)
        assert init_w(G, 3).shape == (3, G.w_dim)
        assert torch.equal(init_w(G, 1)[0], G.w_avg)


def test_stylegan3_layers_rows_and_filters(G3):
    layers = G3.modulated_layers()
    assert [layer.row for layer in layers] == list(range(1, G3.num_ws))  # row 0: the input's
    assert layers[-1].filters == G3.img_channels                       # toRGB
    assert wpp_filters(G3) == G3.synthesis.max_channels


def test_stylegan3_expansions_render_the_same_image(G3):
    """W -> W+ -> W++ each render what the code they came from renders (float32 rounding)."""
    w = _w(G3)
    with torch.no_grad():
        images = [G3.synthesis(convert(w, space, G3)) for space in ("W", "W+", "W++")]
    for img in images[1:]:
        assert (img - images[0]).abs().max().item() < 1e-5
    assert images[0].abs().max().item() > 0.05                          # not a blank image
    wpp = initial_latent(G3, "W++", 2)
    assert wpp.shape == (2, G3.num_ws, wpp_filters(G3), G3.w_dim)


def test_stylegan3_expansions_float64_agree_to_rounding(G3):
    G = sg3("sg3t32").double()
    w = _w(G).double()
    with torch.no_grad():
        a, b = G.synthesis(w), G.synthesis(convert(w, "W++", G))
    assert (a - b).abs().max().item() < 1e-12


def test_stylegan3_wpp_gives_each_filter_its_own_code(G3):
    """Moving one filter's code of one layer changes that filter only: the image changes, and a
    code past the layer's width (or past the input's first code) changes nothing."""
    wpp = convert(_w(G3, batch=1), "W++", G3)
    layers = G3.modulated_layers()
    narrow = min(layers, key=lambda layer: layer.filters)
    with torch.no_grad():
        base = G3.synthesis(wpp)
        moved = wpp.clone()
        moved[0, layers[0].row, 0] += 1.0
        assert (G3.synthesis(moved) - base).abs().max().item() > 1e-4
        unused = wpp.clone()
        unused[0, narrow.row, narrow.filters:] += 1.0
        unused[0, 0, 1:] += 1.0
        assert torch.equal(G3.synthesis(unused), base)


def test_stylegan3_bad_latent_shape_is_one_value_error(G3):
    with pytest.raises(ValueError, match="fits none of W"):
        G3.synthesis(torch.zeros(1, G3.num_ws, 2, G3.w_dim))
    with pytest.raises(ValueError, match="noise_mode"):
        G3.synthesis(torch.zeros(1, G3.w_dim), noise_mode="loud")


def test_a_module_without_the_seam_is_refused_by_name():
    with pytest.raises(ValueError, match="w_avg, modulated_layers"):
        init_w(torch.nn.Linear(2, 2), 1)


# --- load_generator recognises the family; restore runs end to end on StyleGAN3 -------------

def test_load_generator_recognises_a_stylegan3_file():
    from rusir.model import stylegan2, stylegan3
    from rusir.model.generators import info, load_generator
    path = SG3_FIXTURES / "sg3t32.pkl"
    if not path.exists():
        pytest.skip(f"fixture {path} absent")
    G = load_generator(path)
    assert isinstance(G, stylegan3.Generator) and not G.training
    record = info(G)
    assert (record.family, record.resolution, record.default_loss) == ("stylegan3", 32, "paper")
    assert record.steps is None and record.lrs is None          # the paper's StyleGAN2 schedule
    assert record.sha256 is not None
    assert isinstance(load_generator(), stylegan2.Generator)
    assert info(load_generator()).family == "stylegan2"


def test_an_unknown_file_names_the_known_families(tmp_path):
    from rusir.model.generators import load_generator
    path = tmp_path / "g.onnx"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="no generator family recognises it .*stylegan2, stylegan3"):
        load_generator(path)


def _psnr(a: torch.Tensor, b: torch.Tensor, peak: float) -> float:
    return 10 * torch.log10(peak / (a - b).square().mean()).item()


def test_restore_inverts_an_image_the_stylegan3_generator_made():
    """Identity and x2 super-resolution, 10 steps per phase with an MSE loss, on sg3t32.
    Measured (PSNR dB against the clean target, peak = target range): start (w_avg) 12.28;
    identity W 20.74, W+ 25.02, W++ 27.92; upsampling x2 W 21.07, W+ 24.33, W++ 27.69."""
    from conftest import generated_target, mse
    from rusir.degradations.upsampling import Upsampling
    from rusir.inversion.restore import render, restore
    G = sg3("sg3t32")
    target = generated_target(G, seed=3)
    peak = (target.max() - target.min()).item() ** 2
    start = _psnr(render(G, G.w_avg[None]), target, peak)
    identity = restore(G, target, loss=mse, steps=(10, 10, 10), progress=False)
    degradation = Upsampling(factor=2)
    low = degradation.degrade_ground_truth(target)
    upsampled = restore(G, low, degradation, loss=mse, steps=(10, 10, 10), progress=False)
    scores = {f"{name} {space}": round(_psnr(phase.images, target, peak), 2)
              for name, result in (("identity", identity), ("x2", upsampled))
              for space, phase in result.phases.items()}
    print("StyleGAN3 sg3t32 restore PSNR (dB): start", round(start, 2), scores)
    assert scores["identity W++"] > scores["identity W"] > start + 5
    assert scores["x2 W++"] > start + 5
    assert identity.images.shape == target.shape == upsampled.images.shape


# --- a third family, registered through the seam only, restores end to end -----------------

class _ToyMapping(torch.nn.Module):
    def __init__(self, z_dim: int, w_dim: int, num_ws: int):
        super().__init__()
        self.num_ws = num_ws
        self.fc = torch.nn.Linear(z_dim, w_dim)
        self.register_buffer("w_avg", torch.randn(w_dim) * 0.3)

    def forward(self, z, c=None, truncation_psi: float = 1.0):  # [B, z] -> [B, num_ws, w]
        w = self.w_avg.lerp(self.fc(z), truncation_psi)
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)


class _ToySynthesis(torch.nn.Module):
    """Row r has FILTERS[r] filters; filter o's style is component o of the row's affine of its
    code (W++: of its own code); the image is tanh of the styles times fixed basis images."""

    def __init__(self, w_dim: int, filters: tuple[int, ...], resolution: int):
        super().__init__()
        self.filters = filters
        self.affines = torch.nn.ModuleList(torch.nn.Linear(w_dim, f) for f in filters)
        self.bases = torch.nn.ParameterList(torch.nn.Parameter(torch.randn(f, 3, resolution, resolution) / f)
                                            for f in filters)

    def forward(self, latent, noise_mode: str = "const"):
        num_ws = len(self.filters)
        if latent.dim() == 2:
            latent = latent.unsqueeze(1).repeat(1, num_ws, 1)
        img = 0
        for r, (affine, basis) in enumerate(zip(self.affines, self.bases)):
            if latent.dim() == 3:
                style = affine(latent[:, r])                                  # [B, O]
            else:
                style = affine(latent[:, r, : self.filters[r]]).diagonal(dim1=1, dim2=2)  # [B, O]
            img = img + torch.einsum("bo,ocij->bcij", style, basis)
        return torch.tanh(img)


class ToyGenerator(torch.nn.Module):
    """Neither StyleGAN2 nor StyleGAN3: only the protocol of rusir.model.family."""
    FILTERS = (4, 6, 3)

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.z_dim = self.w_dim = 8
        self.num_ws, self.img_resolution, self.img_channels = len(self.FILTERS), 16, 3
        self.mapping = _ToyMapping(self.z_dim, self.w_dim, self.num_ws)
        self.synthesis = _ToySynthesis(self.w_dim, self.FILTERS, self.img_resolution)

    @property
    def w_avg(self):
        return self.mapping.w_avg

    def modulated_layers(self):
        from rusir.model.family import ModulatedLayer
        return [ModulatedLayer(f"layer{r}", r, f) for r, f in enumerate(self.FILTERS)]


def test_a_third_family_registered_through_the_seam_restores_end_to_end(tmp_path):
    from conftest import generated_target, mse
    from rusir.degradations.inpainting import Inpainting
    from rusir.inversion.restore import render, restore
    from rusir.model.family import FAMILIES, Family, register_family
    from rusir.model.generators import info, load_generator
    path = tmp_path / "gen.toy"
    path.write_text("7")
    toy = Family("toy", lambda f: f.suffix == ".toy", lambda f: ToyGenerator(int(f.path.read_text())))
    assert register_family(toy) is toy                   # so `FAMILY = register_family(...)` works
    try:
        G = load_generator(path)
    finally:
        FAMILIES.pop("toy")
    assert isinstance(G, ToyGenerator) and info(G).family == "toy"
    from rusir.model.generators import set_info
    with pytest.raises(ValueError, match="must be a GeneratorInfo"):
        set_info(G, {"name": "toy"})
    wpp = convert(init_w(G, 1), "W++", G)
    assert wpp.shape == (1, 3, 6, 8)
    assert torch.allclose(G.synthesis(wpp), G.synthesis(init_w(G, 1)), atol=1e-6)
    target = generated_target(G, seed=1)
    start = mse(render(G, G.w_avg[None]), target).item()
    for degradation in (None, Inpainting()):  # toy bases are noise: x2 upsampling is ill-posed
        seen = target if degradation is None else degradation.degrade_ground_truth(target)
        result = restore(G, seen, degradation, loss=mse, steps=(10, 10, 10), progress=False)
        ratio = mse(result.images, target).item() / start
        print("toy family:", type(degradation).__name__, "MSE / start MSE", round(ratio, 5))
        assert ratio < 0.1


def test_the_baselines_run_on_stylegan3_through_the_seam():
    """PULSE, L-BRGM and Adam-W+ need only the seam too (3 steps each: runs, finite)."""
    from conftest import generated_target, mse
    from rusir.baselines import get_method
    from rusir.degradations import make
    G = sg3("sg3t32")
    clean = generated_target(G, seed=8)
    fast = {"pulse": dict(fit_samples=256), "lbrgm": dict(init_candidates=4), "adam_wplus": {}}
    for name, options in fast.items():
        deg = make("inpainting", "M", seed=0)
        target = deg.degrade_ground_truth(clean)
        result = get_method(name)(G, target, deg, loss=mse, steps=3, progress=False, **options)
        assert result.images.shape == clean.shape and torch.isfinite(result.images).all()


@pytest.mark.parametrize("name", ["sg3t32.pkl", "tiny32.pkl"])
def test_load_generator_reads_a_pickle_once(name, monkeypatch):
    """Recognising the family and loading read the file once (the GeneratorFile keeps what it
    read), for a StyleGAN3 pickle and a StyleGAN2 one (which the StyleGAN3 family looks at first)."""
    from conftest import fixture_path
    from rusir.model import generators, pkl, stylegan2, stylegan3, stylegan3_pkl, unpickler
    from rusir.model.generators import load_generator
    path = SG3_FIXTURES / name if name.startswith("sg3") else fixture_path(name)
    if not path.exists():
        pytest.skip(f"fixture {path} absent")
    reads = []

    def counted(file):
        reads.append(file)
        return unpickler.read_network_pickle(file)

    for module in (generators, pkl, stylegan3_pkl):           # every module that reads pickles
        monkeypatch.setattr(module, "read_network_pickle", counted)
    G = load_generator(path)
    assert isinstance(G, stylegan3.Generator if name.startswith("sg3") else stylegan2.Generator)
    assert len(reads) == 1
