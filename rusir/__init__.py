"""rusir: robust unsupervised image restoration by StyleGAN2-ADA inversion (RUSIR, CVPR 2023).

    import rusir
    G, loss_fn, steps = rusir.setup("toyfaces64")      # or "ffhq", or a .pkl / .safetensors path
    deg = rusir.degradations.make("upsampling", "M", seed=0)
    target = deg.degrade_ground_truth(rusir.heldout(4))  # or your own degraded image
    result = rusir.restore(G, target, deg)               # result.images, result.phases["W+"] ...

The public API: everything a notebook or a script needs is a name here (`rusir.x`, or
`from rusir import x`); the submodules behind them are the layers (docs/layers.md).

Generator and restoration
    load_generator, available_generators, Generator   a generator by name or file; the list
    restore, RestoreResult                            RUSIR: W -> W+ -> W++
    build_loss                                        a loss by name or as data (preset, term, dict)
    degradations                                      the module: `degradations.make(task, level)`
Experiments
    setup, Setup            generator + loss + schedule resolved once: `G, loss_fn, steps = setup(...)`
    run_task, TaskRun       degrade ground truth, restore, score against the naive baseline
    score                   PSNR and SSIM per image
    naive_restoration       the do-nothing baseline (bicubic upsampling / the target itself)
Photographs (rusir.faces)
    align                   a face cut out as FFHQ was aligned (or the generator's own template)
    align_face              the face of a photo, found and aligned for a generator (notebooks)
    detect_faces            landmarks per face: dlib (offline, 68 points) or YuNet (`rusir[photos]`)
    restore_photo           find, align, restore and paste back every face of a photo
Images
    heldout, load_image, pick_image    the shipped held-out faces; any image file
    image_grid, save_grid, demo_figure figure grids; a run's target | phases | naive | truth
Benchmarks and result tables (one result format: the runner's records; one aggregation)
    run_bench               every (method, task, level, image) item into a folder, resumable
    bind_method             a method with options fixed, e.g. RUSIR with one ablation config
    load_records            the finished items' records of a folder
    summarise               means per group of records (method, task, level, or any fields)
    summary_table, write_summary   a `summarise` result as a text table / a CSV file
    build_tables, plot_metrics_vs_level   the report's per-cell tables; metrics vs level plots
    records_figure          target | restored | naive | truth, one row per record
Studies and the panel
    ablation                the module of the ablation configs (`ablation.configs(groups)`, ...)
    iqa                     the module of the IQA-loss study (`iqa.run_iqa_study(...)`, ...)
    report                  the report module (`report.write_report(folder)`, `report.to_csv(table, path)`, ...)
    QuickstartController, quickstart_panel   the quickstart notebook's interactive panel

`import rusir` itself is light (no torch): each name is imported on first use.
"""
import importlib
import os

# Idle OpenMP threads sleep instead of spinning: with two busy processes on a small machine
# (a notebook kernel and a training run, say) spinning threads made restore steps ~60x slower
# (measured: 3.0 s vs 0.047 s per step on 2 cores). Only effective if torch is not imported yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# public name -> (module, attribute in it; None: the module itself), imported on first access
_EXPORTS = {
    "load_generator": ("rusir.model.generators", "load_generator"),
    "available_generators": ("rusir.model.generators", "available"),
    "Generator": ("rusir.model.stylegan2", "Generator"),
    "restore": ("rusir.inversion.restore", "restore"),
    "RestoreResult": ("rusir.inversion.restore", "RestoreResult"),
    "build_loss": ("rusir.inversion.presets", "build_loss"),
    "degradations": ("rusir.degradations", None),
    "setup": ("rusir.studies.experiment", "setup"),
    "Setup": ("rusir.studies.experiment", "Setup"),
    "run_task": ("rusir.studies.experiment", "run_task"),
    "TaskRun": ("rusir.studies.experiment", "TaskRun"),
    "score": ("rusir.studies.experiment", "score"),
    "naive_restoration": ("rusir.baselines.naive", "naive_restoration"),
    "align": ("rusir.faces.align", "align"),
    "align_face": ("rusir.faces.photo", "align_face"),
    "detect_faces": ("rusir.faces.detect", "detect_faces"),
    "restore_photo": ("rusir.faces.photo", "restore_photo"),
    "heldout": ("rusir.data.images", "heldout"),
    "load_image": ("rusir.data.images", "load_image"),
    "pick_image": ("rusir.data.images", "pick_image"),
    "image_grid": ("rusir.studies.figures", "image_grid"),
    "save_grid": ("rusir.studies.figures", "save_grid"),
    "demo_figure": ("rusir.studies.figures", "demo_figure"),
    "records_figure": ("rusir.studies.figures", "records_figure"),
    "run_bench": ("rusir.engine.runner", "run_bench"),
    "bind_method": ("rusir.engine.plan", "bind_method"),
    "load_records": ("rusir.engine.records", "load_records"),
    "summarise": ("rusir.report", "summarise"),
    "build_tables": ("rusir.report", "build_tables"),
    "plot_metrics_vs_level": ("rusir.report", "plot_metrics_vs_level"),
    "summary_table": ("rusir.studies.results", "summary_table"),
    "write_summary": ("rusir.studies.results", "write_summary"),
    "ablation": ("rusir.studies.ablation", None),
    "iqa": ("rusir.studies.iqa", None),
    "report": ("rusir.report", None),
    "QuickstartController": ("rusir.panel", "QuickstartController"),
    "quickstart_panel": ("rusir.panel", "quickstart_panel"),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rusir' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
