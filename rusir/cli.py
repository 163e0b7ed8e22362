"""Command line: `rusir demo | restore | generators | tasks` (bench/report/sweep register here too).

    rusir demo                                   # the main job on the embedded generator
    rusir restore photo.png --task upsampling --level M --generator ffhq --out out/
    rusir restore clean.png --simulate --task UNAP  # degrade a clean image first, then restore
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

# name -> (help, setup); setup fills the sub-parser and returns the function that runs it.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]]] = {}


def command(name: str, help: str):
    """Register a sub-command: the decorated function fills its parser and returns the runner."""
    def wrap(setup):
        COMMANDS[name] = (help, setup)
        return setup
    return wrap


def _steps(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


@command("demo", "restore held-out images for every task at level M with the embedded generator")
def _demo(p: argparse.ArgumentParser):
    p.add_argument("--generator", default="toyfaces64")
    p.add_argument("--n-images", type=int, default=4)
    p.add_argument("--steps", type=_steps, default=None,
                   help="per phase, e.g. 150,150,150 (default: the generator's own schedule)")
    p.add_argument("--level", default="M")
    p.add_argument("--out", default="figures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss", default=None, help="loss preset name/YAML (default: the generator's)")

    def run(a: argparse.Namespace) -> int:
        from .demo import run_demo
        run_demo(a.generator, a.n_images, level=a.level, steps=a.steps, seed=a.seed, out=a.out,
                 loss=a.loss)
        return 0
    return run


@command("restore", "restore degraded image files (or --simulate a degradation of clean ones)")
def _restore(p: argparse.ArgumentParser):
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--task", required=True, help="task name or composition initials, e.g. upsampling, UNAP")
    p.add_argument("--level", default="M")
    p.add_argument("--generator", default="toyfaces64", help="registry name or .pkl/.safetensors path")
    p.add_argument("--out", type=Path, default=Path("restored"))
    p.add_argument("--steps", type=_steps, default=None,
                   help="per phase, e.g. 150,150,150 (default: the generator's own schedule)")
    p.add_argument("--lr-scale", type=float, default=None, help="default: the generator's own (1 for official ones)")
    p.add_argument("--loss", default=None, help="loss preset name/YAML (default: the generator's)")
    p.add_argument("--mask", type=Path, default=None, help="inpainting: known-pixel mask image (white = known)")
    p.add_argument("--simulate", action="store_true", help="images are clean: degrade them first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")

    def run(a: argparse.Namespace) -> int:
        from .restore_files import restore_files
        paths = restore_files(a.images, a.task, a.level, a.generator, a.out, steps=a.steps,
                              lr_scale=a.lr_scale, loss=a.loss, mask=a.mask, simulate=a.simulate,
                              seed=a.seed, device=a.device)
        print(json.dumps({str(k): str(v) for k, v in paths.items()}, indent=1))
        return 0
    return run


@command("generators", "list named generators")
def _generators(p: argparse.ArgumentParser):
    def run(a: argparse.Namespace) -> int:
        from .model.generators import available
        for name, what in available().items():
            print(f"{name:12s} {what}")
        return 0
    return run


@command("tasks", "list degradation tasks and compositions")
def _tasks(p: argparse.ArgumentParser):
    def run(a: argparse.Namespace) -> int:
        from .degradations import LEVELS, available
        print("levels:", " ".join(LEVELS))
        print("tasks:", " ".join(available()))
        return 0
    return run


def _load_extensions() -> None:
    """Sub-commands defined in other modules (bench, report, sweep) register on import."""
    import importlib
    for module in ("rusir.evaluation.runner", "rusir.evaluation.report", "rusir.sweep"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    _load_extensions()
    parser = argparse.ArgumentParser(prog="rusir", description="Robust unsupervised StyleGAN image restoration")
    sub = parser.add_subparsers(dest="command", required=True)
    runners = {}
    for name, (help_text, setup) in COMMANDS.items():
        runners[name] = setup(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        return runners[args.command](args)
    except (ValueError, FileNotFoundError) as exc:  # bad input, missing files or weights
        print(f"rusir {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # `python -m rusir.cli`: run the registry of the importable module
    from rusir.cli import main as _main
    sys.exit(_main())
