"""Grayscale as a degradation: BT.601 weights, Pillow's conversion as the truth, composition, stop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import mse as mse_loss, procedural_images, small_generator
from rusir import degradations
from rusir.degradations import (BT601, COMPOSITIONS, Composition, Grayscale, is_grayscale, make,
                                to_grayscale, with_grayscale)
from rusir.degradations.base import cycle_8bit
from rusir.inversion.discrepancy import noise_floor
from rusir.inversion.restore import restore


def eight_bit(b=2, side=32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, side, side), generator=g).float() / 255


def test_weights_are_bt601_and_known_answers():
    assert BT601 == (0.299, 0.587, 0.114) and sum(BT601) == pytest.approx(1)
    x = torch.zeros(3, 3, 1, 1)
    for c in range(3):
        x[c, c] = 1                                   # pure red, green, blue
    y = to_grayscale(x)
    assert y.shape == (3, 3, 1, 1)
    assert y[:, 0, 0, 0].tolist() == pytest.approx(list(BT601))
    truth = Grayscale().degrade_ground_truth(x)       # Pillow rounds 76.245, 149.685, 29.07
    assert (truth[:, 0, 0, 0] * 255).round().tolist() == [76, 150, 29]
    assert make("G").params() == {"weights": "ITU-R BT.601", "rgb": list(BT601)}   # in every record


def test_truth_is_pillows_convert_L_replicated_to_three_channels():
    x = eight_bit()
    y = Grayscale().degrade_ground_truth(x)
    assert y.shape == x.shape and torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    for img, out in zip(x, y):
        rgb = Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy(), "RGB")
        expected = np.asarray(rgb.convert("L"), dtype=np.float32) / 255
        assert np.array_equal(out[0].numpy(), expected)


def test_approximation_is_the_truth_up_to_half_a_level_and_its_gradient_the_weights():
    x = eight_bit().requires_grad_(True)
    g = Grayscale()
    approx = g.degrade_prediction(x)
    assert (approx - g.degrade_ground_truth(x)).abs().max() <= 0.5 / 255 + 1e-6
    approx[:, 0].sum().backward()                     # one output channel: d/dx = the weights
    assert x.grad[0, :, 0, 0].tolist() == pytest.approx(list(BT601))


def test_deterministic_redraw_equals_the_truth_and_the_floor_is_rounding_only():
    x = eight_bit()
    g = Grayscale(seed=5)
    truth = g.degrade_ground_truth(x)
    assert torch.equal(g.redraw(x, draw=3), truth)
    assert torch.equal(Grayscale(seed=99).degrade_ground_truth(x), truth)   # no seed involved
    mse = lambda a, b, mask=None: ((a - b) ** 2).flatten(1).mean(1)        # noqa: E731
    floor = noise_floor(mse, g, x, g.degrade_prediction(x), None, draw=0)
    assert floor.shape == (2,) and float(floor.max()) < (0.5 / 255) ** 2


def test_composes_last_and_equals_the_manual_chain():
    assert "G" not in "".join(COMPOSITIONS) and len(COMPOSITIONS) == 11   # the paper's eleven
    x = procedural_images(2, 64)
    ug = make("UG", "M", seed=4)
    assert isinstance(ug, Composition) and [s.name for s in ug.stages] == ["upsampling", "grayscale"]
    up = make("upsampling", "M", seed=4)
    manual = Grayscale().degrade_ground_truth(cycle_8bit(up.degrade_ground_truth(x)))
    assert torch.equal(ug.degrade_ground_truth(x), manual)
    assert ug.degrade_ground_truth(x).shape == (2, 3, 8, 8)
    assert torch.allclose(ug.degrade_prediction(x), to_grayscale(up.degrade_prediction(x)))
    for name in ("UNAPG", "NG", "PG", "G"):
        y = make(name, "M", seed=0).degrade_ground_truth(x)
        assert torch.equal(y[:, 0], y[:, 2]), name    # the target is grey whatever came before
    with pytest.raises(ValueError, match="unknown degradation"):
        make("GU", "M")                               # G comes last


def test_task_names_and_with_grayscale():
    assert degradations.canonical_task("g") == "grayscale"
    assert degradations.canonical_task("ug") == "UG"
    assert degradations.task_names("UNG") == {"upsampling", "denoising", "grayscale"}
    assert [with_grayscale(t) for t in ("upsampling", "UNAP", "identity", "UG", "grayscale")] == [
        "UG", "UNAPG", "grayscale", "UG", "grayscale"]
    with pytest.raises(ValueError, match="does not compose with grayscale"):
        with_grayscale("blur")


def test_is_grayscale():
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert not is_grayscale(Image.fromarray(rgb, "RGB"))
    grey = Image.fromarray(rgb, "RGB").convert("L")
    assert is_grayscale(grey) and is_grayscale(grey.convert("RGB"))
    assert is_grayscale(grey.convert("LA"))


def test_restore_with_grayscale_fits_the_luminance_and_the_stop_runs():
    torch.set_num_threads(1)
    G = small_generator(resolution=16)
    truth = (G.synthesis(G.mapping(torch.randn(1, 16), None)[:, 0]) + 1) / 2
    deg = make("G", "M", seed=0)
    target = deg.degrade_ground_truth(truth.clamp(0, 1))
    out = restore(G, target, deg, loss=mse_loss, steps=(3, 3, 3), discrepancy=1.0, progress=False)
    assert out.images.shape == (1, 3, 16, 16) and torch.isfinite(out.images).all()


# --- black-and-white photos: `rusir restore --color keep|restore` --------------------------------

def _grey_and_colour(tmp_path):
    rgb = (procedural_images(1, 8, seed=3)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "colour.png")
    Image.fromarray(rgb, "RGB").convert("L").save(tmp_path / "grey.png")
    return tmp_path / "grey.png", tmp_path / "colour.png"


def test_color_tasks_add_grayscale_to_black_and_white_inputs_only(tmp_path):
    from rusir.restore_files import color_tasks
    grey, colour = _grey_and_colour(tmp_path)
    tasks, kept = color_tasks([grey, colour], "upsampling")
    assert tasks == {grey: "UG", colour: "upsampling"} and kept == {grey}
    tasks, kept = color_tasks([grey, colour], "UNAP", "restore")
    assert tasks == {grey: "UNAPG", colour: "UNAP"} and kept == set()
    with pytest.raises(ValueError, match="--color must be one of"):
        color_tasks([grey], "upsampling", "sepia")
    with pytest.raises(ValueError, match="does not compose with grayscale"):
        color_tasks([grey], "blur")


def test_restore_keeps_a_grey_photo_grey_or_restores_its_colour(tmp_path, monkeypatch):
    from rusir import restore_files as rf
    grey, colour = _grey_and_colour(tmp_path)
    seen = []
    real = rf.restore

    def spy(G, target, deg, **kwargs):
        seen.append(deg.name)
        return real(G, target, deg, **{**kwargs, "steps": (1, 1, 2)})
    monkeypatch.setattr(rf, "restore", spy)
    kw = dict(device="cpu", discrepancy=0)
    out = rf.restore_files([grey, colour], "upsampling", out=tmp_path / "keep", **kw)
    assert seen == ["UG", "upsampling"]
    kept = np.asarray(Image.open(out[grey]).convert("RGB"), dtype=np.int16)
    assert kept.shape == (64, 64, 3) and np.array_equal(kept[..., 0], kept[..., 2])
    coloured = np.asarray(Image.open(out[colour]).convert("RGB"), dtype=np.int16)
    assert np.abs(coloured[..., 0] - coloured[..., 2]).max() > 10      # colour input: colour out
    out = rf.restore_files([grey], "upsampling", out=tmp_path / "restore", color="restore", **kw)
    prior = np.asarray(Image.open(out[grey]).convert("RGB"), dtype=np.int16)
    assert np.abs(prior[..., 0] - prior[..., 2]).max() > 10           # the prior's colour
    luma = lambda a: a @ np.array(BT601)                                # noqa: E731
    assert np.abs(luma(prior) - kept[..., 0]).max() <= 1.01            # same restore, grey or not
    with pytest.raises(ValueError, match="grayscale and colour inputs"):
        rf.restore_files([grey, colour], "upsampling", out=tmp_path / "b", files_per_call=2, **kw)


def test_aligned_grey_photo_comes_back_grey(tmp_path, monkeypatch):
    import json
    from rusir import restore_files as rf
    from rusir.data import avatars, heldout
    from rusir.faces.scenes import place_faces
    scene = place_faces(heldout(1), avatars.landmarks(64), np.random.default_rng(0), cell=100,
                        side=(0.5, 0.6))
    arr = (scene.photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr, "RGB").convert("L").save(tmp_path / "old.png")
    (tmp_path / "lm.json").write_text(json.dumps([lm.tolist() for lm in scene.landmarks]))
    seen, real = [], rf.restore_photo

    def spy(G, photo, task, level, **kwargs):
        seen.append(task)
        return real(G, photo, task, level, **{**kwargs, "steps": (1, 1, 1)})
    monkeypatch.setattr(rf, "restore_photo", spy)
    out = rf.restore_files([tmp_path / "old.png"], "denoising", out=tmp_path / "out", align=True,
                           landmarks=tmp_path / "lm.json", device="cpu", discrepancy=0)
    assert seen == ["NG"]
    for path in (out[tmp_path / "old.png"], tmp_path / "out" / "old_face0_restored.png"):
        a = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]), path
