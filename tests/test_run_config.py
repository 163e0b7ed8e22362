"""What ran is what is recorded: restore's RestoreConfig, a generator's own defaults travelling
with it, each record's `config` taken from the method's result, and bench.json's RunConfig
guarding a folder against a silent mix of configurations (issue 27)."""
from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import pytest
import torch

from conftest import mse, small_generator
from rusir import degradations
from rusir.cli import main
from rusir.engine.plan import bind_method
from rusir.engine.records import load_records
from rusir.engine.runner import run_bench
from rusir.engine.unit import method_kwargs
from rusir.engine.plan import Item
from rusir.inversion.config import RestoreConfig
from rusir.inversion.method import PhaseResult, RestoreResult
from rusir.inversion.restore import restore
from rusir.model.generators import GeneratorInfo, info, set_info

OWN = GeneratorInfo("tuned16", "a test generator with its own defaults", 16, default_loss="offline",
                    lr_scale=3.0, steps=(1, 1, 1), lrs=(0.1, 0.05, 0.02), discrepancy=2.0,
                    sha256="ab" * 32)


def tuned(sha256: str = OWN.sha256):
    return set_info(small_generator(resolution=16), dataclasses.replace(OWN, sha256=sha256))


def bench(G, out, **kw):
    kw.setdefault("methods", "rusir")
    kw.setdefault("steps", (1, 1, 1))
    return run_bench(G, "heldout:1", out=out, tasks=kw.pop("tasks", "denoising@M"), loss=kw.pop("loss", mse),
                     metrics=("psnr",), progress=False, fail_fast=True, **kw)


# --- the generator's defaults travel with it ----------------------------------------------------

def test_a_generators_info_survives_pickle_and_deepcopy():
    G = tuned()
    for copied in (pickle.loads(pickle.dumps(G)), copy.deepcopy(G)):
        assert info(copied) == info(G) == dataclasses.replace(OWN)
    assert info(small_generator()).name == "Generator"      # built in code: the paper's defaults
    with pytest.raises(ValueError, match="GeneratorInfo"):
        set_info(small_generator(), {"steps": (1, 1, 1)})


# --- RestoreConfig ------------------------------------------------------------------------------

def test_restore_reports_the_configuration_that_ran():
    G = tuned()
    target = torch.rand(3, 3, 16, 16)
    deg = degradations.make("denoising", "M", seed=1)
    result = restore(G, target, deg, progress=False, batch_size=2, seed=4)
    config = result.config
    assert isinstance(config, RestoreConfig)
    # the generator's own schedule, rates, tau and loss preset, and the chunk that ran
    assert (config.steps, config.lrs, config.lr_scale) == ((1, 1, 1), (0.1, 0.05, 0.02), 3.0)
    assert (config.discrepancy, config.loss, config.generator) == (2.0, "offline", "tuned16")
    assert (config.generator_sha256, config.batch_size, config.chunk, config.seed) == (OWN.sha256, 2, 2, 4)
    data = json.loads(json.dumps(config.as_dict()))
    assert data["steps"] == [1, 1, 1] and data["chunk"] == 2 and data["generator_sha256"] == OWN.sha256
    # read like a mapping of restore's options: **config reruns it
    assert config["steps"] == (1, 1, 1) and "generator" not in config and "chunk" not in dict(config)
    again = restore(G, target, deg, progress=False, **config)
    assert again.config == config and torch.equal(again.images, result.images)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = (9, 9, 9)
    assert restore(G, target, deg, progress=False, discrepancy=0, loss=mse).config.loss == "mse"


def test_restore_config_refuses_bad_values_before_any_step():
    G = tuned()
    for bad, match in (({"spaces": ("W++", "W")}, "spaces"), ({"optimizer": "sgd"}, "optimizer"),
                       ({"ngd_options": {"x": 1}}, "ngd_options"), ({"seed": -1}, "seed"),
                       ({"discrepancy": "high"}, "discrepancy"), ({"batch_size": 0}, "batch_size")):
        with pytest.raises(ValueError, match=match):
            RestoreConfig.resolve(G, **bad)


# --- records carry what ran ---------------------------------------------------------------------

def test_a_record_holds_the_results_config_not_the_request(tmp_path):
    """A method that ignores the run's steps and says what it ran: the record shows its value."""
    def stubborn(G, target, degradation=None, *, loss=None, seed=0, callback=None, progress=True,
                 steps=None):
        images = target.new_zeros(target.shape[0], 3, G.img_resolution, G.img_resolution) + 0.5
        return RestoreResult(images, {"x": PhaseResult("x", images, images)},
                             config={"steps": [9, 9, 9], "seed": seed, "asked": list(steps)})
    stubborn.run_options = ("steps",)
    bench(small_generator(), tmp_path, methods={"stubborn": stubborn}, steps=(2, 2, 2))
    rec = load_records(tmp_path)[0]
    assert rec["config"] == {"steps": [9, 9, 9], "seed": 0, "asked": [2, 2, 2]}
    assert "method_config" not in rec


def test_a_bound_rusir_variant_gets_the_runs_steps(tmp_path):
    """The IQA study's `rusir[loss=...]`: a BoundMethod of restore takes the run's steps (it ran
    the generator's full schedule before) and records the steps that ran."""
    calls = []

    def counting(x, y, mask=None):
        calls.append(x.shape[0])
        return mse(x, y)

    G = small_generator()
    methods = {"rusir[loss=count]": bind_method(restore, loss=counting, discrepancy=0)}
    bench(G, tmp_path, methods=methods, steps=(2, 2, 2))
    rec = load_records(tmp_path)[0]
    assert tuple(rec["config"]["steps"]) == (2, 2, 2) and len(calls) == 6
    assert rec["config"]["loss"] == "counting" and rec["config"]["discrepancy"] is None
    # bound options win over the run's (the ablation binds its own steps)
    item = Item("a", "denoising", "M", 0, "0")
    assert method_kwargs(bind_method(restore, steps=(1, 0, 0)), item, (2, 2, 2), None) == {}
    assert method_kwargs(restore, item, (2, 2, 2), None, chunk=2, discrepancy=1.5) == {
        "steps": (2, 2, 2), "batch_size": 2, "discrepancy": 1.5}


# --- bench.json: one configuration per folder ---------------------------------------------------

def test_bench_json_holds_the_runs_configuration(tmp_path):
    bench(tuned(), tmp_path, methods={"rusir": restore, "v": bind_method(restore, loss="offline")},
          steps=None, discrepancy=1.5, batch_size=2)
    config = json.loads((tmp_path / "bench.json").read_text())
    assert (config["generator"], config["generator_sha256"]) == ("tuned16", OWN.sha256)
    assert config["generator_defaults"] == {"steps": [1, 1, 1], "lrs": [0.1, 0.05, 0.02],
                                            "lr_scale": 3.0, "discrepancy": 2.0, "loss": "offline"}
    assert config["method_options"] == {"rusir": {}, "v": {"loss": "offline"}}
    assert (config["steps"], config["discrepancy"], config["chunk"]) == ([1, 1, 1], 1.5, 2)
    assert "mixed" not in config
    recs = load_records(tmp_path)
    assert {r["config"]["discrepancy"] for r in recs} == {1.5}          # passed on and recorded
    assert {r["config"]["chunk"] for r in recs} == {1}


@pytest.mark.parametrize("change, key", [({"discrepancy": 0.5}, "discrepancy"),
                                          ({"sha256": "cd" * 32}, "generator_sha256")])
def test_resuming_another_configuration_is_refused_unless_forced(tmp_path, change, key):
    bench(tuned(), tmp_path)
    G = tuned(change.get("sha256", OWN.sha256))
    kw = {"discrepancy": change["discrepancy"]} if "discrepancy" in change else {}
    with pytest.raises(ValueError, match=f"another configuration \\({key} ") as err:
        bench(G, tmp_path, tasks="denoising@S", **kw)
    assert "\n" not in str(err.value) and "--force-mixed" in str(err.value)
    summary = bench(G, tmp_path, tasks="denoising@S", force_mixed=True, **kw)
    assert summary.done == 1
    config = json.loads((tmp_path / "bench.json").read_text())
    assert len(config["mixed"]) == 2 and config["mixed"][0][key] != config["mixed"][1][key]
    assert bench(G, tmp_path, tasks="denoising@S", **kw).skipped == 1   # the latest resumes
    ran = {r["task"] + "@" + r["level"]: r["config"] for r in load_records(tmp_path)}
    if key == "discrepancy":
        assert (ran["denoising@M"]["discrepancy"], ran["denoising@S"]["discrepancy"]) == (2.0, 0.5)
    else:
        assert ran["denoising@M"]["generator_sha256"] != ran["denoising@S"]["generator_sha256"]


def test_cli_bench_discrepancy_and_force_mixed(tmp_path, capsys):
    out = tmp_path / "b"
    args = ["bench", "--images", "heldout:1", "--tasks", "denoising@M", "--steps", "1,1,1",
            "--loss", "offline", "--metrics", "psnr", "--no-progress", "--device", "cpu",
            "--out", str(out)]
    assert main(args + ["--discrepancy", "0"]) == 0
    assert json.loads((out / "bench.json").read_text())["discrepancy"] == 0.0
    assert load_records(out)[0]["config"]["discrepancy"] is None          # 0: off
    assert main(args + ["--discrepancy", "1.2"]) == 2
    assert "discrepancy 0.0 -> 1.2" in capsys.readouterr().err
    assert main(args + ["--discrepancy", "1.2", "--force-mixed", "--tasks", "denoising@S"]) == 0
    assert len(json.loads((out / "bench.json").read_text())["mixed"]) == 2


def test_a_generator_file_is_named_by_its_sha256(tmp_path):
    """Two files at one path are two generators: bench.json tells them apart (RunConfig)."""
    import hashlib
    from rusir.model.checkpoint import save_generator
    from rusir.model.generators import load_generator
    path = tmp_path / "g.safetensors"
    digests = []
    for seed in (0, 1):
        save_generator(small_generator(seed=seed), path)
        digests.append(info(load_generator(path)).sha256)
        assert digests[-1] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert digests[0] != digests[1]


def test_a_bad_discrepancy_is_refused_before_the_generator_loads(tmp_path):
    for bad in ("high", -1.0, float("nan")):
        with pytest.raises(ValueError, match="discrepancy"):
            run_bench("no-such-generator", "heldout:1", out=tmp_path, discrepancy=bad)
    assert not (tmp_path / "bench.json").exists()
