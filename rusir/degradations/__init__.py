"""Degradations of the RUSIR benchmark: true operators and differentiable approximations.

Tensors in, tensors out: images are float [B, 3, H, W] in [0, 1]. See :mod:`.base` for the
interface and :mod:`.blur` for how to add a task.
"""

from .base import DEFAULT_SEED, LEVELS, Degradation, cycle_8bit, surrogate_clamp
from .blur import GaussianBlur, gaussian_blur
from .composition import COMPOSITIONS, Composition
from .deartifacting import Deartifacting
from .denoising import Denoising, expose_true_mask, exposes_true_mask
from .grayscale import BT601, Grayscale, is_grayscale, luminance, to_grayscale
from .inpainting import Inpainting
from .jpeg import DifferentiableJPEG, quantization_tables
from .registry import (INITIALS, TASKS, available, canonical_task, is_composition, make, register,
                       task_names, with_grayscale)
from .stacked import Stacked
from .upsampling import Upsampling
from .variants import (AveragePoolUpsampling, ClampedGaussianNoise, GaussianNoise, Identity,
                       NearestUpsampling, Uncropping)

__all__ = [
    "Degradation", "make", "register", "available", "canonical_task", "is_composition", "task_names",
    "LEVELS", "TASKS", "INITIALS", "COMPOSITIONS",
    "DEFAULT_SEED", "Upsampling", "Denoising", "Deartifacting", "Inpainting", "Composition",
    "AveragePoolUpsampling", "NearestUpsampling", "GaussianNoise", "ClampedGaussianNoise",
    "Uncropping", "Identity", "GaussianBlur", "gaussian_blur", "DifferentiableJPEG",
    "quantization_tables", "cycle_8bit", "surrogate_clamp",
    "with_grayscale", "Grayscale", "BT601", "luminance", "to_grayscale", "is_grayscale",
    "expose_true_mask", "exposes_true_mask", "Stacked",
]
