"""The quickstart notebook's interactive panel: a widget-free controller and a thin ipywidgets view.

`QuickstartController` holds the panel's state and does everything a click does (pick a task,
a level, a held-out image or an uploaded one; run degrade -> restore -> score while reporting
progress and the current image). It knows nothing of widgets, so it is unit-tested without a
browser. `quickstart_panel(controller)` builds the ipywidgets (imported lazily) and binds them to
it: the widgets only forward user actions and redraw from `controller.state` on each update.

    ctl = QuickstartController(G)  # steps: the generator's own schedule
    quickstart_panel(ctl)          # in a notebook: pickers, upload, Run, progress bar, live image
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from PIL import Image, UnidentifiedImageError
from torch import Tensor

from . import degradations
from .data import heldout_paths, load_image, pick_image
from .studies.experiment import TaskRun, run_task
from .degradations.base import to_pil
from .studies.figures import image_grid, run_rows
from .faces.photo import align_face
from .inversion.presets import build_loss
from .inversion.schedule import resolve as resolve_schedule

__all__ = ["PanelState", "QuickstartController", "pick_image", "upload_bytes", "png_bytes",
           "quickstart_panel"]

UPLOAD = "upload"


def upload_bytes(value) -> Optional[bytes]:
    """The bytes of the last file in a FileUpload value (ipywidgets 8 tuple or 7 dict), or None."""
    if not value:
        return None
    if isinstance(value, dict):           # ipywidgets 7: {name: {"content": bytes, ...}}
        value = list(value.values())
    last = list(value)[-1]
    content = last["content"] if isinstance(last, dict) else getattr(last, "content")
    return bytes(content)


def png_bytes(image: Tensor, size: int = 256) -> bytes:
    """[3, h, w] in ~[0, 1] -> PNG bytes at size x size (nearest for small images), for display."""
    pil = to_pil(image, "round")
    if pil.width != size:
        pil = pil.resize((size, size), Image.NEAREST if pil.width < size else Image.BOX)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class PanelState:
    """Everything the view shows."""
    task: str = "upsampling"
    level: str = "M"
    image: Union[int, str] = 0        # held-out index, or "upload" (an uploaded or given file)
    uploaded: Optional[Tensor] = None  # [1, 3, R, R] the user's clean image
    running: bool = False
    progress: float = 0.0              # 0..1 over all phases
    phase: str = ""
    status: str = "ready"
    current: Optional[Tensor] = None   # [3, R, R] latest prediction (or the ground truth)
    run: Optional[TaskRun] = None
    history: list = field(default_factory=list)  # (phase, step, mean loss) per step


class QuickstartController:
    """State and actions of the quickstart panel; `listeners` are called after every change."""

    def __init__(self, G, task: str = "upsampling", level: str = "M", image: Union[int, str] = 0,
                 steps: Optional[Sequence[int]] = None, seed: int = 0, loss=None,
                 loss_preset: Optional[str] = None, align: Optional[str] = None):
        self.G = G
        self.align = align      # a face generator's name: an upload's face is aligned for it
        self.steps = resolve_schedule(G, steps=steps)[0]  # None: the generator's own
        self.seed = seed
        self.loss = loss
        if loss is None and loss_preset:
            self.loss = build_loss(loss_preset)
        self.state = PanelState()
        self.listeners: list[Callable[[PanelState], None]] = []
        self.choose_task(task)
        self.choose_level(level)
        self.choose_image(image)

    # -- options the pickers offer
    @property
    def resolution(self) -> int:
        return int(self.G.img_resolution)

    @staticmethod
    def task_options() -> list[str]:
        return list(degradations.TASKS) + list(degradations.COMPOSITIONS)

    @staticmethod
    def level_options() -> list[str]:
        return list(degradations.LEVELS)

    def image_options(self) -> list[Union[int, str]]:
        options: list[Union[int, str]] = list(range(len(heldout_paths())))
        if self.state.uploaded is not None:
            options.append(UPLOAD)
        return options

    # -- actions
    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener(self.state)

    def _check_idle(self) -> None:
        if self.state.running:
            raise RuntimeError("a restoration is running; wait for it to finish")

    def choose_task(self, task: str) -> None:
        self._check_idle()
        if task not in self.task_options():
            raise ValueError(f"unknown task {task!r}; choose one of {self.task_options()}")
        self.state.task = task
        self._notify()

    def choose_level(self, level: str) -> None:
        self._check_idle()
        if level not in self.level_options():
            raise ValueError(f"unknown level {level!r}; choose one of {self.level_options()}")
        self.state.level = level
        self._notify()

    def choose_image(self, image: Union[int, str]) -> None:
        self._check_idle()
        if image == UPLOAD:
            if self.state.uploaded is None:
                raise ValueError("no uploaded image yet")
        elif isinstance(image, (str, Path)) and not str(image).isdigit():  # a file of one's own
            self.state.uploaded = self._own_image(image)
            image = UPLOAD
        else:
            pick_image(int(image), 8)  # validates the index
            image = int(image)
        self.state.image = image
        self.state.current = self.ground_truth()[0]
        self.state.status = "ready"
        self._notify()

    def upload(self, data: bytes) -> Tensor:
        """Use the uploaded file's bytes as the (clean) image: [1, 3, R, R]."""
        self._check_idle()
        try:
            pil = Image.open(io.BytesIO(bytes(data)))
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"the uploaded file is not a readable image: {exc}") from exc
        self.state.uploaded = self._own_image(pil)
        self.choose_image(UPLOAD)
        return self.state.uploaded

    def _own_image(self, image) -> Tensor:
        """[1, 3, R, R]: the face aligned for `self.align`'s generator (rusir.faces: found by
        YuNet), or the centre-cropped image when not aligning."""
        if self.align:
            return align_face(image, self.resolution, self.align).image
        return load_image(image, self.resolution)

    def ground_truth(self) -> Tensor:
        if self.state.image == UPLOAD:
            return self.state.uploaded
        return pick_image(self.state.image, self.resolution)

    def _on_step(self, info, done: list) -> None:
        done[0] += 1
        s = self.state
        s.progress = done[0] / max(sum(self.steps), 1)
        s.phase = info.phase
        s.current = info.images[0].detach().cpu()
        s.history.append((info.phase, info.step, float(info.loss.mean())))
        s.status = f"{info.phase} step {info.step + 1}/{info.steps}  loss {s.history[-1][2]:.4f}"
        self._notify()

    def run(self) -> TaskRun:
        """Degrade the chosen image with the chosen task/level, restore it (live updates), score it."""
        self._check_idle()
        s = self.state
        s.running, s.progress, s.phase, s.history, s.run = True, 0.0, "", [], None
        s.status = f"restoring ({s.task}, {s.level})"
        self._notify()
        done = [0]
        try:
            run = run_task(self.G, self.ground_truth(), s.task, s.level, seed=self.seed,
                           loss=self.loss, steps=self.steps, progress=False,
                           callback=lambda info: self._on_step(info, done))
        except Exception as exc:
            s.status = f"error: {exc}"
            raise
        finally:
            s.running = False
        s.run, s.progress, s.current = run, 1.0, run.result.images[0].detach().cpu()
        s.status = f"done: {run.summary()}"
        self._notify()
        return run

    def figure(self, cell: int = 128):
        """PIL grid of the last run: target | each phase | naive | ground truth (None before a run)."""
        run = self.state.run
        if run is None:
            return None
        return image_grid(*run_rows(run, images=[0]), cell)


def quickstart_panel(controller: QuickstartController, display: bool = True):
    """The ipywidgets view over `controller`; returns the top-level widget (displayed by default)."""
    # optional (the `notebooks` extra): loaded when a panel is built
    import ipywidgets as w
    from IPython.display import display as show

    s = controller.state
    task = w.Dropdown(options=controller.task_options(), value=s.task, description="task")
    level = w.Dropdown(options=controller.level_options(), value=s.level, description="level")
    image = w.Dropdown(options=controller.image_options(), value=s.image, description="image")
    upload = w.FileUpload(accept="image/*", multiple=False, description="upload")
    run = w.Button(description="Run", button_style="primary", icon="play")
    bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress")
    status = w.Label(value=s.status)
    picture = w.Image(format="png", width=256, height=256)
    result = w.Output()

    syncing = [False]  # True while redraw sets widgets, so that their observers do not act

    def redraw(state: PanelState) -> None:
        syncing[0] = True
        try:
            _redraw(state)
        finally:
            syncing[0] = False

    def _redraw(state: PanelState) -> None:
        bar.value = state.progress
        status.value = state.status
        if state.current is not None:
            picture.value = png_bytes(state.current)
        for widget in (task, level, image, upload, run):
            widget.disabled = state.running
        options = controller.image_options()
        if list(image.options) != options:
            image.options = options
        if image.value != state.image:
            image.value = state.image

    def on_run(_button) -> None:
        result.clear_output()
        try:
            controller.run()
        except Exception as exc:  # shown in the panel, not lost in the log
            status.value = f"error: {exc}"
            return
        with result:
            show(controller.figure())

    def on_upload(change) -> None:
        if syncing[0]:
            return
        data = upload_bytes(change["new"])
        if data is not None:
            try:
                controller.upload(data)
            except (ValueError, OSError, ImportError) as exc:   # not an image, no face, no detector
                status.value = f"error: {exc}"

    def forward(action):
        def observer(change) -> None:
            if not syncing[0]:
                action(change["new"])
        return observer

    task.observe(forward(controller.choose_task), names="value")
    level.observe(forward(controller.choose_level), names="value")
    image.observe(forward(controller.choose_image), names="value")
    upload.observe(on_upload, names="value")
    run.on_click(on_run)
    controller.listeners.append(redraw)
    redraw(s)
    box = w.VBox([w.HBox([task, level, image]), w.HBox([upload, run, bar]), status,
                  w.HBox([picture, result])])
    if display:
        show(box)
    return box
