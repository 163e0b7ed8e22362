"""Restore image files from disk: what `rusir restore` does, usable from Python too.

Everything that can be checked without the generator is checked before it is loaded, so a bad
call fails in a second with one message instead of after the compute (or, worse, half-way
through the files): the task and level, the schedule, the device, the loss, the output folder
and the output names, every input image and the mask; with `align`, the faces of every photo
(found before the generator is loaded: "no face found" comes first).

Without `align` an image is centre-cropped and resized to the generator's frame. With it, each
face is aligned as the generator's dataset was (`rusir.faces`), restored, and pasted back.
"""
from __future__ import annotations

import math
import re
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from . import degradations
from .data.images import load_image, open_image
from .data.inputs import regular_file
from .data.outputs import OutputClaims, check_output, write_file
from .degradations.base import to_pil
from .studies.experiment import check_device, setup
from .studies.figures import save_grid
from .faces.align import LandmarkWarning, check_landmarks, template_for
from .faces.photo import FaceRestoration, PhotoOutput, find_faces, photo_rgb, restore_photo
from .inversion.discrepancy import check_tau
from .inversion.latents import SPACES
from .inversion.presets import build_loss
from .inversion.restore import restore
from .inversion.schedule import check_rate, check_steps
from .validation import MAX_BATCH, MAX_FACTOR, MAX_SEED, number, read_json, whole

__all__ = ["restore_files", "output_names", "check_output_dir", "check_mask", "read_landmarks",
           "color_tasks"]

# what is written per input, named after its file name without the extension
OUTPUTS = ("{stem}_restored.png", "{stem}_phases.png", "{stem}_latent.pt")
# with `align`: the whole photo, and per face i the aligned target, its restoration, the
# side-by-side figure (target | W | W+ | W++) and the latents
FACE_OUTPUTS = ("{stem}_face{i}_target.png", "{stem}_face{i}_restored.png",
                "{stem}_face{i}_phases.png", "{stem}_face{i}_latent.pt")
# with `align`: each face's restoration as soon as it is done, found again by a re-run
FACES_DIR = "{stem}.faces"
# a mask of another size is used when its aspect ratio is the image's within this (then resized)
MASK_ASPECT_TOLERANCE = 0.01
COLORS = ("keep", "restore")   # a grayscale input's output: its restored luminance, or the prior's colour
AUTO_GROUP = 32        # files per group with --files-per-call auto (chunked inside to fit the GPU)


def output_names(images: Sequence[Path], out: Path) -> dict[Path, list[Path]]:
    """{input: the files written for it}. Two inputs with the same file name stem (`a/x.png` and
    `b/x.png`, or `x.png` and `x.jpg`; compared case-insensitively, as some file systems do)
    would write the same files: refused, naming both, rather than overwriting one with the other
    or renaming outputs in a way a script cannot predict."""
    names: dict[Path, list[Path]] = {}
    first: dict[str, Path] = {}
    for path in images:
        key = path.stem.casefold()
        if key in first:
            raise ValueError(f"inputs {first[key]} and {path} would both write "
                             f"{out / OUTPUTS[0].format(stem=path.stem)} (outputs are named after the "
                             "file name): restore them into separate output folders, or rename one")
        first[key] = path
        names[path] = [out / pattern.format(stem=path.stem) for pattern in OUTPUTS]
    return names


def check_output_dir(out: Union[str, Path]) -> Path:
    """Refuse an output folder that cannot be created or written in, before any compute: a file, a
    path under a file, or a folder this process cannot write in (probed with a temporary file in
    the nearest existing folder, so it is true for root and read-only file systems too). Creates
    nothing."""
    out = Path(out)
    existing = out
    while not existing.exists() and existing.parent != existing:
        if existing.is_symlink():
            raise NotADirectoryError(f"output folder {out}: {existing} is a broken link")
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == out else f"is under {existing}, which is a file"
        raise NotADirectoryError(f"output folder {out} {where}, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise PermissionError(f"output folder {out}: cannot write in {existing} "
                              f"({exc.strerror or exc})") from None
    return out


def _refuse_existing(names: dict[Path, list[Path]], overwrite: bool, align: bool = False) -> None:
    for path, files in names.items():
        if align:      # the per-face names depend on the faces found: any of this stem's,
            # but those of faces a stopped run finished (resumed, kept as they are)
            saved = files[0].parent / FACES_DIR.format(stem=path.stem)
            done = {p.stem for p in saved.glob("face_*.json")} if not overwrite else set()
            files = files[:1] + [f for f in sorted(files[0].parent.glob(f"{path.stem}_face*"))
                                 if _face_of(f, path.stem) not in done]
        for f in files:
            check_output(f, overwrite)


def _face_of(file: Path, stem: str) -> str:
    """"face_<i>" for a per-face output `<stem>_face<i>_...` (its saved record's stem)."""
    m = re.match(re.escape(stem) + r"_face(\d+)_", file.name)
    return f"face_{m[1]}" if m else ""


def read_landmarks(source, paths: Sequence[Path]) -> dict[Path, list]:
    """{image: its faces' landmarks} from a JSON file (or the loaded data): a list of faces, each
    five [x, y] points (or dlib's 68) in photo pixels (one input image), or {file name: list of
    faces}. Faces are numbered in the order given (`--face i` is the i-th listed)."""
    data = source
    if isinstance(source, (str, Path)):
        try:
            data = read_json(regular_file(source, "--landmarks file"), f"--landmarks {source}",
                             finite=True)
        except OSError as exc:
            raise ValueError(f"--landmarks {source}: not a readable JSON file ({exc})") from None
    if isinstance(data, dict):
        missing = [p.name for p in paths if p.name not in data]
        if missing:
            raise ValueError(f"--landmarks: no entry for {', '.join(missing)}")
        given = {p: data[p.name] for p in paths}
    elif len(paths) != 1:
        raise ValueError("--landmarks: a list of faces fits one image; for several give "
                         "{file name: list of faces}")
    else:
        given = {paths[0]: data}
    for path, faces in given.items():
        if not isinstance(faces, list):
            raise ValueError(f"--landmarks: {path.name}: expected a list of faces")
        for i, lm in enumerate(faces):
            try:
                with warnings.catch_warnings():     # a mended order: warned once, when used
                    warnings.simplefilter("ignore", LandmarkWarning)
                    check_landmarks(lm, open_image(path).size)
            except ValueError as exc:
                raise ValueError(f"--landmarks: {path.name}, face {i}: {exc}") from None
    return given


def _same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(math.log((a[0] / a[1]) / (b[0] / b[1]))) <= MASK_ASPECT_TOLERANCE


def check_mask(mask: Path, sizes: dict[Path, tuple[int, int]]) -> tuple[int, int]:
    """The mask's size, if it fits every image: the image's size, or its aspect ratio (within 1%;
    then the mask is resized with the image: both are centre-cropped to a square and resized to
    the generator's resolution, so their pixels still correspond). Any other size is refused (it
    used to be cropped and stretched silently)."""
    size = open_image(mask).size
    for path, image_size in sizes.items():
        if size != image_size and not _same_aspect(size, image_size):
            raise ValueError(
                f"mask {mask} is {size[0]}x{size[1]} px but image {path} is "
                f"{image_size[0]}x{image_size[1]} px: a mask must have the image's size, or its "
                "aspect ratio (then it is resized with the image)")
    return size


def color_tasks(paths: Sequence[Path], task: str, color: Optional[str] = None
                ) -> tuple[dict[Path, str], set[Path]]:
    """({input: its task}, the inputs whose outputs are made grey). A black-and-white input
    (`degradations.is_grayscale`) is restored under its task with grayscale added (`UG` for
    upsampling: fidelity to its luminance only, colour left to the prior); `color` "keep" (the
    default) writes its outputs grey again (the restored luminance, BT.601), "restore" keeps
    the prior's colour. Colour inputs keep their task and colour either way."""
    color = "keep" if color is None else color
    if color not in COLORS:
        raise ValueError(f"--color must be one of {list(COLORS)}, got {color!r}")
    grey = {p for p in paths if degradations.is_grayscale(open_image(p))}
    tasks = {p: degradations.with_grayscale(task) if p in grey else task for p in paths}
    return tasks, (grey if color == "keep" else set())


def _shown(image: torch.Tensor, grey: bool) -> torch.Tensor:
    """An output image [.., 3, H, W] as written: its luminance in 3 channels when kept grey."""
    if not grey:
        return image
    return degradations.to_grayscale(image.reshape(-1, *image.shape[-3:])).reshape(image.shape)


def _user_mask(path: Path, size: int) -> torch.Tensor:
    """A mask image (white = known, black = missing) as [1, 1, size, size] in [0, 1]."""
    return load_image(path, size).mean(1, keepdim=True)


def restore_files(images: Sequence[Union[str, Path]], task: str, level: str = "M",
                  generator: str = "toyfaces64", out: Union[str, Path] = "restored",
                  steps: Optional[Sequence[int]] = None, lr_scale: Optional[float] = None,
                  loss: Optional[str] = None, mask: Optional[Path] = None, simulate: bool = False,
                  seed: int = 0, device: Optional[str] = None, overwrite: bool = False,
                  align: bool = False, face: Optional[int] = None, factor: Optional[float] = None,
                  landmarks=None, files_per_call: Union[int, str] = 1,
                  discrepancy: Optional[float] = None, color: Optional[str] = None,
                  detector: Optional[str] = None,
                  photo: Optional[PhotoOutput] = None) -> dict[Path, Path]:
    """Restore each file; write `<stem>_restored.png`, `<stem>_phases.png`, `<stem>_latent.pt`.

    Without `simulate` each file is the degraded image itself (low resolution for upsampling);
    with it each file is a clean image that is first degraded by the task (a demo/benchmark).
    With `align` each file is a photo: its faces (found by `detector`, "dlib" or "yunet", default
    dlib when installed; or `landmarks`: a JSON file or data, see `read_landmarks`; `face` picks
    one) are aligned, restored (upsampling: `factor`, default the face's native size to the
    generator's) and pasted back (`photo`: scale, mask or square paste; docs/photos.md); it
    writes `<stem>_restored.png` (the whole photo, with the input's transparency) and per face i,
    as soon as it is done, `<stem>_face<i>_target.png`, `_restored.png`, `_phases.png` (target |
    W | W+ | W++), `_latent.pt`, and `<stem>.faces/face_<i>.png` + `.json`, which a re-run of the
    same command reuses (a run stopped part-way resumes). Returns {input path: restored path}.

    files_per_call: files restored together (1, the default: one at a time). n > 1 restores n files
    as one batch (file i keeps its seed, seed + i; in float32 the result differs from one at a
    time by rounding that NGD amplifies: docs/python-api.md); "auto" restores groups of
    AUTO_GROUP files, each in chunks that fit the free GPU memory (`restore(...,
    batch_size="auto")`). Each group's files are written when it finishes. Not with `align`
    (each face is restored on its own). discrepancy: `restore`'s noise-level stop (tau; 0 off;
    None: the generator's own). color: a black-and-white input is restored with grayscale added
    to its task; "keep" (default) writes it grey (restored luminance), "restore" in the prior's
    colour (`color_tasks`).

    Refused before the generator is loaded (ValueError or OSError, one line): an unknown task or
    level; a bad schedule (rusir.inversion.schedule); an unusable device; a bad loss; an output
    folder that is a file, under a file or not writable (`check_output_dir`); two inputs with the
    same file name (`output_names`); an output that exists already, unless `overwrite`; an input
    that is not a readable image (rusir.data.images.open_image); a mask of another aspect ratio
    than an image (`check_mask`; with `align`, of another size); with `align`, a photo without a
    face, a `face` index it does not have, a generator with no face alignment (AFHQ).
    """
    paths = [Path(p) for p in images]
    if not paths:
        raise ValueError("no input images given")
    if files_per_call != "auto":
        files_per_call = whole(files_per_call, "files per call (or 'auto')", 1, MAX_BATCH, "MAX_BATCH")
    seed = whole(seed, "seed", 0, MAX_SEED, "MAX_SEED")
    if align and files_per_call != 1:
        raise ValueError("--files-per-call does not apply with --align (each face is restored alone)")
    degradations.make(task, level, seed=seed)          # an unknown task or level, now
    tasks = degradations.task_names(task) if align else {degradations.canonical_task(task)}
    if mask is not None and "inpainting" not in tasks:     # with --align, compositions too
        raise ValueError("--mask only applies to the inpainting task")
    if not align and (face is not None or factor is not None or landmarks is not None
                      or detector is not None or photo is not None):
        raise ValueError("--face, --factor, --landmarks, --detector, --scale and --paste need "
                         "--align")
    if detector is not None and landmarks is not None:
        raise ValueError("--detector and --landmarks exclude each other (given landmarks are "
                         "not detected)")
    if detector is not None:
        from .faces.detect import detector as check_detector
        check_detector(detector)
    if align and simulate:
        raise ValueError("--simulate cannot be combined with --align (give a degraded photo)")
    if factor is not None and "upsampling" not in degradations.task_names(task):
        raise ValueError(f"--factor only applies to a task with upsampling, got {task!r}")
    if factor is not None:
        factor = number(factor, "--factor", 1.0, MAX_FACTOR, "MAX_FACTOR", strict=False)
    check_tau(discrepancy)
    if steps is not None:
        steps = check_steps(steps, len(SPACES))
    if lr_scale is not None:
        lr_scale = check_rate(lr_scale, "lr_scale")
    device = check_device(device)
    out = check_output_dir(out)
    names = output_names(paths, out)
    _refuse_existing(names, overwrite, align)
    sizes = {path: open_image(path).size for path in paths}   # every input readable, now
    tasks, grey = color_tasks(paths, task, color)             # black-and-white inputs: + G
    if files_per_call != 1 and len(set(tasks.values())) > 1:
        raise ValueError("--files-per-call > 1 with both grayscale and colour inputs: restore them "
                         "in separate runs")
    if mask is not None:
        check_mask(Path(mask), sizes)
    if loss is not None and not callable(loss):
        loss = build_loss(loss)        # a bad preset name or YAML, before the generator
    if align:
        template = template_for(generator)             # AFHQ has no face alignment: now
        faces = _faces_of(paths, landmarks, face, mask, sizes, detector)
        outputs = [f for path in paths
                   for f in _photo_outputs(out, path, len(faces[path]), face, overwrite)]
        with OutputClaims(out, outputs, overwrite):     # another run writing them: refused now
            G, loss_fn, steps = setup(generator, loss, steps, device=device, verbose=False)
            settings = {"generator": str(generator),
                        "loss": loss if loss is None or isinstance(loss, str) else repr(type(loss))}
            return {path: _restore_photo_file(G, path, out, tasks[path], level, faces[path], face,
                                              factor, mask, template, loss_fn, steps, lr_scale,
                                              seed, discrepancy, overwrite, path in grey, photo,
                                              settings)
                    for path in paths}
    with OutputClaims(out, [f for files in names.values() for f in files], overwrite):
        return _restore_in_groups(paths, names, tasks, grey, level, generator, steps, lr_scale, loss,
                                  mask, simulate, seed, device, overwrite, files_per_call, discrepancy)


def _restore_in_groups(paths: Sequence[Path], names: dict[Path, list[Path]], tasks: dict[Path, str],
                       grey: set[Path], level: str,
                       generator: str, steps, lr_scale, loss, mask: Optional[Path], simulate: bool,
                       seed: int, device, overwrite: bool, files_per_call: Union[int, str],
                       discrepancy) -> dict[Path, Path]:
    """Load the generator, restore the files group by group, write each group's outputs."""
    G, loss_fn, steps = setup(generator, loss, steps, device=device, verbose=False)
    device = next(G.parameters()).device
    R = G.img_resolution
    group = AUTO_GROUP if files_per_call == "auto" else files_per_call
    written = {}
    for start in range(0, len(paths), group):
        files = paths[start:start + group]
        if mask is not None:
            deg = degradations.Inpainting.from_mask(_user_mask(mask, R))
        else:
            deg = degradations.make(tasks[files[0]], level, seed=seed + start)   # file i: seed + i
        if simulate:
            truth = torch.cat([load_image(path, R) for path in files]).to(device)
            target = deg.degrade_ground_truth(truth)
        else:
            target = torch.cat([load_image(path, deg.target_size(R)) for path in files]).to(device)
        result = restore(G, target, deg, loss=loss_fn, steps=steps, lr_scale=lr_scale, seed=seed + start,
                         discrepancy=discrepancy, batch_size="auto" if files_per_call == "auto" else None)
        for j, path in enumerate(files):
            restored, phases, latents = names[path]
            columns = [target[j]] + [p.images[j] for p in result.phases.values()]
            labels = ["target"] + list(result.phases)
            if simulate:
                columns, labels = columns + [truth[j]], labels + ["truth"]
            latent = {s: p.latent[j:j + 1].detach().cpu().clone()   # not the whole batch's storage
                      for s, p in result.phases.items()}
            write_file(restored, to_pil(_shown(result.images[j], path in grey), "round").save, overwrite)
            save_grid(phases, [columns], labels, overwrite=overwrite)
            write_file(latents, lambda tmp: torch.save(latent, tmp), overwrite)
            written[path] = restored
    return written


def _faces_of(paths: Sequence[Path], landmarks, face: Optional[int], mask: Optional[Path],
              sizes: dict[Path, tuple[int, int]], detector: Optional[str] = None
              ) -> dict[Path, list]:
    """Every photo's faces (given, or detected now): a photo without one is refused here."""
    if mask is not None and any(open_image(mask).size != size for size in sizes.values()):
        raise ValueError(f"mask {mask} must have the photo's size with --align")
    given = read_landmarks(landmarks, paths) if landmarks is not None else {}
    found = {}
    for path in paths:
        photo, _ = photo_rgb(open_image(path))
        try:
            faces = find_faces(photo, given.get(path), None, str(path), detector)
        except ImportError as exc:      # dlib or OpenCV missing: say how to install it, in one line
            raise ValueError(str(exc)) from None
        find_faces(photo, [lm for _, lm in faces], face, name=str(path))   # --face in range
        found[path] = [lm for _, lm in faces]
    return found


def _photo_outputs(out: Path, path: Path, n_faces: int, face: Optional[int],
                   overwrite: bool = False) -> list[Path]:
    """The files written for a photo with `n_faces` faces (only face `face` when given). A face
    an earlier run of this photo finished (its `<stem>.faces/face_<i>.json` exists) is resumed,
    not redone: its files are kept, so they are not claimed (nor refused as existing)."""
    indices = range(n_faces) if face is None else [face]
    saved = out / FACES_DIR.format(stem=path.stem)
    todo = [i for i in indices if overwrite or not (saved / f"face_{i}.json").is_file()]
    return [out / OUTPUTS[0].format(stem=path.stem)] + [
        out / n.format(stem=path.stem, i=i) for i in todo for n in FACE_OUTPUTS] + [
        f for i in todo for f in _saved_face_files(saved, i)]


def _saved_face_files(saved: Path, i: int) -> list[Path]:
    """Face i's files in `<stem>.faces/`, claimed and checked (no link on the way) with the
    rest. Its PNG without its JSON is what a stopped run left: rewritten, so not refused as
    existing (a link there still is)."""
    image = saved / f"face_{i}.png"
    leftover = image.is_file() and not image.is_symlink()
    return [saved / f"face_{i}.json"] + ([] if leftover else [image])


def _restore_photo_file(G, path: Path, out: Path, task: str, level: str, landmarks: list,
                        face: Optional[int], factor: Optional[float], mask: Optional[Path],
                        template, loss, steps, lr_scale, seed: int, discrepancy=None,
                        overwrite: bool = False, grey: bool = False,
                        photo_output: Optional[PhotoOutput] = None,
                        settings: Optional[dict] = None) -> Path:
    """Restore one photo's faces, writing each face's files as soon as it is done, then the
    photo (grey: as luminance)."""
    photo = open_image(path)
    user_mask = open_image(mask) if mask is not None else None
    output = replace(photo_output or PhotoOutput(), overwrite=overwrite,
                     faces_dir=out / FACES_DIR.format(stem=path.stem))

    def write_face(f: FaceRestoration) -> None:
        if f.result is None:            # resumed: an earlier run wrote its files
            return
        target, restored, phases, latents = (out / n.format(stem=path.stem, i=f.index)
                                             for n in FACE_OUTPUTS)
        write_file(target, to_pil(f.face.image[0], "round").save, overwrite)
        write_file(restored, to_pil(_shown(f.restored[0], grey), "round").save, overwrite)
        columns = [f.face.image[0]] + [p.images[0].detach().cpu() for p in f.result.phases.values()]
        save_grid(phases, [columns], ["target"] + list(f.result.phases), overwrite=overwrite)
        latent = {s: p.latent.cpu() for s, p in f.result.phases.items()}
        write_file(latents, lambda tmp: torch.save(latent, tmp), overwrite)

    result = restore_photo(G, photo, task, level, landmarks=landmarks, template=template,
                           face=face, factor=factor, mask=user_mask, loss=loss, seed=seed,
                           steps=steps, lr_scale=lr_scale, discrepancy=discrepancy,
                           name=str(path), output=output, on_face=write_face, settings=settings)
    return write_file(out / OUTPUTS[0].format(stem=path.stem),
                      result.to_pil(_shown(result.photo, grey)).save, overwrite)

