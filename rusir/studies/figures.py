"""Image grids for figures: rows of [0, 1] tensors with column labels, saved as PNG; the figure
of a restoration run (target | W | W+ | W++ | naive | truth, one row per image) and that of the
runner's records (target | prediction | naive | truth, from the PNGs each item saved)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor

from ..baselines.naive import naive_restoration
from ..data.outputs import write_file
from ..degradations.base import to_pil
from ..engine.records import read_png

__all__ = ["fit", "image_grid", "save_grid", "run_rows", "demo_figure",
           "record_rows", "records_figure"]


def fit(img: Tensor, size: int) -> Tensor:
    """[3, h, w] -> [3, size, size]; small images (low-res targets) are enlarged by nearest."""
    if img.shape[-1] == size:
        return img
    mode = "nearest" if img.shape[-1] < size else "area"
    return F.interpolate(img[None].float(), size=(size, size), mode=mode)[0]


def image_grid(rows: Sequence[Sequence[Tensor]], labels: Sequence[str] = (), cell: int = 128,
               pad: int = 2) -> Image.Image:
    """A grid of images (each [3, h, w] in [0, 1]) with optional column labels on top."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    header = 14 if labels else 0
    canvas = Image.new("RGB", (n_cols * (cell + pad) + pad, header + n_rows * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(labels):
        draw.text((pad + j * (cell + pad) + 2, 1), label, fill=(0, 0, 0))
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            tile = to_pil(fit(img, cell), "round")
            canvas.paste(tile, (pad + j * (cell + pad), header + pad + i * (cell + pad)))
    return canvas


def save_grid(path: Union[str, Path], rows: Sequence[Sequence[Tensor]], labels: Sequence[str] = (),
              cell: int = 128, overwrite: bool = True) -> Path:
    """`image_grid` saved as a PNG at `path` (folders created; rusir.data.outputs.write_file:
    atomic, never through a link); returns the path."""
    return write_file(path, image_grid(rows, labels, cell).save, overwrite)


def run_rows(run, images: Union[Sequence[int], None] = None) -> tuple[list[list[Tensor]], list[str]]:
    """(rows, labels) of a `rusir.studies.experiment.TaskRun`: per image, the target, each
    phase's result, the naive baseline and the ground truth (on the CPU)."""
    phases = list(run.result.phases.values())
    indices = range(run.ground_truth.shape[0]) if images is None else images
    rows = [[t.detach().cpu() for t in
             [run.target[i]] + [p.images[i] for p in phases] + [run.naive[i], run.ground_truth[i]]]
            for i in indices]
    labels = ["target"] + [p.space for p in phases] + ["naive", "truth"]
    return rows, labels


def demo_figure(run, path: Union[str, Path], cell: int = 128) -> Path:
    """The figure of a run (`run_rows`: one row per image) saved at `path`."""
    return save_grid(path, *run_rows(run), cell=cell)


def record_rows(records: Sequence[dict]) -> tuple[list[list[Tensor]], list[str]]:
    """(rows, labels) of finished records (`rusir.engine.records.load_records`: each has `_dir`):
    per record the target, the prediction, the naive baseline and the ground truth, read back
    from the item's 8-bit PNGs (the images its metrics were computed on)."""
    if not records:
        raise ValueError("no records to show (nothing finished in the folder?)")
    rows = []
    for record in records:
        folder = Path(record["_dir"])
        truth, target, prediction = (read_png(folder / f"{name}.png")
                                     for name in ("ground_truth", "target", "prediction"))
        naive = naive_restoration(target, truth.shape[-1])             # [1, 3, R, R]
        rows.append([target[0], prediction[0], naive[0], truth[0]])
    return rows, ["target", "restored", "naive", "truth"]


def records_figure(records: Sequence[dict], path: Union[str, Path], cell: int = 128) -> Path:
    """The figure of finished records (`record_rows`: one row per item) saved at `path`."""
    return save_grid(path, *record_rows(records), cell=cell)
