"""rusir: robust unsupervised image restoration by StyleGAN2-ADA inversion (RUSIR, CVPR 2023).

Public API (see README.md):
    G = rusir.load_generator("toyfaces64")          # or "ffhq", or a .pkl / .safetensors path
    deg = rusir.degradations.make("upsampling", "M", seed=0)
    target = deg.degrade_ground_truth(clean)         # or your own degraded image
    result = rusir.restore(G, target, deg)           # result.images, result.phases["W+"] ...
"""
from . import degradations
from .generators import available as available_generators
from .generators import load_generator
from .restore import RestoreResult, restore
from .stylegan2 import Generator

__all__ = ["load_generator", "available_generators", "restore", "RestoreResult", "Generator",
           "degradations"]
__version__ = "0.1.0"
