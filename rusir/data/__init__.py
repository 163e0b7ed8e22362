"""The offline image domain of rusir: random cartoon faces (py-avataaars).

* ``heldout(n=None, size=64)``: the shipped held-out ground truth (64 PNGs in
  ``rusir/assets/heldout``, seeds ``2_000_000_000 + i``), ``[n, 3, size, size]`` in [0, 1].
* ``heldout_paths()``: their file paths, sorted.
* ``load_image(path_or_pil, size)``: any image file to ``[1, 3, size, size]`` in [0, 1].
* ``pick_image(image, size)``: held-out image number ``image``, or an image file's path.
* ``render(seed, size=64)``: render one avatar (training extra: ``pip install rusir[train]``).
  Training seeds are ``TRAIN_SEEDS = range(0, 10**9)``; held-out seeds start at
  ``HELDOUT_SEED_START = 2_000_000_000``.
* ``python -m rusir.train.build_data``: render a training array ``images.npy`` (see ``build``).
"""

from .avatars import (
    HELDOUT_SEED_START,
    HELDOUT_SEEDS,
    TRAIN_SEED_START,
    TRAIN_SEEDS,
    render,
    split_of_seed,
)

# The image readers need torch; they load on first use so that torch-free callers (a sweep's
# --dry-run, the CLI's argument checks) can import rusir.data without it.
_IMAGES = ("heldout", "heldout_paths", "load_image", "pick_image")


def __getattr__(name: str):
    if name not in _IMAGES:
        raise AttributeError(f"module 'rusir.data' has no attribute {name!r}")
    from . import images

    value = getattr(images, name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


__all__ = [
    "HELDOUT_SEED_START",
    "HELDOUT_SEEDS",
    "TRAIN_SEED_START",
    "TRAIN_SEEDS",
    "heldout",
    "heldout_paths",
    "load_image",
    "pick_image",
    "render",
    "split_of_seed",
]
