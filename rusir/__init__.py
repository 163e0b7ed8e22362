"""rusir: robust unsupervised image restoration by StyleGAN2-ADA inversion (RUSIR, CVPR 2023).

Public API (see README.md):
    G = rusir.load_generator("toyfaces64")          # or "ffhq", or a .pkl / .safetensors path
    deg = rusir.degradations.make("upsampling", "M", seed=0)
    target = deg.degrade_ground_truth(clean)         # or your own degraded image
    result = rusir.restore(G, target, deg)           # result.images, result.phases["W+"] ...
"""
import os

# Idle OpenMP threads sleep instead of spinning: with two busy processes on a small machine
# (a notebook kernel and a training run, say) spinning threads made restore steps ~60x slower
# (measured: 3.0 s vs 0.047 s per step on 2 cores). Only effective if torch is not imported yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import degradations
from .inversion import schedule
from .model.generators import available as available_generators  # noqa: E402
from .model.generators import load_generator  # noqa: E402
from .inversion.restore import RestoreResult, restore  # noqa: E402
from .model.stylegan2 import Generator  # noqa: E402

__all__ = ["load_generator", "available_generators", "restore", "RestoreResult", "Generator",
           "degradations"]
__version__ = "0.1.0"
