"""A StyleGAN3 pickle where a StyleGAN2 one goes: photos (`restore_photo`, `rusir restore
--align`), the public API the notebooks call, and the discrepancy stop. (Restore, baselines and bench: test_family.py and
test_stylegan3_bench.py; Ray: test_cluster.py.)

The photo is made from an image the tiny StyleGAN3-T generator (32 px) rendered, framed as an
FFHQ-aligned face: landmarks whose FFHQ quad is exactly the 32 px square, placed in a larger
photo at a random scale, angle and position by rusir.faces.scenes. Aligning the photo with the
generator's own template (FFHQ's) must give back that image.
"""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import generated_target
from rusir.faces import align as A
from rusir.faces.scenes import place_faces
from rusir.degradations.base import to_pil

# Upright landmarks whose FFHQ quad is the 32 px square: eyes 8 px apart (half side 2 x 8 = 16),
# eye-to-mouth 8 px, the quad's centre 0.1 of it below the eyes' midpoint.
FFHQ_LANDMARKS_32 = np.array([[12, 15.2], [20, 15.2], [16, 19], [13, 23.2], [19, 23.2]])

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pkl(sg3t32_pkl) -> Path:
    return sg3t32_pkl


@pytest.fixture(scope="module")
def G(pkl):
    from rusir.model.generators import load_generator
    return load_generator(pkl)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * torch.log10(1 / (a - b).square().mean()).item()


def face_photo(G):
    """(photo [1, 3, 96, 96], landmarks [5, 2] in photo px, the face G rendered [1, 3, 32, 32])."""
    face = generated_target(G, seed=3).clamp(0, 1)
    scene = place_faces(face, FFHQ_LANDMARKS_32, np.random.default_rng(0), cell=96, side=(0.8, 0.9),
                        max_angle=0.3)
    return scene.photo, scene.landmarks[0], face


def test_the_landmarks_frame_the_32px_square():
    np.testing.assert_allclose(A.ffhq_quad(FFHQ_LANDMARKS_32), [[0, 0], [0, 32], [32, 32], [32, 0]],
                               atol=1e-12)


def test_restore_photo_aligns_with_the_stylegan3_generators_template(G):
    """No template given: G's own (a StyleGAN3 file: FFHQ's) frames the face, so the aligned
    target is the image G rendered (measured 42.8 dB: resampling only; the toyfaces64 frame gives
    25.8 dB), and the restored face is pasted into a photo of the input's size. A generator whose
    info says its images are not faces (AFHQv2) is refused in one line."""
    from rusir.faces.photo import restore_photo
    from rusir.inversion.presets import build_loss
    from rusir.model.generators import info, set_info
    photo, lm, face = face_photo(G)
    result = restore_photo(G, to_pil(photo[0], "round"), "denoising", "M", landmarks=[lm], steps=(1, 1, 1),
                           loss=build_loss("offline"), progress=False)
    (restored,) = result.faces
    np.testing.assert_allclose(restored.face.quad, A.FFHQ.frame(lm), atol=1e-9)
    aligned = psnr(restored.face.image, face)
    misaligned = psnr(A.align(to_pil(photo[0], "round"), lm, 32, A.TOYFACES64).image, face)
    print(f"aligned target vs the rendered face: {aligned:.1f} dB (toyfaces64 frame {misaligned:.1f} dB)")
    assert aligned > 38 and misaligned < aligned - 10
    assert result.photo.shape == photo.shape and torch.isfinite(result.photo).all()
    assert restored.result.images.shape == (1, 3, 32, 32)
    animals = set_info(copy.copy(G), replace(info(G), name="afhq-like", alignment=None))  # same net
    with pytest.raises(ValueError, match="afhq-like draws no human faces"):
        restore_photo(animals, to_pil(photo[0], "round"), "denoising", landmarks=[lm], steps=(1, 1, 1))


def test_cli_restore_align_with_a_stylegan3_pickle(pkl, G, tmp_path):
    """`rusir restore --align --landmarks ... --generator sg3t32.pkl`: the face target written is
    the rendered image (FFHQ alignment), the photo and the face's files are written."""
    from PIL import Image
    from rusir.cli import main
    from rusir.data.images import pil_to_tensor
    photo, lm, face = face_photo(G)
    to_pil(photo[0], "round").save(tmp_path / "photo.png")
    (tmp_path / "lm.json").write_text(json.dumps([lm.tolist()]))
    out = tmp_path / "out"
    rc = main(["restore", str(tmp_path / "photo.png"), "--align", "--landmarks", str(tmp_path / "lm.json"),
               "--generator", str(pkl), "--task", "denoising", "--steps", "1,1,1", "--loss", "offline", "--out", str(out)])
    assert rc == 0
    target = pil_to_tensor(Image.open(out / "photo_face0_target.png"))
    assert target.shape == (1, 3, 32, 32) and psnr(target, face) > 38     # 8-bit PNG of the above
    assert Image.open(out / "photo_restored.png").size == (96, 96)
    assert set(torch.load(out / "photo_face0_latent.pt")) == {"W", "W+", "W++"}


def test_the_notebooks_public_api_takes_a_stylegan3_path(pkl, tmp_path):
    """What notebooks/00_quickstart and 10_task call, with `generator` a path to a StyleGAN3
    pickle: setup, pick_image, restore, score, run_bench (generator_name), records, summary."""
    import rusir
    from rusir.model import stylegan3
    G, loss_fn, steps = rusir.setup(str(pkl), "offline", [1, 1, 1], device="cpu", verbose=False)
    assert isinstance(G, stylegan3.Generator) and G.img_resolution == 32
    truth = rusir.pick_image(0, G.img_resolution)
    degradation = rusir.degradations.make("upsampling", "M", seed=0)
    result = rusir.restore(G, degradation.degrade_ground_truth(truth), degradation, loss=loss_fn,
                           steps=steps, progress=False)
    assert list(result.phases) == ["W", "W+", "W++"]
    assert np.isfinite(rusir.score(result.images, truth)["psnr"][0])
    folder = tmp_path / "task"
    run = rusir.run_bench(G, rusir.heldout(1, size=32), "rusir", "inpainting@M", folder, steps=steps,
                          loss="offline", metrics=["psnr"], batch=1, device="cpu",
                          generator_name=str(pkl), progress=False)
    assert (run.done, run.failed) == (1, 0), run.failures
    assert json.loads((folder / "bench.json").read_text())["generator"] == str(pkl)
    summary = rusir.summarise(rusir.load_records(folder), by=("task", "level"))
    assert "inpainting" in rusir.summary_table(summary, by=("task", "level"))


def test_the_discrepancy_stop_on_stylegan3(G):
    """restore's noise-level stop through the seam: tau huge stops the image at the first judged
    step (W+'s first, after W's window) and keeps that latent through W++; tau tiny never stops."""
    from rusir import degradations, restore
    deg = degradations.make("denoising", "M", seed=0)
    target = deg.degrade_ground_truth(generated_target(G, seed=5).clamp(0, 1))
    options = dict(steps=(12, 3, 3), progress=False, loss="offline")
    stopped = restore(G, target, deg, discrepancy=1e6, **options)
    assert stopped.info["stopped"] == ["W+:0"]
    assert [len(p.losses) for p in stopped.phases.values()] == [12, 1, 0]
    assert torch.allclose(stopped.images, stopped.phases["W+"].images)
    never = restore(G, target, deg, discrepancy=1e-9, **options)
    assert never.info["stopped"] == [None]
    assert [len(p.losses) for p in never.phases.values()] == [12, 3, 3]
