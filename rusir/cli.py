"""Command line, a front end (docs/layers.md): `rusir demo | restore | generators | tasks | bench | report | sweep | data`.

Every sub-command is defined here and imports the layer that does the work only when it runs,
so `rusir --help` stays fast and nothing below imports the command line.

    rusir demo                                   # the main job on the embedded generator
    rusir restore photo.png --task upsampling --level M --generator ffhq --out out/
    rusir restore clean.png --simulate --task UNAP  # degrade a clean image first, then restore
    rusir restore photo.jpg --align --generator ffhq --task upsampling   # find, align, paste back

Bad input ends in exit status 2 and one line on stderr naming the problem (`main`), and what can
be checked before the compute is checked before it: option values when they are parsed, files,
folders and the loss before the generator is loaded. An unexpected exception (a bug) still shows
its traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml

from .validation import (MAX_BATCH, MAX_COUNT, MAX_CROPS, MAX_FACTOR, MAX_IMAGE_SIDE, MAX_RATE,
                         MAX_REPEATS, MAX_RETRIES, MAX_SEED, MAX_STEPS, MAX_TAU, load_yaml, number,
                         option, read_yaml, side, step_counts, whole)

# name -> (help, setup); setup fills the sub-parser and returns the function that runs it.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]]] = {}


def command(name: str, help: str):
    """Register a sub-command: the decorated function fills its parser and returns the runner."""
    def wrap(setup):
        COMMANDS[name] = (help, setup)
        return setup
    return wrap


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (`rusir restore: error: argument --steps: ...`)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Option types: the shared checkers of rusir.validation, their limits stated in the errors.
_steps = option(step_counts, 3)
_seed = option(whole, "a seed", 0, MAX_SEED, "MAX_SEED")
_rate = option(number, "a rate", 0.0, MAX_RATE, "MAX_RATE")
_factor = option(number, "a factor", 1.0, MAX_FACTOR, "MAX_FACTOR", strict=False)
_scale = option(number, "a scale", 0.01, MAX_FACTOR, "MAX_FACTOR", strict=False)
_tau = option(number, "tau", 0.0, MAX_TAU, "MAX_TAU", strict=False)
_fraction = option(number, "a number", 0.0, MAX_COUNT, "MAX_COUNT", strict=False)
_side = option(side, "a side in px")


def _files_per_call(a: argparse.Namespace):
    """`rusir restore --files-per-call`, or its deprecated old name `--batch-size` (a warning)."""
    if a.old_batch_size is None:
        return 1 if a.files_per_call is None else a.files_per_call
    if a.files_per_call is not None:
        raise ValueError("give --files-per-call only (--batch-size is its deprecated old name)")
    print("warning: `rusir restore --batch-size` is deprecated: it is --files-per-call (files "
          "restored together); --batch-size means chunks inside a call in rusir bench and restore()",
          file=sys.stderr)
    return a.old_batch_size


def _count(minimum: int, maximum: int = MAX_COUNT, limit: str = "MAX_COUNT"):
    """A whole number in [minimum, maximum]."""
    return option(whole, "a count", minimum, maximum, limit)


def _batch_size(text: str):
    """A whole number in [1, MAX_BATCH], or 'auto'."""
    if str(text).strip() == "auto":
        return "auto"
    return option(whole, "a batch size (or 'auto')", 1, MAX_BATCH, "MAX_BATCH")(text)


def _device(text: str) -> str:
    """A device this machine has (checked now, not after loading the generator)."""
    from .studies.experiment import check_device
    try:
        check_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _engine_options(p: argparse.ArgumentParser, what: str) -> None:
    """--engine and the Ray options (rusir.engine.cluster), for bench and sweep."""
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help=f"local: one {what} after another here; ray: each {what} a Ray task "
                        "(pip install 'rusir[cluster]')")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join: auto | ray://host:port (default: start one here)")
    p.add_argument("--gpus-per-unit", type=_fraction, default=None,
                   help=f"GPUs per {what} (0.5 packs two on a GPU; default: 1 if the cluster has GPUs)")
    p.add_argument("--cpus-per-unit", type=_fraction, default=1, help=f"CPUs per {what} (default 1)")
    p.add_argument("--max-retries", type=_count(0, MAX_RETRIES, "MAX_RETRIES"), default=3,
                   help=f"runs again a {what} whose worker process died, at most N times")


def _check_out(out: Path) -> None:
    from .restore_files import check_output_dir
    check_output_dir(out)


@command("demo", "restore held-out images for every task at level M with the embedded generator")
def _demo(p: argparse.ArgumentParser):
    p.add_argument("--generator", default="toyfaces64")
    p.add_argument("--n-images", type=_count(1), default=4)
    p.add_argument("--steps", type=_steps, default=None,
                   help="per phase, e.g. 150,150,150 (default: the generator's own schedule)")
    p.add_argument("--level", default="M")
    p.add_argument("--out", default="runs/demo",
                   help="folder of the figures and metrics (default: runs/demo, untracked; "
                        "`make figures` writes the committed ones into figures/)")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--loss", default=None, help="loss preset name/YAML (default: the generator's)")

    def run(a: argparse.Namespace) -> int:
        from .demo import run_demo
        _check_out(Path(a.out))
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
    p.add_argument("--lr-scale", type=_rate, default=None,
                   help="default: the generator's own (1 for official ones)")
    p.add_argument("--loss", default=None, help="loss preset name/YAML (default: the generator's)")
    p.add_argument("--mask", type=Path, default=None, help="inpainting: known-pixel mask image (white = known)")
    p.add_argument("--simulate", action="store_true", help="images are clean: degrade them first")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--device", type=_device, default=None, help="default: cuda when available, else cpu")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs that exist already (default: refuse, naming the first)")
    p.add_argument("--align", action="store_true",
                   help="photos: find the faces, align each as the generator's dataset was, "
                        "restore it and paste it back (detection: pip install 'rusir[photos]')")
    p.add_argument("--face", type=_count(0), default=None,
                   help="with --align: restore only face INDEX (detected: 0 = leftmost; "
                        "--landmarks: the order given; default: all)")
    p.add_argument("--detector", choices=("dlib", "yunet"), default=None,
                   help="with --align: dlib (68 points, offline; the default when installed) "
                        "or yunet (OpenCV, its model downloaded once)")
    p.add_argument("--paste", choices=("mask", "square"), default=None,
                   help="with --align: paste only the face (mask, the default) or the whole "
                        "aligned square")
    p.add_argument("--scale", type=_scale, default=None,
                   help="with --align: the photo's output scale (default: the largest face's "
                        "upsampling factor, within 16 MP; 1 for other tasks)")
    p.add_argument("--factor", type=_factor, default=None,
                   help="with --align: upsampling factor (default: generator size / face size)")
    p.add_argument("--landmarks", type=Path, default=None,
                   help="with --align: JSON of each face's 5 [x, y] points (eyes, nose tip, "
                        "mouth corners; or dlib's 68) instead of detecting them; faces are "
                        "numbered in the order given")
    p.add_argument("--files-per-call", type=_batch_size, default=None,
                   help="files restored together in one call (default 1); 'auto': groups of 32, "
                        "each in chunks that fit the GPU")
    # the old name of --files-per-call (`--batch-size` means chunks inside a call everywhere else)
    p.add_argument("--batch-size", type=_batch_size, default=None, dest="old_batch_size",
                   help=argparse.SUPPRESS)
    p.add_argument("--discrepancy", type=_tau, default=None, metavar="TAU",
                   help="stop each image once it fits its target to TAU x the target's noise "
                        "level (0: off; default: the generator's own: on for toyfaces64, off "
                        "for the official generators)")

    p.add_argument("--color", choices=("keep", "restore"), default="keep",
                   help="a black-and-white input is restored with its luminance as the target "
                        "(task + grayscale); keep: the output stays grey, its luminance restored "
                        "(default); restore: colour from the prior. Colour inputs: no effect")
    def run(a: argparse.Namespace) -> int:
        from .restore_files import restore_files
        files_per_call = _files_per_call(a)
        paths = restore_files(a.images, a.task, a.level, a.generator, a.out, steps=a.steps,
                              lr_scale=a.lr_scale, loss=a.loss, mask=a.mask, simulate=a.simulate,
                              seed=a.seed, device=a.device, overwrite=a.overwrite, align=a.align,
                              face=a.face, factor=a.factor, landmarks=a.landmarks,
                              files_per_call=files_per_call, discrepancy=a.discrepancy,
                              color=a.color, detector=a.detector, photo=_photo_output(a))
        print(json.dumps({str(k): str(v) for k, v in paths.items()}, indent=1))
        return 0
    return run


def _photo_output(a: argparse.Namespace):
    """--scale and --paste as one PhotoOutput (None when neither is given)."""
    if a.scale is None and a.paste is None:
        return None
    from .faces.photo import PhotoOutput
    return PhotoOutput(scale=a.scale, paste=a.paste or "mask")


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


def _apply_config(p: argparse.ArgumentParser, a: argparse.Namespace, path: Path) -> None:
    """Options from a YAML mapping, for those left at their defaults on the command line; each
    value is checked as the option's own (the same type as on the command line)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"bench config {path} does not exist")
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of option: value")
    actions = {action.dest: action for action in p._actions}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest == "config" or not hasattr(a, dest):
            raise ValueError(f"{path}: unknown option {key!r}")
        if getattr(a, dest) != p.get_default(dest):
            continue
        if dest in ("steps", "methods", "tasks", "metrics") and isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        convert = actions[dest].type
        if isinstance(actions[dest], argparse._StoreTrueAction) and not isinstance(value, bool):
            raise ValueError(f"{path}: option {key}: expected true or false, got {value!r}")
        if value is not None and convert is not None:
            try:
                value = convert(str(value))
            except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
                raise ValueError(f"{path}: option {key}: {exc}") from None
        setattr(a, dest, value)


@command("bench", "run every (method, task, level, image) item of a benchmark (resumable, shardable)")
def _bench(p: argparse.ArgumentParser):
    p.add_argument("--config", type=Path, default=None,
                   help="YAML of option defaults (keys as the options, e.g. params/bench/offline.yaml); "
                        "options given on the command line win")
    p.add_argument("--generator", default="toyfaces64", help="registry name or .pkl/.safetensors path")
    p.add_argument("--images", default="heldout", help="heldout, heldout:N, heldout:A-B (faces A..B), or an image folder")
    p.add_argument("--n-images", type=_count(1), default=None, help="use the first N images")
    p.add_argument("--methods", default="rusir", help="comma list: rusir,pulse,lbrgm,adam_wplus,ddrm (ddrm: docs/ddrm.md)")
    p.add_argument("--tasks", default="single", help="single | composed | all | table3 (alias ddrm: "
                   "the paper's Table 3) | T@L,... (e.g. upsampling@M,UNAP@M; mixable: all,table3)")
    p.add_argument("--repeats", type=option(whole, "repeats", 1, MAX_REPEATS, "MAX_REPEATS"), default=1,
                   help="restore every item K times (repeat r >= 1: another seed, RUSIR's start "
                        "perturbed at float32 rounding level); the report shows their spread")
    p.add_argument("--out", type=Path, default=None, help="output folder (required)")
    p.add_argument("--shard", default=None, help="k/n: run shard k (0-based) of n (of the work units)")
    p.add_argument("--batch", type=_count(1, MAX_BATCH, "MAX_BATCH"), default=1,
                   help="images restored together per work unit (items of one method, task, level)")
    p.add_argument("--batch-size", type=_batch_size, default=None,
                   help="RUSIR: restore a unit in chunks of N images ('auto': what fits the GPU)")
    p.add_argument("--steps", type=_steps, default=None,
                   help="RUSIR steps per phase (default: the generator's own schedule)")
    p.add_argument("--baseline-steps", type=option(whole, "steps", 0, MAX_STEPS, "MAX_STEPS"), default=None, help="override the baselines' steps")
    p.add_argument("--discrepancy", type=_tau, default=None, metavar="TAU",
                   help="RUSIR: stop each image at TAU x its target's noise level (0: off; "
                        "default: the generator's own); recorded in bench.json and each record")
    p.add_argument("--force-mixed", action="store_true",
                   help="resume a folder made with another configuration anyway (bench.json "
                        "then marks it mixed; each record says what it ran)")
    p.add_argument("--metrics", default="psnr,ssim,ms_ssim,lpips", help="per-image metrics")
    p.add_argument("--loss", default=None, help="loss preset name/YAML (default: the generator's)")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--device", type=_device, default=None)
    p.add_argument("--max-items", type=_count(1), default=None, help="stop after running N items")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing item")
    p.add_argument("--no-latents", action="store_true", help="do not save latent.pt")
    p.add_argument("--no-progress", action="store_true")
    _engine_options(p, "unit")

    def run(a: argparse.Namespace) -> int:
        from .engine.runner import run_bench
        if a.config is not None:
            _apply_config(p, a, a.config)
        if a.out is None:
            raise ValueError("--out is required (or `out:` in --config)")
        _check_out(a.out)
        if a.loss is not None:
            from .inversion.presets import load_preset
            load_preset(a.loss)            # a bad preset or YAML, before the generator is loaded
        summary = run_bench(a.generator, a.images, a.methods, a.tasks, a.out, shard=a.shard,
                            steps=a.steps, n_images=a.n_images,
                            metrics=[m for m in a.metrics.split(",") if m], seed=a.seed,
                            device=a.device, loss=a.loss, baseline_steps=a.baseline_steps,
                            fail_fast=a.fail_fast, max_items=a.max_items,
                            save_latent=not a.no_latents, progress=not a.no_progress,
                            batch=a.batch, engine=a.engine, address=a.address,
                            gpus_per_unit=a.gpus_per_unit, cpus_per_unit=a.cpus_per_unit,
                            max_retries=a.max_retries, batch_size=a.batch_size,
                            discrepancy=a.discrepancy, force_mixed=a.force_mixed,
                            repeats=a.repeats)
        for f in summary.failures:
            print(f"failed {f['key']}: {f['error']}", file=sys.stderr)
        print(summary.line())
        return 1 if summary.failed else 0
    return run


@command("tune", "tune the baselines' hyperparameters per (task, level) (resumable, shardable)")
def _tune(p: argparse.ArgumentParser):
    p.add_argument("--generator", default="toyfaces64", help="registry name (tables are kept per name)")
    p.add_argument("--methods", default="pulse,lbrgm", help="comma list of baselines: pulse,lbrgm,adam_wplus")
    p.add_argument("--tasks", default="single", help="single | composed | all | T@L,... (as rusir bench)")
    p.add_argument("--split", choices=("tuning", "test"), default="tuning",
                   help="tuning (default): tune on --tuning-images, disjoint from --images; "
                        "test: tune on --images themselves, as the paper did")
    p.add_argument("--images", default="heldout:60-63", help="the test images (as rusir bench)")
    p.add_argument("--tuning-images", default=None, help="the tuning split (default heldout:0-3)")
    p.add_argument("--search", type=Path, default=None,
                   help="YAML of search spaces (default: rusir/baselines/search_spaces.yaml)")
    p.add_argument("--metric", default="psnr", help="accuracy metric to maximise: psnr | ssim | "
                   "ms_ssim | lpips (minimised; the paper's, needs its weights)")
    p.add_argument("--out", type=Path, default=None, help="record folder (required)")
    p.add_argument("--tables-out", type=Path, default=None,
                   help="where <generator>/<method>.yaml go (default: the package's tables folder)")
    p.add_argument("--select-only", action="store_true",
                   help="run nothing: choose from the records in --out and write the tables "
                        "(after every --shard finished)")
    p.add_argument("--shard", default=None, help="k/n: run shard k of n (tables: --select-only after)")
    p.add_argument("--batch", type=_count(1, MAX_BATCH, "MAX_BATCH"), default=1,
                   help="images restored together per work unit")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--device", type=_device, default=None)
    p.add_argument("--max-items", type=_count(1), default=None, help="stop after running N items")
    p.add_argument("--no-progress", action="store_true")
    _engine_options(p, "unit")

    def run(a: argparse.Namespace) -> int:
        from .studies.tuning import run_tuning
        if a.out is None:
            raise ValueError("--out is required")
        _check_out(a.out)
        bench = {} if a.select_only else dict(
            shard=a.shard, batch=a.batch, seed=a.seed, device=a.device, max_items=a.max_items,
            progress=not a.no_progress, save_latent=False, engine=a.engine, address=a.address,
            gpus_per_unit=a.gpus_per_unit, cpus_per_unit=a.cpus_per_unit, max_retries=a.max_retries)
        summary, written = run_tuning(
            a.generator, a.methods, a.tasks, a.out, split=a.split, test_images=a.images,
            tuning=a.tuning_images, search=a.search, metric=a.metric, tables_dir=a.tables_out,
            select_only=a.select_only, **bench)
        for f in summary.failures:
            print(f"failed {f['key']}: {f['error']}", file=sys.stderr)
        if not a.select_only:
            print(summary.line())
        for method, path in written.items():
            print(f"{method}: tuned table written to {path}")
        if not written and (a.select_only or not a.shard):
            print("no table written: no (task, level) has every tuning image finished")
        return 1 if summary.failed else 0
    return run


@command("report", "tables (Markdown, CSV) and plots of a `rusir bench` output folder")
def _report(p: argparse.ArgumentParser):
    p.add_argument("directory", type=Path)
    p.add_argument("--out", type=Path, default=None, help="default: DIRECTORY/report")
    p.add_argument("--set-metrics", default=None,
                   help="comma list of realism metrics from the PNGs (default: all of "
                        "rusir.metrics.SET_METRICS; '' or none: skip)")
    p.add_argument("--no-set-metrics", action="store_true")
    p.add_argument("--crop-size", type=_side, default=None, help="patch-FID crop side (default: 128 at >= 256 px, else side/2)")
    p.add_argument("--crops", type=_count(1, MAX_CROPS, "MAX_CROPS"), default=None, help="patch-FID crops per image (default: 1000 at >= 256 px, else 100)")
    p.add_argument("--reference", default=None, help="reference image folder for FID/KID/patch-FID (default: the ground truths)")
    p.add_argument("--device", type=_device, default=None, help="for the Inception features (default: cuda when available)")
    p.add_argument("--min-samples", action="append", default=[], type=_min_samples, metavar="METRIC=N",
                   help="lower (or raise) the sample size below which a set metric is n/a, e.g. "
                        "patch_fid=500 (defaults and why: docs/report.md); the table says so")
    p.add_argument("--no-cache", action="store_true",
                   help="keep Inception features in memory only (default: DIRECTORY/.cache/features)")
    p.add_argument("--no-plots", action="store_true")

    def run(a: argparse.Namespace) -> int:
        from .report import write_report
        from .metrics import SET_METRICS
        names = list(SET_METRICS) if a.set_metrics is None else [
            n for n in a.set_metrics.split(",") if n and n != "none"]
        use = bool(names) and not a.no_set_metrics
        kwargs = dict(names=names, crop_size=a.crop_size, crops=a.crops, reference=a.reference,
                      device=a.device, progress=True, min_samples=dict(a.min_samples),
                      cache=not a.no_cache) if use else {}
        result = write_report(a.directory, a.out, set_metrics=use, plots=not a.no_plots, **kwargs)
        print(result["markdown"])
        print(f"wrote {len(result['files'])} files to {Path(result['files'][0]).parent}")
        return 0
    return run


def _min_samples(text: str) -> tuple[str, int]:
    """`METRIC=N` of `rusir report --min-samples`."""
    from .metrics import SET_METRICS
    name, sep, value = text.partition("=")
    if not sep or name.strip() not in SET_METRICS:
        raise argparse.ArgumentTypeError(f"expects METRIC=N with METRIC one of {list(SET_METRICS)}, got {text!r}")
    try:
        return name.strip(), whole(value.strip(), f"--min-samples {name.strip()}", 2, MAX_COUNT)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param expects NAME=VALUE (YAML value), got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), load_yaml(value, f"--param {key.strip()}")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@command("sweep", "execute a notebook for every parameter set of a params/*.yaml sweep (papermill)")
def _sweep(p: argparse.ArgumentParser):
    p.add_argument("sweep_file", type=Path, help="a sweep YAML, e.g. params/task_upsampling.yaml")
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/sweeps/<file stem>)")
    p.add_argument("--dry-run", action="store_true", help="list the sets and their status; run nothing")
    p.add_argument("--force", action="store_true", help="re-run sets that are already done")
    p.add_argument("--only", action="append", default=[], metavar="GLOB", help="run only matching set names")
    p.add_argument("--param", action="append", default=[], type=_override, metavar="NAME=VALUE",
                   help="override a parameter in every set (YAML value, e.g. steps=[5,5,5])")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    _engine_options(p, "set")

    def run(a: argparse.Namespace) -> int:
        from .sweep import run_sweep
        statuses = run_sweep(a.sweep_file, a.out, dry_run=a.dry_run, force=a.force, only=a.only,
                             overrides=dict(a.param), kernel_name=a.kernel, engine=a.engine,
                             address=a.address, gpus_per_unit=a.gpus_per_unit,
                             cpus_per_unit=a.cpus_per_unit, max_retries=a.max_retries)
        if not statuses:
            print("no set matches --only")
            return 2
        counts = {s: list(statuses.values()).count(s) for s in dict.fromkeys(statuses.values())}
        print("sweep:", ", ".join(f"{n} {s}" for s, n in counts.items()))
        return 1 if "failed" in statuses.values() else 0
    return run


def _date(text: str):
    """A YYYY-MM-DD date."""
    from .data.manifest import parse_date
    try:
        return parse_date(text, "a date")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@command("data", "build a test set of aligned faces from photos (like FFHQ-X), or verify one")
def _data(p: argparse.ArgumentParser):
    p.add_argument("action", choices=("build", "verify"),
                   help="build: --photos DIR --out DIR; verify: the set's folder (and --photos to "
                        "re-align every face from its source)")
    p.add_argument("folder", nargs="?", type=Path, default=None, help="verify: the set's folder")
    p.add_argument("--photos", type=Path, default=None, help="folder of photos (searched recursively)")
    p.add_argument("--out", type=Path, default=None, help="build: the set's folder")
    p.add_argument("--generator", default="toyfaces64",
                   help="whose alignment template and resolution (default toyfaces64)")
    p.add_argument("--size", type=_side, default=None,
                   help="output side (default: the named generator's resolution)")
    p.add_argument("--min-face", type=option(number, "a size in px", 0.0, MAX_IMAGE_SIDE,
                                             "MAX_IMAGE_SIDE", strict=False), default=None,
                   help="skip faces whose frame is smaller than PX photo pixels (default: the "
                        "output side: no test image is an enlargement)")
    p.add_argument("--dedup-bits", type=option(whole, "a number of bits (of 256)", 0, 256, None),
                   default=None,
                   help="faces within N of 256 difference-hash bits of a kept one are duplicates "
                        "(default 32)")
    p.add_argument("--exclude-before", type=_date, default=None, metavar="YYYY-MM-DD",
                   help="skip photos whose EXIF DateTimeOriginal is earlier (and undated ones)")
    p.add_argument("--keep-undated", action="store_true",
                   help="with --exclude-before: keep photos without an EXIF date")
    p.add_argument("--landmarks", type=Path, default=None,
                   help="JSON {photo path under --photos: [five [x, y] points per face]} instead "
                        "of detecting")
    p.add_argument("--detector", choices=("dlib", "yunet"), default=None,
                   help="face detector (default: dlib when installed, the one that works offline)")
    p.add_argument("--overwrite", action="store_true")

    def run(a: argparse.Namespace) -> int:
        if a.action == "verify":
            return _verify_set(a)
        from .faces.testset import DEFAULT_DEDUP_BITS, BuildConfig, build_testset
        if a.photos is None or a.out is None:
            raise ValueError("data build needs --photos DIR and --out DIR")
        bits = DEFAULT_DEDUP_BITS if a.dedup_bits is None else a.dedup_bits
        manifest = build_testset(BuildConfig(
            a.photos, a.out, a.generator, a.size, a.min_face, bits, a.exclude_before,
            a.keep_undated, a.landmarks, detector=a.detector, overwrite=a.overwrite))
        print(f"{len(manifest['faces'])} faces written to {a.out}, "
              f"{len(manifest['skipped'])} skipped (see {a.out / 'manifest.json'})")
        return 0
    return run


def _verify_set(a: argparse.Namespace) -> int:
    """`rusir data verify FOLDER [--photos DIR]`: 0 when the set is its manifest's, else 1."""
    from .data.manifest import MANIFEST, sha256_file, verify
    if a.folder is None:
        raise ValueError("data verify needs the set's folder")
    problems = verify(a.folder)
    if a.photos is not None:
        from .faces.testset import rebuild_differences
        problems += rebuild_differences(a.folder, a.photos)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"{a.folder}: {len(problems)} problem(s)")
        return 1
    print(f"{a.folder}: ok ({MANIFEST} sha256 {sha256_file(a.folder / MANIFEST)})")
    return 0


def _input_errors() -> tuple[type[BaseException], ...]:
    """What bad input or a missing file raises: reported in one line, exit 2. The project's own
    errors are ValueError or OSError subclasses (CheckpointError, NetworkPickleError,
    MissingWeightsError, ImageFileError, ...) but for three, added when their module was imported
    (only then can they have been raised). Anything else is a bug and keeps its traceback."""
    kinds: list[type[BaseException]] = [ValueError, OSError, yaml.YAMLError]
    for module, name in (("rusir.model.pkl", "UnsafePickleError"),
                         ("rusir.metrics.realism", "MetricUnavailable"),
                         ("rusir.engine.cluster", "RayNotInstalled")):
        kind = getattr(sys.modules.get(module), name, None)
        if kind is not None:
            kinds.append(kind)
    return tuple(kinds)


def _one_line(exc: BaseException, args: argparse.Namespace) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if type(exc).__name__ == "UnsafePickleError" and getattr(args, "generator", None):
        text = f"{args.generator}: {text}"      # its message names the global, not the file
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _Parser(prog="rusir", description="Robust unsupervised StyleGAN image restoration")
    sub = parser.add_subparsers(dest="command", required=True)
    runners = {}
    for name, (help_text, setup) in COMMANDS.items():
        runners[name] = setup(sub.add_parser(name, help=help_text, description=help_text))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:    # --help (0) or a bad option value (2, one line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return runners[args.command](args)
    except _input_errors() as exc:  # bad input, missing or refused files or weights
        print(f"rusir {args.command}: error: {_one_line(exc, args)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # `python -m rusir.cli`: run the registry of the importable module
    from rusir.cli import main as _main
    sys.exit(_main())
