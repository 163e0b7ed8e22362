"""Restore image files from disk: what `rusir restore` does, usable from Python too."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from . import degradations
from .data import load_image
from .evaluation.experiment import setup
from .evaluation.figures import save_grid, to_pil
from .inversion.restore import restore


def _user_mask(path: Path, size: int) -> torch.Tensor:
    """A mask image (white = known, black = missing) as [1, 1, size, size] in [0, 1]."""
    return load_image(path, size).mean(1, keepdim=True)


def restore_files(images: Sequence[Union[str, Path]], task: str, level: str = "M",
                  generator: str = "toyfaces64", out: Union[str, Path] = "restored",
                  steps: Optional[Sequence[int]] = None, lr_scale: Optional[float] = None,
                  loss: Optional[str] = None, mask: Optional[Path] = None, simulate: bool = False,
                  seed: int = 0, device: Optional[str] = None) -> dict[Path, Path]:
    """Restore each file; write `<stem>_restored.png`, `<stem>_phases.png`, `<stem>_latent.pt`.

    Without `simulate` each file is the degraded image itself (low resolution for upsampling);
    with it each file is a clean image that is first degraded by the task (a demo/benchmark).
    Returns {input path: restored path}.
    """
    if mask is not None and degradations.canonical_task(task) != "inpainting":
        raise ValueError("--mask only applies to the inpainting task")
    G, loss_fn, steps = setup(generator, loss, steps, device=device, verbose=False)
    device = next(G.parameters()).device
    R = G.img_resolution
    out = Path(out)
    written = {}
    for i, path in enumerate(map(Path, images)):
        if mask is not None:
            deg = degradations.Inpainting.from_mask(_user_mask(mask, R))
        else:
            deg = degradations.make(task, level, seed=seed + i)
        if simulate:
            truth = load_image(path, R).to(device)
            target = deg.degrade_ground_truth(truth)
        else:
            target = load_image(path, deg.target_size(R)).to(device)
        result = restore(G, target, deg, loss=loss_fn, steps=steps, lr_scale=lr_scale)
        out.mkdir(parents=True, exist_ok=True)  # only once there is something to write
        restored = out / f"{path.stem}_restored.png"
        to_pil(result.images[0]).save(restored)
        columns = [target[0]] + [p.images[0] for p in result.phases.values()]
        labels = ["target"] + list(result.phases)
        if simulate:
            columns, labels = columns + [truth[0]], labels + ["truth"]
        save_grid(out / f"{path.stem}_phases.png", [columns], labels)
        torch.save({s: p.latent.cpu() for s, p in result.phases.items()}, out / f"{path.stem}_latent.pt")
        written[path] = restored
    return written
