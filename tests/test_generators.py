"""load_generator: names, paths, offline errors; the CLI's clear errors; autocast paths."""
from __future__ import annotations

import pytest
import torch

from conftest import fixture_path, small_generator
from rusir.model.checkpoint import save_generator
from rusir.cli import main
from rusir.model.generators import REGISTRY, load_generator
from rusir.model.generators import info as generator_info
from rusir.model.weights import MissingWeightsError


def test_official_name_offline_names_file_url_and_place(monkeypatch, tmp_path):
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as err:
        load_generator("ffhq")
    text = str(err.value)
    assert "ffhq.pkl" in text and "https://nvlabs-fi-cdn.nvidia.com/" in text and "put it at" in text


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="toyfaces64"):
        load_generator("celeba-9000")


def test_pickle_and_safetensors_paths_load_the_same_network(tmp_path):
    G = load_generator(str(fixture_path("tiny32.pkl")))
    assert generator_info(G).default_loss == "paper" and not any(p.requires_grad for p in G.parameters())
    path = save_generator(G, tmp_path / "g.safetensors", meta={"default_loss": "offline"})
    H = load_generator(path)
    assert generator_info(H).default_loss == "offline"
    ws = torch.randn(1, G.num_ws, G.w_dim)
    assert torch.equal(G.synthesis(ws), H.synthesis(ws))


def test_embedded_default_loads_if_shipped():
    info = REGISTRY["toyfaces64"]
    if not info.path.is_file():
        pytest.skip("embedded generator not trained/shipped yet")
    G = load_generator("toyfaces64")
    assert G.img_resolution == 64 and generator_info(G).default_loss == "offline"
    img = G.synthesis(G.mapping.w_avg[None])
    assert img.shape == (1, 3, 64, 64) and torch.isfinite(img).all()


def test_cli_reports_bad_input_without_traceback(capsys, tmp_path):
    assert main(["restore", str(tmp_path / "missing.png"), "--task", "upsampling",
                 "--generator", str(fixture_path("tiny32.pkl"))]) == 2
    assert "no such image file" in capsys.readouterr().err
    (tmp_path / "a.png").write_bytes(b"not an image")
    assert main(["restore", str(tmp_path / "a.png"), "--task", "teleport",
                 "--generator", str(fixture_path("tiny32.pkl"))]) == 2
    assert "unknown degradation 'teleport'" in capsys.readouterr().err


def test_cli_restore_simulated_writes_outputs(tmp_path):
    from PIL import Image
    Image.new("RGB", (40, 30), (200, 120, 60)).save(tmp_path / "clean.png")
    assert main(["restore", str(tmp_path / "clean.png"), "--simulate", "--task", "upsampling",
                 "--level", "XS", "--steps", "2,2,2", "--loss", "offline",
                 "--generator", str(fixture_path("tiny32.pkl")), "--out", str(tmp_path / "o")]) == 0
    out = tmp_path / "o"
    assert (out / "clean_restored.png").is_file() and (out / "clean_phases.png").is_file()
    latents = torch.load(out / "clean_latent.pt", weights_only=True)
    assert set(latents) == {"W", "W+", "W++"} and latents["W++"].dim() == 4


def test_bf16_autocast_runs_close_to_fp32():
    G = small_generator()
    ws = G.mapping.w_avg[None] + 0.3 * torch.randn(2, G.w_dim)
    ref = G.synthesis(ws)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = G.synthesis(ws)
    assert torch.isfinite(low).all()
    assert (low.float() - ref).abs().max().item() < 0.1 * ref.abs().max().item()


@pytest.mark.parametrize("where", ["traversal", "absolute", "relative"])
def test_a_model_files_default_loss_names_a_shipped_preset_never_a_file(tmp_path, monkeypatch, where):
    """A file's metadata `default_loss` used to be joined to the preset folder (or taken as a
    YAML path): a model file chose which YAML file rusir read. Now only a bare name passes, and
    names resolve only among the shipped presets."""
    import os
    from rusir.inversion import presets
    from rusir.model.checkpoint import CheckpointError
    evil = tmp_path / "evil_loss.yaml"
    evil.write_text(presets.PRESET_DIR.joinpath("offline.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    name = {"traversal": os.path.relpath(tmp_path / "evil_loss", presets.PRESET_DIR),
            "absolute": str(evil), "relative": "evil_loss.yaml"}[where]
    path = save_generator(small_generator(), tmp_path / "g.safetensors", meta={"default_loss": name})
    with pytest.raises(CheckpointError, match=r"meta 'default_loss' is .*, not a loss preset name") as err:
        load_generator(path)
    assert "\n" not in str(err.value)
    if where == "traversal":   # the preset layer's own lookup: names only among the shipped files
        with pytest.raises(ValueError, match=r"unknown loss preset '\.\./.*evil_loss'; shipped presets"):
            presets.load_preset(name)


# --- the official StyleGAN3 pickles: registry entries, offline error, alignment ----------------

STYLEGAN3_OFFICIAL = {f"stylegan3-{config}-{data}": alignment for config in "tr"
                      for data, alignment in (("ffhq-1024", "ffhq"), ("ffhqu-1024", "ffhq"),
                                              ("ffhqu-256", "ffhq"), ("metfaces-1024", "metfaces"),
                                              ("metfacesu-1024", "metfaces"), ("afhqv2-512", None))}


@pytest.mark.parametrize("name", sorted(STYLEGAN3_OFFICIAL))
def test_official_stylegan3_name_offline_names_file_url_and_place(name, monkeypatch):
    """Each of NVlabs/stylegan3's twelve published pickles: its NGC URL, the StyleGAN3 family, the
    paper's schedule (untuned for StyleGAN3), no invented checksum, and offline the one error
    that names the file, where to download it and where to put it."""
    from rusir.model import weights
    monkeypatch.setenv("RUSIR_OFFLINE", "1")
    record = REGISTRY[name]
    res = int(name.rsplit("-", 1)[1])
    filename = f"{name}x{res}.pkl"                      # stylegan3-t-ffhqu-256 -> ...-256x256.pkl
    entry = weights.get(record.weight)
    assert entry.url == ("https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/"
                         f"versions/1/files/{filename}")
    assert entry.sha256 is None                         # NGC publishes none; none pinned here
    assert (record.family, record.resolution, record.default_loss) == ("stylegan3", res, "paper")
    assert record.steps is None and record.lrs is None and record.discrepancy is None
    assert record.alignment == STYLEGAN3_OFFICIAL[name]
    if entry.path().is_file():
        pytest.skip(f"{entry.path()} is present: the offline error cannot be shown")
    with pytest.raises(MissingWeightsError) as err:
        load_generator(name)
    text = str(err.value)
    assert filename in text and entry.url in text and f"put it at   {entry.path()}" in text
    assert "RUSIR_OFFLINE=1" in text


def test_photo_templates_of_the_official_generators():
    """FFHQ-U and MetFaces(-U) are aligned as FFHQ / MetFaces; AFHQ and BreCaHAD refuse photos."""
    from rusir.faces.align import template_for
    assert template_for("stylegan3-r-ffhqu-1024").name == "ffhq"
    assert template_for("stylegan3-t-ffhqu-256").side == 1
    assert template_for("stylegan3-t-metfacesu-1024").name == "metfaces"
    assert template_for("toyfaces64").name == "toyfaces64"
    for name in ("stylegan3-t-afhqv2-512", "stylegan3-r-afhqv2-512", "afhqcat", "brecahad"):
        with pytest.raises(ValueError, match=f"generator {name} draws no human faces"):
            template_for(name)
