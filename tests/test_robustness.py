"""rusir.studies.robustness and the runner's per-phase records (issue 20)."""
from __future__ import annotations

import json

import pytest

from conftest import mse, small_generator
from rusir.engine.plan import resolve_images
from rusir.engine.records import load_records
from rusir.studies.robustness import phase_table, summary, to_markdown, write_robustness
from rusir.engine.runner import run_bench
from rusir.inversion.restore import restore


def rec(task, level, j, naive, w, wp, wpp, side=64):
    ph = {name: {"psnr": v, "ssim": v / 100, "fidelity_psnr": v + 1}
          for name, v in (("W", w), ("W+", wp), ("W++", wpp))}
    return {"method": "rusir", "task": task, "level": level, "image_index": j,
            "target_size": [side, side], "naive": {"psnr": naive, "ssim": 0.5}, "phases": ph}


def test_phase_table_drops_and_naive():
    recs = [rec("UN", "M", 0, 12.0, 15.0, 14.0, 10.0, side=8), rec("UN", "M", 1, 12.0, 13.0, 14.0, 11.0, side=8),
            rec("upsampling", "XL", 0, 14.0, 12.0, 12.5, 13.0, side=2),
            rec("deartifacting", "M", 0, 23.0, 18.0, 20.0, 22.0),
            rec("denoising", "S", 0, 11.0, 17.0, 18.0, 19.0)]
    table = phase_table(recs + [{**recs[0], "method": "pulse"}])   # other methods are left out
    assert list(table) == ["upsampling@XL", "denoising@S", "deartifacting@M", "UN@M"]  # tasks, then compositions
    un = table["UN@M"]
    assert un["n"] == 2 and un["images"] == [0, 1] and un["target_side"] == 8
    assert un["phases"]["W"]["psnr"] == pytest.approx(14.0)        # means over the images
    assert un["final_drop"] == pytest.approx(14.0 - 10.5)          # best earlier phase: W+ (14.0)
    assert un["final_vs_naive"] == pytest.approx(-1.5) and un["final_wins"] == 0
    assert table["denoising@S"]["final_drop"] == pytest.approx(-1.0)   # better than every earlier phase
    s = summary(table)
    assert s["settings"] == 4 and s["worst_drop_setting"] == "UN@M"
    assert s["worst_drop"] == pytest.approx(3.5)
    assert s["mean_final_psnr"] == pytest.approx((10.5 + 13.0 + 22.0 + 19.0) / 4)
    # below naive only where the target keeps >= 8 px: upsampling XL (2 px) is not listed
    assert s["below_naive"] == {"UN@M": -1.5, "deartifacting@M": -1.0}
    assert set(s["drops_over_0.3"]) == {"UN@M"}
    md = to_markdown(table)
    assert "| UN@M | 2 | 8 | 12.00 | 14.00 | 14.00 | 10.50 | 0.105 | 11.50 | +3.50 |" in md


def test_heldout_range():
    names = [name for name, _ in resolve_images("heldout:16-19")]
    assert names == ["0016.png", "0017.png", "0018.png", "0019.png"]
    assert len(resolve_images("heldout:3")) == 3
    for bad in ("heldout:a-3", "heldout:3-x", "heldout:-3"):
        with pytest.raises(ValueError, match="heldout:A-B"):
            resolve_images(bad)


def test_runner_records_every_phase(tmp_path):
    """Each record holds every phase's metrics; the final phase's are the item's own metrics (the
    same saved 8-bit prediction), and the earlier phases differ from it."""
    G = small_generator(resolution=16)
    out = tmp_path / "b"
    run_bench(G, "heldout:2", {"rusir": restore}, "upsampling@M,denoising@M", out, steps=(3, 3, 3),
              metrics=("psnr", "ssim"), loss=mse, progress=False, save_latent=False)
    records = load_records(out)
    assert len(records) == 4
    for r in records:
        assert list(r["phases"]) == ["W", "W+", "W++"]
        assert r["phases"]["W++"]["psnr"] == pytest.approx(r["metrics"]["accuracy_psnr"], abs=1e-6)
        assert r["phases"]["W++"]["fidelity_psnr"] == pytest.approx(r["metrics"]["fidelity_psnr"], abs=1e-6)
        assert r["phases"]["W"]["psnr"] != r["phases"]["W++"]["psnr"]
    data = write_robustness(out, tmp_path / "r.json", tmp_path / "r.png")
    assert set(data["settings"]) == {"upsampling@M", "denoising@M"}
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["settings"] == 2
    assert (tmp_path / "r.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="per-phase"):
        write_robustness([{**records[0], "phases": {}}], tmp_path / "x.json")


@pytest.mark.parametrize("tau", [0, 50.0])
def test_stacked_settings_equal_each_setting_alone(tau):
    """rusir.degradations.Stacked restores several settings in one batch (benchmarks/robustness.py);
    in float64 each setting's slice equals that setting restored alone (masked and unmasked, noisy
    and composed), with the discrepancy stop too (its floor redraws each slice's own degradation)."""
    import torch

    from rusir import degradations
    G = small_generator(resolution=16).double()
    gt = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    names = ("inpainting", "denoising", "NAP")
    make = lambda: [degradations.make(t, "M", seed=16) for t in names]  # noqa: E731
    kw = dict(steps=(12, 12, 12), loss=mse, progress=False, discrepancy=tau)
    alone = [restore(G, d.degrade_ground_truth(gt), d, **kw) for d in make()]
    degs = make()
    target = torch.cat([d.degrade_ground_truth(gt) for d in degs])
    result = restore(G, target, degradations.Stacked([(d, 2) for d in degs]), **kw)
    for k, one in enumerate(alone):
        assert (result.images[2 * k:2 * k + 2] - one.images).abs().max() < 1e-9, names[k]
        assert result.info["stopped"][2 * k:2 * k + 2] == one.info["stopped"], names[k]
    assert any(result.info["stopped"]) == (tau > 0)


def test_settings_are_grouped_by_target_side_8_px_first():
    from rusir.studies.robustness import settings_by_target_side
    groups = settings_by_target_side("upsampling@XL,denoising@M,UN@M,upsampling@S,inpainting@M,"
                                     "upsampling@M", 64)
    assert groups == [(8, [("UN", "M"), ("upsampling", "M")]),
                      (64, [("denoising", "M"), ("inpainting", "M")]),
                      (16, [("upsampling", "S")]), (2, [("upsampling", "XL")])]


def test_stack_records_score_each_slice_as_the_runner_scores_an_item():
    """A stack's records: setting k, face j is batch row k * n + j, scored against face j, and its
    fidelity against its own target by its own true degradation (seed + j: a noisy task's noise
    and an inpainting mask differ per face). The naive baseline is that target's. The `Stacked`
    degradation of the stack degrades each slice as its setting's own does."""
    import torch

    from rusir.baselines.naive import naive_restoration
    from rusir.engine.records import as_8bit
    from rusir.metrics import psnr
    from rusir.studies.robustness import stack_records, stack_settings
    gt = as_8bit(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    settings = [("denoising", "M"), ("inpainting", "M")]
    degs, targets, stack = stack_settings(gt, settings, seed=16)
    assert torch.equal(stack.degrade_ground_truth(torch.cat([gt, gt])), torch.cat(targets))
    assert stack.mask[:2].eq(1).all() and torch.equal(stack.mask[2:], degs[1].mask)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))  # [settings * n]
    recs = stack_records({"W": images, "W++": images.flip(0)}, gt, settings, targets, first=5, seed=16)
    assert [(r["task"], r["image_index"]) for r in recs] == [
        ("denoising", 5), ("denoising", 6), ("inpainting", 5), ("inpainting", 6)]
    for k, j, r in ((0, 1, recs[1]), (1, 1, recs[3])):   # face 1 of each setting: rows 1 and 3
        pred = as_8bit(images[2 * k + j:2 * k + j + 1])
        assert r["phases"]["W"]["psnr"] == pytest.approx(float(psnr(pred, gt[j:j + 1])[0]))
        row_j = degs[k].degrade_ground_truth(torch.cat([pred, pred]))[j:j + 1]   # seed 16 + j
        fidelity = psnr(row_j, targets[k][j:j + 1])
        assert r["phases"]["W"]["fidelity_psnr"] == pytest.approx(float(fidelity[0])), settings[k]
        naive = naive_restoration(targets[k], 16)
        assert r["naive"]["psnr"] == pytest.approx(float(psnr(naive, gt)[j]))
    flipped = as_8bit(images[0:1])                        # W++ row 3 is W's row 0
    assert recs[3]["phases"]["W++"]["psnr"] == pytest.approx(float(psnr(flipped, gt[1:2])[0]))
    assert recs[3]["target_size"] == [16, 16]


def test_method_candidate_table_is_the_record():
    """docs/method.md's candidate table (issue 20) prints the committed record's numbers."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    record = json.loads((root / "benchmarks/results/robustness_toyfaces64.json").read_text())
    text = (root / "docs/method.md").read_text()
    rows = re.findall(r"^\| (?:\*\*)?(none \(`x0`[^|]*|[\d.]+ × \d+[^|]*)\| (?:\*\*)?([\d.]+)(?:\*\*)? \| "
                      r"([\d.]+) \| (\d+) \| (\d+) \|$", text, flags=re.M)
    assert len(rows) >= 10
    for label, mean, worst, drops, below in rows:
        m = re.match(r"([\d.]+) × (\d+)", label)
        name = "W++x0" if label.startswith("none") else f"W++{m.group(1)}x{m.group(2)}"
        s = record["candidates"][name]
        assert float(mean) == pytest.approx(s["mean_final_psnr"], abs=0.006), name
        assert float(worst) == pytest.approx(s["worst_drop"], abs=0.006), name
        assert (int(drops), int(below)) == (len(s["drops_over_0.3"]), len(s["below_naive"])), name
    assert record["chosen"] == record["today"] == "W++0.02x300"


def test_method_root_candidate_table_is_the_record():
    """docs/method.md's table of the root-level W++ candidates (NGD options) prints its record."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    record = json.loads((root / "benchmarks/results/robustness_candidates_root_toyfaces64.json").read_text())
    text = (root / "docs/method.md").read_text()
    rows = re.findall(r"^\| `(W\+\+[^`]+)`[^|]*\| (\d+) \| ([\d.]+) \| ([−\d.-]+) \| (\d+) \| (\d+) \|$",
                      text, flags=re.M)
    assert len(rows) >= 3
    for name, settings, mean, worst, drops, below in rows:
        s = record["candidates"][name]
        assert int(settings) == s["settings"], name
        assert float(mean) == pytest.approx(s["mean_final_psnr"], abs=0.006), name
        assert float(worst.replace("−", "-")) == pytest.approx(s["worst_drop"], abs=0.006), name
        assert (int(drops), int(below)) == (len(s["drops_over_0.3"]), len(s["below_naive"])), name


def test_stopped_items_are_counted_from_either_record_shape():
    a = {**rec("UN", "M", 0, 12.0, 15.0, 14.0, 14.0, side=8), "stopped": "W+:0"}
    b = {**rec("UN", "M", 1, 12.0, 15.0, 14.0, 13.0, side=8), "info": {"stopped": ["W++:40"]}}
    c = {**rec("UN", "M", 2, 12.0, 15.0, 14.0, 13.0, side=8), "info": {"stopped": [None]}}
    table = phase_table([a, b, c])
    assert table["UN@M"]["stopped"] == 2
    assert to_markdown(table).splitlines()[-1].endswith("| 2/3 |")


def test_runner_records_where_each_item_stopped(tmp_path):
    """With a generator that has a discrepancy tau, bench records carry each item's stop (a huge
    tau stops every image at the first judged step: the start of W+)."""
    from rusir.model.generators import GeneratorInfo, set_info
    G = small_generator(resolution=16)
    set_info(G, GeneratorInfo("own", "test", 16, discrepancy=1e6))
    out = tmp_path / "b"
    run_bench(G, "heldout:2", {"rusir": restore}, "denoising@M", out, steps=(12, 3, 3),
              metrics=("psnr",), loss=mse, progress=False, save_latent=False, batch=2)
    records = load_records(out)
    assert [r["info"]["stopped"] for r in records] == [["W+:0"], ["W+:0"]]
    assert phase_table(records)["denoising@M"]["stopped"] == 2


def test_method_discrepancy_tables_are_the_record():
    """docs/method.md's tables of the discrepancy stop (candidates over the 31 settings and the
    shipped tau per setting) print the committed record's numbers."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    record = json.loads((root / "benchmarks/results/robustness_discrepancy_toyfaces64.json").read_text())
    text = (root / "docs/method.md").read_text()
    rows = re.findall(r"^\| (?:\*\*)?(none \(W\+\+ 300 steps, before\)|τ = [\d.]+)(?:, shipped\*\*)? \| "
                      r"([\d.]+) \| ([\d.]+) \((\S+)\) \| (\d+) \| (\d+):", text, flags=re.M)
    assert len(rows) >= 5
    for label, mean, worst, where, drops, below in rows:
        s = record["candidates"]["off" if label.startswith("none") else f"tau{label[4:]}"]
        assert float(mean) == pytest.approx(s["mean_final_psnr"], abs=0.006), label
        assert float(worst) == pytest.approx(s["worst_drop"], abs=0.006), label
        assert where == s["worst_drop_setting"], label
        assert (int(drops), int(below)) == (len(s["drops_over_0.3"]), len(s["below_naive"])), label
    settings = re.findall(r"^\| (\w+@\w+) \| \d+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| ([\d.]+) \(([\d.]+)\) \| "
                          r"[+-][\d.]+ \| (\d+)/\d+ \|$", text, flags=re.M)
    assert len(settings) == 31
    for key, final, off, stopped in settings:
        assert float(final) == pytest.approx(record["settings"][key]["phases"]["W++"]["psnr"], abs=0.006), key
        assert float(off) == pytest.approx(record["off_settings"][key]["phases"]["W++"]["psnr"], abs=0.006), key
        assert int(stopped) == record["settings"][key]["stopped"], key
    assert record["chosen"] == "tau1.05" and record["check"]["max_abs_psnr_difference"] < 0.5


def test_method_discrepancy_rules_tables_are_the_record():
    """docs/method.md's "Round 3" tables (stop rules on the tuning faces, on the test faces and
    per setting) print benchmarks/results/robustness_discrepancy_rules_toyfaces64.json."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    record = json.loads((root / "benchmarks/results/robustness_discrepancy_rules_toyfaces64.json").read_text())
    text = (root / "docs/method.md").read_text()
    section = text[text.index("### Round 3"):]
    section = section[:section.index("\n### ", 5)]
    tuning, test = section.split("Test faces never used")

    def check_rows(part, rows, summaries):
        for key, label in rows.items():
            m = re.search(r"^\| " + re.escape(label) + r" \| ([\d.]+) \| ([\d.]+) \((\S+)\) \| (\d+) \| (\d+)",
                          part, flags=re.M)
            assert m, label
            s = summaries[key]
            assert float(m.group(1)) == pytest.approx(s["mean_final_psnr"], abs=0.006), label
            assert float(m.group(2)) == pytest.approx(s["worst_drop"], abs=0.006), label
            assert m.group(3) == s["worst_drop_setting"], label
            assert (int(m.group(4)), int(m.group(5))) == (len(s["drops_over_0.3"]), len(s["below_naive"]))

    check_rows(tuning, record["tuning_rows"], record["tuning"])
    check_rows(test, record["report_rows"], record["candidates"])
    rows = re.findall(r"^\| (\w+@\w+) \| (\d+)–(\d+) \| \d+ \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| "
                      r"([\d.]+) \| ([\d.]+) \| ([+-][\d.]+) \| (\d+)/(\d+) \|$", test, flags=re.M)
    shipped = record["settings"][record["chosen"]]
    assert len(rows) == len(shipped) >= 9
    for key, first, last, naive, w, wp, final, largest, off, drop, stopped, n in rows:
        r = shipped[key]
        assert (int(first), int(last), int(n), int(stopped)) == (min(r["images"]), max(r["images"]), r["n"], r["stopped"])
        for shown, value in ((naive, r["naive"]["psnr"]), (w, r["phases"]["W"]["psnr"]),
                             (wp, r["phases"]["W+"]["psnr"]), (final, r["phases"]["W++"]["psnr"]),
                             (largest, record["settings"]["max_tau1.05"][key]["phases"]["W++"]["psnr"]),
                             (off, record["settings"]["off"][key]["phases"]["W++"]["psnr"]),
                             (drop, r["final_drop"])):
            assert float(shown) == pytest.approx(value, abs=0.006), key


# docs/method.md's "Round 3b" and "Round 3c" tables as the retired studies printed them from their
# records (benchmarks/discrepancy_average.py and discrepancy_settle.py, last at commit 4508a22;
# docs/retired-studies.md): the docs must keep showing the committed records' numbers.

AVERAGE_GROUPS = {"tuning": "tuning faces, averaging over the judged window",
                  "tuning_within_phase": "tuning faces, averaging within the phase only (not shipped)",
                  "test": "test faces, averaging over the judged window"}


def _final(row: dict) -> float:
    return list(row["phases"].values())[-1]["psnr"]


def averaging_markdown(data: dict) -> str:
    """Per group and setting, the final PSNR and the drop, last iterate -> averaged; then each
    group's summary."""
    out = ["| faces | setting | final, last iterate | final, averaged | drop, last iterate | drop, averaged |",
           "|---|---|---|---|---|---|"]
    for group in (g for g in AVERAGE_GROUPS if g in data):
        tables = data[group]["settings"]
        for key, r in tables["stop"].items():
            a = tables["average"][key]
            out.append(f"| {group}: {min(r['images'])}–{max(r['images'])} | {key} | {_final(r):.2f} | "
                       f"{_final(a):.2f} | {r['final_drop']:+.2f} | {a['final_drop']:+.2f} |")
    out += ["", "Over those settings (benchmarks/results/discrepancy_average_toyfaces64.json):",
            "| faces | rule | mean final PSNR | worst drop (setting) | drops > 0.3 dB |", "|---|---|---|---|---|"]
    for group, label in ((g, lb) for g, lb in AVERAGE_GROUPS.items() if g in data):
        for name, rule in (("stop", "last iterate"), ("average", "averaged")):
            s = data[group]["summary"][name]
            out.append(f"| {label} | {rule} | {s['mean_final_psnr']:.2f} | {s['worst_drop']:.2f} "
                       f"({s['worst_drop_setting']}) | {len(s['drops_over_0.3'])} |")
    return "\n".join(out)


SETTLE_RECORD = "benchmarks/results/discrepancy_settle_toyfaces64.json"
SETTLE_LABELS = {"tuning": f"**Tuning faces** (used before to choose tau; {SETTLE_RECORD}):",
                 "test": f"**Test faces never used by the project** ({SETTLE_RECORD}):"}


def settle_markdown(data: dict) -> str:
    """Per group, each rule's summary, then per setting the row of the stop before (`off`) and
    of settling side by side ("off / settle")."""
    out = []
    for group, g in ((k, v) for k, v in data.items() if not k.startswith("_")):
        out += [SETTLE_LABELS.get(group, f"{group}:"), "",
                "| rule | settings | mean final PSNR | worst drop (setting) | drops > 0.3 dB | below naive (target >= 8 px) |",
                "|---|---|---|---|---|---|"]
        for r, s in g["summary"].items():
            naive = ", ".join(f"{k} {v:+.2f}" for k, v in s["below_naive"].items()) or "none"
            out.append(f"| {r} | {s['settings']} | {s['mean_final_psnr']:.2f} | {s['worst_drop']:.2f} "
                       f"({s['worst_drop_setting']}) | {len(s['drops_over_0.3'])} | {naive} |")
        rules = list(g["settings"])
        out += ["", f"Per setting, before / settling ({SETTLE_RECORD}):",
                "| setting | faces | target px | naive | after W | after W+ | final | drop | stopped |",
                "|---|---|---|---|---|---|---|---|---|"]
        for key, row in g["settings"][rules[0]].items():
            rows = [g["settings"][r][key] for r in rules if key in g["settings"][r]]
            names = list(row["phases"])

            def both(f):
                return " / ".join(f(x) for x in rows)
            mark = " (one run)" if key in g.get("one_run", []) else ""
            out.append(f"| {key} | {min(row['images'])}–{max(row['images'])} | {row['target_side']} | "
                       f"{row['naive']['psnr']:.2f} | {row['phases'][names[0]]['psnr']:.2f} | "
                       + both(lambda x: f"{x['phases'][names[1]]['psnr']:.2f}") + " | "
                       + both(lambda x: f"{x['phases'][names[-1]]['psnr']:.2f}") + " | "
                       + both(lambda x: f"{x['final_drop']:+.2f}") + " | "
                       + both(lambda x: f"{x['stopped']}/{x['n']}") + mark + " |")
        out.append("")
    return "\n".join(out)


@pytest.mark.parametrize("heading, record, markdown", [
    ("### Round 3b", "discrepancy_average_toyfaces64.json", averaging_markdown),
    ("### Round 3c", "discrepancy_settle_toyfaces64.json", settle_markdown)])
def test_method_averaging_and_settling_tables_are_the_records(heading, record, markdown):
    """docs/method.md's "Round 3b" tables (iterate averaging at the stop) and "Round 3c" tables
    (settling near the floor), per setting and summed up, print their committed records."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    data = json.loads((root / "benchmarks/results" / record).read_text())
    text = (root / "docs/method.md").read_text()
    section = text[text.index(heading + ":"):]
    section = section[:section.index("\n### ", 5)]
    lines = markdown(data).splitlines()
    assert len([line for line in lines if "@" in line]) >= 20
    missing = [line for line in lines if line and line not in section.splitlines()]
    assert not missing, missing


def test_shipped_run_records_each_items_own_stop():
    """benchmarks/robustness.py --shipped restores a stack in one batch and writes, per setting
    and face, the phases and where the stop ended THAT item: equal (float64) to the setting
    restored alone, so a row of the shipped table is that setting's."""
    import importlib.util
    from pathlib import Path

    import torch

    from rusir import degradations
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "robustness.py"
    spec = importlib.util.spec_from_file_location("robustness_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    G = small_generator(resolution=16).double()
    gt = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    settings = [("denoising", "M"), ("inpainting", "M"), ("NAP", "M")]
    kw = dict(steps=(12, 12, 12), loss=mse, discrepancy=3.0)     # stops denoising's items only
    recs = script.run_shipped(G, gt, settings, 16, **kw)
    assert [(r["task"], r["image_index"]) for r in recs] == [(t, 16 + j) for t, _ in settings for j in range(2)]
    for task, level in settings:
        deg = degradations.make(task, level, seed=16)
        alone = restore(G, deg.degrade_ground_truth(gt), deg, progress=False, **kw)
        mine = [r for r in recs if r["task"] == task]
        assert [r["stopped"] for r in mine] == alone.info["stopped"], task
    assert any(r["stopped"] for r in recs) and not all(r["stopped"] for r in recs)


SHIPPED_RECORD = "benchmarks/results/robustness_shipped_toyfaces64.json"


def _faces(images) -> str:
    runs, start = [], None
    for i, v in enumerate(images):
        if start is None:
            start = v
        if i + 1 == len(images) or images[i + 1] != v + 1:
            runs.append(f"{start}–{v}" if v != start else f"{v}")
            start = None
    return ", ".join(runs)


def shipped_markdown(data: dict) -> str:
    """docs/method.md "Round 3d": the summary per face set and over all, the 31-setting table over
    all faces, and per face set the settings that miss the target."""
    sets = {key: s for key, s in data["face_sets"].items()}
    groups = [(_faces(s["images"]), s["summary"], s["ceiling"]) for s in sets.values()]
    groups.append((_faces(sorted({i for s in sets.values() for i in s["images"]})), data["summary"], None))
    out = ["| faces | settings | mean final PSNR | mean naive PSNR | worst drop (setting) | drops > 0.3 dB | below naive (target >= 8 px) | ceiling W / W+ / W++ |",
           "|---|---|---|---|---|---|---|---|"]
    seen = set()
    for faces, s, ceiling in groups:
        if (faces, s["mean_final_psnr"]) in seen:
            continue
        seen.add((faces, s["mean_final_psnr"]))
        drops = ", ".join(f"{k} {v:.2f}" for k, v in s["drops_over_0.3"].items()) or "none"
        naive = ", ".join(f"{k} {v:+.2f}" for k, v in s["below_naive"].items()) or "none"
        ceil = " / ".join(f"{sum(v) / len(v):.2f}" for v in ceiling["psnr"].values()) if ceiling else "–"
        out.append(f"| {faces} | {s['settings']} | {s['mean_final_psnr']:.2f} | {s['mean_naive_psnr']:.2f} | "
                   f"{s['worst_drop']:.2f} ({s['worst_drop_setting']}) | {drops} | {naive} | {ceil} |")
    return "\n".join(out + ["", f"Per setting, over all these faces ({SHIPPED_RECORD}):", "",
                            to_markdown(data["settings"])])


def test_method_shipped_table_is_the_record():
    """docs/method.md's "Round 3d" tables (every setting as shipped, on faces never tuned on)
    print benchmarks/results/robustness_shipped_toyfaces64.json."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    data = json.loads((root / SHIPPED_RECORD).read_text())
    text = (root / "docs/method.md").read_text()
    section = text[text.index("### Round 3d:"):]
    section = section[:section.index("\n### ", 5)]
    lines = shipped_markdown(data).splitlines()
    assert len([line for line in lines if "@" in line]) >= 31
    missing = [line for line in lines if line and line not in section.splitlines()]
    assert not missing, missing
