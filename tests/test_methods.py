"""The method protocol (rusir.inversion.method), the one step loop (rusir.inversion.loop) and how
the benchmark calls every method: the same keywords, the same result type, the config that ran."""
from __future__ import annotations

import inspect
import warnings

import pytest
import torch

from conftest import mse, small_generator, tiny_diffusion_prior
from rusir.baselines import METHODS, baseline_config
from rusir.engine import runner
from rusir.engine.runner import Item, method_kwargs
from rusir.inversion.loop import StepInfo, render, run_steps
from rusir.inversion.losses import LossConfig
from rusir.inversion.method import PROTOCOL, RestoreResult

# the fewest steps / draws each method needs to run here
QUICK = {"rusir": dict(steps=(2, 1, 1)), "pulse": dict(steps=3, fit_samples=64),
         "lbrgm": dict(steps=3, init_candidates=2), "adam_wplus": dict(steps=3),
         "ddrm": dict(steps=2, prior=tiny_diffusion_prior(16))}


pytestmark = pytest.mark.usefixtures("one_thread")


def target_of(G, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return render(G, G.mapping.w_avg[None] + 0.35 * torch.randn(1, G.w_dim, generator=g))


def own_options(method) -> set[str]:
    """The keyword-only options of a method beyond the protocol (what `config` must record)."""
    params = inspect.signature(method).parameters.values()
    return {p.name for p in params if p.kind == p.KEYWORD_ONLY and p.name not in PROTOCOL}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_takes_the_protocol_and_records_what_ran(name):
    G = small_generator()
    target = target_of(G)
    method = METHODS[name]
    seen = []
    result = method(G, target, None, loss=mse, seed=5, callback=seen.append, progress=False,
                    **QUICK[name])
    assert isinstance(result, RestoreResult) and result.images.shape == target.shape
    phases = [info.phase for info in seen]
    assert len(seen) == sum(len(p.losses) for p in result.phases.values()) > 0
    assert set(phases) == set(result.phases) and all(isinstance(i, StepInfo) for i in seen)
    # config: every option of the method (init, a tensor, excepted) plus the seed, as run
    config = result.config
    assert set(config) == own_options(method) - {"init"} | {"seed"}, sorted(config)
    assert config["seed"] == 5 and config["resolution"] == G.img_resolution
    for key, value in QUICK[name].items():
        assert config[key] == value, key
    # plain data that reruns the same thing
    assert all(v is None or isinstance(v, (int, float, str, tuple)) for v in config.values())
    again = method(G, target, None, loss=mse, progress=False, **config)
    assert torch.equal(again.images, result.images) and again.config == config


@pytest.mark.parametrize("name", sorted(METHODS))
def test_unknown_options_are_refused_with_what_the_method_takes(name):
    G = small_generator()
    with pytest.raises(TypeError, match=r"\['nonsense'\].*'steps'") as err:
        METHODS[name](G, target_of(G), loss=mse, progress=False, nonsense=1)
    for option in own_options(METHODS[name]) | set(PROTOCOL):
        assert repr(option) in str(err.value), option


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_seed_restarts_the_loss_noise(name):
    """A run depends on its seed, not on what the loss object drew before (the benchmark reuses
    one loss for every item): the consistency term draws noise at every step."""
    G = small_generator()
    target = target_of(G)
    loss = LossConfig({"l2": 1.0, "consistency": 1.0}).build(degradation_fn=lambda x: (3 * x).tanh())
    options = {**QUICK[name], **({"data_term": "loss"} if name == "pulse" else {})}
    a, b, c = (METHODS[name](G, target, loss=loss, seed=s, progress=False, **options).images
               for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_step_loop_calls_back_once_per_step_with_the_phase_name():
    x = torch.tensor([[3.0, 4.0]], requires_grad=True)                    # B = 1
    events = []

    def objective():
        events.append("objective")
        return x.square().sum(1), x.detach()[:, :, None, None].expand(1, 2, 2, 2)

    losses = run_steps(objective, torch.optim.SGD([x], lr=0.1), 3, phase="toy", progress=False,
                       callback=lambda info: events.append((info.phase, info.step, info.steps)),
                       before_step=lambda step: events.append(("before", step)),
                       after_step=lambda step, loss: events.append(("after", step)))
    assert events == [e for i in range(3) for e in
                      (("before", i), "objective", ("after", i), ("toy", i, 3))]
    assert [v.item() for v in losses] == pytest.approx([25.0, 16.0, 10.24])   # x *= 0.8 per step
    assert run_steps(objective, torch.optim.SGD([x], lr=0.1), 0, phase="toy", progress=False) == []


def test_runner_gives_rusir_its_steps_and_a_baseline_its_table_entry(monkeypatch, tmp_path):
    item = Item("pulse", "denoising", "M", 0, "0000")
    assert method_kwargs(METHODS["rusir"], item, (3, 3, 3), 7) == {"steps": (3, 3, 3)}
    assert method_kwargs(METHODS["pulse"], item, (3, 3, 3), None) == baseline_config("pulse", "denoising", "M")
    assert method_kwargs(METHODS["lbrgm"], item, (3, 3, 3), 7)["steps"] == 7
    assert method_kwargs(lambda G, target, degradation=None, **kw: None, item, (3, 3, 3), None) == {}
    # without the tables, a baseline runs on its own defaults, never on RUSIR's per-phase steps
    import rusir.baselines.config as config
    monkeypatch.setattr(config, "TABLES_DIR", tmp_path / "absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("pulse", "lbrgm", "adam_wplus"):
            assert method_kwargs(METHODS[name], item, (3, 3, 3), None) == {}, name


def test_runner_calls_every_method_alike_and_a_baseline_without_table_runs(monkeypatch, tmp_path):
    import rusir.baselines.config as config
    monkeypatch.setattr(config, "TABLES_DIR", tmp_path / "absent")     # no baseline tables
    calls = {}

    def recording(name):
        def method(G, target, degradation=None, *, loss=None, seed=0, callback=None,
                   progress=True, **options):
            calls[name] = dict(loss=loss, seed=seed, progress=progress, **options)
            return METHODS[name](G, target, degradation, loss=loss, seed=seed,
                                 progress=progress, **{**options, **QUICK[name]})
        # a wrapper declares what it takes as its method does (never matched by name)
        method.run_options = getattr(METHODS[name], "run_options", ())
        method.table = getattr(METHODS[name], "table", None)
        return method

    G = small_generator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = runner.run_bench(G, "heldout:1", {n: recording(n) for n in METHODS},
                                   "denoising@XS", tmp_path / "out", steps=(2, 1, 1), loss=mse,
                                   seed=4, metrics=("psnr",), progress=False, fail_fast=True)
    assert summary.done == len(METHODS)
    for name, got in calls.items():
        assert (got["loss"], got["seed"], got["progress"]) == (mse, 4, False), name
        assert got.get("steps") == ((2, 1, 1) if name == "rusir" else None), name


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("case", ["one nan", "all nan", "+inf", "-inf", "overflowing", "empty"])
def test_unrestorable_targets_are_refused_before_any_step(name, case):
    """A NaN/inf target used to run to the end with a NaN loss and return the start image."""
    G = small_generator()
    target = torch.rand(2, 3, 16, 16)
    if case == "one nan":
        target[1, 0, 3, 3] = float("nan")
    elif case == "all nan":
        target = torch.full_like(target, float("nan"))
    elif case == "+inf":
        target[0, 2, 0, 0] = float("inf")
    elif case == "-inf":
        target[0, 2, 0, 0] = -float("inf")
    elif case == "overflowing":
        target = target * 1e39                      # beyond float32: inf
    else:
        target = target[:0]
    steps = []
    with pytest.raises(ValueError, match="target"):
        METHODS[name](G, target, loss=lambda x, y, mask=None: (x - y).square().flatten(1).mean(1),
                      callback=steps.append, progress=False)
    assert steps == []


@pytest.mark.parametrize("scale, hint", [(lambda x: x * 2 - 1, "(x + 1) / 2"), (lambda x: x * 255, "x / 255"),
                                         (lambda x: x * 5 - 2, "outside")])
def test_targets_on_another_scale_warn_with_the_range(scale, hint):
    G = small_generator()
    with pytest.warns(UserWarning, match=r"outside \[0, 1\]") as record:
        METHODS["rusir"](G, scale(torch.rand(1, 3, 16, 16)), loss=lambda x, y, mask=None: (x - y).abs().flatten(1).mean(1),
                         steps=(1, 1, 1), progress=False)
    assert hint in str(record[0].message)


def test_targets_in_range_up_to_rounding_pass_silently():
    G = small_generator()
    target = torch.rand(1, 3, 16, 16)
    target[0, 0, 0, 0], target[0, 0, 0, 1] = -1e-4, 1 + 1e-4          # float rounding of [0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = METHODS["rusir"](G, target, loss=lambda x, y, mask=None: (x - y).abs().flatten(1).mean(1),
                                  steps=(1, 1, 1), progress=False)
    assert torch.isfinite(result.images).all()
