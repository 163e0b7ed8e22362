"""A plug-in package for rusir: one degradation, one method, one generator family.

- `darken`: the image times a factor per level (the same, differentiable, in the loss);
- `plain_rusir`: RUSIR under another name (restore's call shape, its run options);
- `pointer`: a `.rusirptr` text file holding the path of a StyleGAN2-ADA pickle.
"""
from __future__ import annotations

from pathlib import Path

from rusir.degradations import Degradation
from rusir.inversion.restore import restore
from rusir.model.family import Family
from rusir.model.pkl import load_network_pickle


class Darken(Degradation):
    name = "darken"
    LEVEL_PARAMS = {"XS": 0.9, "S": 0.8, "M": 0.6, "L": 0.4, "XL": 0.2}

    def true_degradation(self, x, seeds):
        return x * self.LEVEL_PARAMS[self.level]

    def approximation(self, x):
        return x * self.LEVEL_PARAMS[self.level]


def plain_rusir(G, target, degradation=None, **options):
    return restore(G, target, degradation, **options)


plain_rusir.run_options = restore.run_options


def _load_pointer(path: Path):
    return load_network_pickle(Path(path).read_text(encoding="utf-8").strip())


POINTER_FAMILY = Family("pointer", lambda path: Path(path).suffix == ".rusirptr", _load_pointer)
