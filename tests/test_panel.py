"""The quickstart panel: controller logic without a browser, and the widget binding."""
from __future__ import annotations

import datetime
import io
import math

import pytest
import torch
from PIL import Image

from conftest import small_generator
from rusir.panel import (UPLOAD, QuickstartController, pick_image, png_bytes, quickstart_panel,
                         upload_bytes)

STEPS = (2, 1, 1)


@pytest.fixture(scope="module")
def G():
    return small_generator(resolution=32)


@pytest.fixture
def ctl(G):
    return QuickstartController(G, "denoising", "S", 3, steps=STEPS, loss_preset="offline")


def _png(color=(200, 30, 30), size=(40, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_pick_image_index_and_path(tmp_path):
    a = pick_image(2, 32)
    assert a.shape == (1, 3, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, pick_image(3, 32))
    path = tmp_path / "x.png"
    path.write_bytes(_png())
    b = pick_image(str(path), 32)
    assert b.shape == (1, 3, 32, 32)
    assert torch.allclose(b[0, :, 5, 5], torch.tensor([200, 30, 30]) / 255, atol=1e-6)
    with pytest.raises(ValueError):
        pick_image(64, 32)
    with pytest.raises(ValueError):
        pick_image(-1, 32)


def test_initial_state_and_choices(ctl):
    s = ctl.state
    assert (s.task, s.level, s.image, s.running, s.progress) == ("denoising", "S", 3, False, 0.0)
    assert torch.equal(s.current, pick_image(3, 32)[0])   # shows the chosen ground truth
    assert "UNAP" in ctl.task_options() and "inpainting" in ctl.task_options()
    assert ctl.level_options() == ["XS", "S", "M", "L", "XL"]
    assert ctl.image_options() == list(range(64))       # no upload yet
    seen = []
    ctl.listeners.append(lambda state: seen.append((state.task, state.level, state.image)))
    ctl.choose_task("UNAP")
    ctl.choose_level("XL")
    ctl.choose_image(7)
    assert seen == [("UNAP", "S", 3), ("UNAP", "XL", 3), ("UNAP", "XL", 7)]
    for bad in (lambda: ctl.choose_task("sharpening"), lambda: ctl.choose_level("XXL"),
                lambda: ctl.choose_image(99), lambda: ctl.choose_image(UPLOAD)):
        with pytest.raises(ValueError):
            bad()
    assert (ctl.state.task, ctl.state.level, ctl.state.image) == ("UNAP", "XL", 7)


def test_upload_bytes_formats():
    data = _png()
    assert upload_bytes(None) is None and upload_bytes(()) is None and upload_bytes({}) is None
    v8 = ({"name": "a.png", "content": memoryview(b"old")}, {"name": "b.png", "content": memoryview(data)})
    assert upload_bytes(v8) == data                            # ipywidgets 8: tuple, last file wins
    assert upload_bytes({"b.png": {"content": data}}) == data  # ipywidgets 7: dict by name


def test_upload_becomes_the_image(ctl):
    t = ctl.upload(_png(size=(60, 30)))
    assert t.shape == (1, 3, 32, 32)
    assert ctl.state.image == UPLOAD and UPLOAD in ctl.image_options()
    assert torch.equal(ctl.ground_truth(), t)
    ctl.choose_image(0)
    assert ctl.state.image == 0 and not torch.equal(ctl.ground_truth(), t)
    ctl.choose_image(UPLOAD)                                   # the upload is kept
    assert torch.equal(ctl.ground_truth(), t)
    with pytest.raises(ValueError, match="not a readable image"):
        ctl.upload(b"definitely not an image")
    assert torch.equal(ctl.ground_truth(), t)


def test_run_reports_progress_and_images(ctl):
    ctl.choose_task("upsampling")
    updates = []
    ctl.listeners.append(lambda s: updates.append((s.running, s.progress, s.phase,
                                                   None if s.current is None else s.current.clone())))
    run = ctl.run()
    n = sum(STEPS)
    assert len(updates) == n + 2                               # start, every step, end
    progress = [u[1] for u in updates]
    assert progress[0] == 0.0 and progress[-1] == 1.0
    assert progress == sorted(progress) and math.isclose(progress[1], 1 / n)
    assert [u[2] for u in updates[1:-1]] == ["W"] * 2 + ["W+", "W++"]
    assert all(u[0] for u in updates[:-1]) and not updates[-1][0]
    assert all(u[3].shape == (3, 32, 32) for u in updates)
    assert not torch.equal(updates[1][3], updates[-2][3])      # the image changes as phases run
    assert torch.equal(ctl.state.current, run.result.images[0])
    assert ctl.state.run is run and run.task == "upsampling" and run.level == "S"
    assert "PSNR" in ctl.state.status and len(ctl.state.history) == n
    assert math.isfinite(run.scores["restored"]["psnr"][0])
    fig = ctl.figure()
    assert fig.size[0] > 5 * 128                               # target, W, W+, W++, naive, truth


def test_actions_refused_while_running(ctl):
    errors = []

    def meddle(state):
        if state.running and state.progress > 0 and not errors:
            for action in (lambda: ctl.choose_task("denoising"), ctl.run, lambda: ctl.upload(_png())):
                with pytest.raises(RuntimeError):
                    action()
            errors.append(True)
    ctl.listeners.append(meddle)
    ctl.run()
    assert errors and ctl.state.task == "denoising" and not ctl.state.running


def test_run_error_leaves_panel_usable(ctl):
    ctl.loss = lambda x, y, mask=None: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        ctl.run()
    assert not ctl.state.running and ctl.state.status.startswith("error")
    ctl.choose_level("M")                                       # not stuck in "running"


def test_png_bytes():
    data = png_bytes(torch.rand(3, 8, 8), size=64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(data)).size == (64, 64)


def test_widgets_bind_to_controller(ctl):
    pytest.importorskip("ipywidgets")
    box = quickstart_panel(ctl, display=False)
    widgets = {type(w).__name__: w for w in _walk(box)}
    dropdowns = [w for w in _walk(box) if type(w).__name__ == "Dropdown"]
    task, level, image = dropdowns
    task.value = "inpainting"
    level.value = "L"
    image.value = 5
    assert (ctl.state.task, ctl.state.level, ctl.state.image) == ("inpainting", "L", 5)
    upload = widgets["FileUpload"]
    data = _png()
    upload.value = ({"name": "me.png", "type": "image/png", "size": len(data),
                     "content": memoryview(data), "last_modified": datetime.datetime.now()},)  # as sent
    assert ctl.state.image == UPLOAD and torch.equal(ctl.ground_truth(), pick_image_bytes(data))
    assert image.value == UPLOAD and UPLOAD in image.options
    widgets["Button"].click()                                   # Run
    assert widgets["FloatProgress"].value == 1.0
    assert "PSNR" in widgets["Label"].value
    assert widgets["Image"].value[:4] == b"\x89PNG"
    assert not upload.disabled and not task.disabled


def pick_image_bytes(data: bytes) -> torch.Tensor:
    from rusir.data import load_image
    return load_image(Image.open(io.BytesIO(data)), 32)


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_an_upload_is_aligned_for_a_face_generator(G, monkeypatch):
    """With `align`, the uploaded photo's face (landmarks from a stub detector) is cut out as the
    generator's data were framed: here exactly the 32 px avatar placed in a larger photo."""
    import numpy as np
    from rusir.data import avatars, heldout
    from rusir.faces import detect
    from rusir.faces.scenes import place_faces
    s = place_faces(heldout(1), avatars.landmarks(64), np.random.default_rng(0), cell=200,
                    side=(0.6, 0.8))
    photo = Image.fromarray((s.photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    buf = io.BytesIO()
    photo.save(buf, format="PNG")
    monkeypatch.setattr(detect, "detect_faces", lambda img: [s.landmarks[0]])
    ctl = QuickstartController(G, "denoising", "S", 0, steps=STEPS, loss_preset="offline",
                               align="toyfaces64")
    t = ctl.upload(buf.getvalue())
    face = torch.nn.functional.interpolate(heldout(1), size=32, mode="area")
    assert t.shape == (1, 3, 32, 32) and float((t - face).abs().mean()) < 0.02
    monkeypatch.setattr(detect, "detect_faces", lambda img: [])
    with pytest.raises(ValueError, match="no face found"):
        ctl.upload(buf.getvalue())
