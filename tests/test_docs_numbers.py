"""The numbers printed in README.md, the docs site's pages and the model card equal their committed records.

A measured number in these documents either names the committed JSON it comes from or is marked
as historical / not recorded (docs/method.md, "Sources of the numbers"). These tests read the
documents and the JSON files only. Columns of an earlier checkpoint name the commit of their JSON
("historical, `ed5038b`"); those are checked with `git show` and skipped without git history.

A printed number agrees with its record when it equals the record rounded to the printed decimals.
"""
from __future__ import annotations

import json
import re
import struct
import subprocess
from functools import lru_cache
from pathlib import Path
from statistics import fmean

import pytest

ROOT = Path(__file__).resolve().parents[1]
README, METHOD, CARD = "README.md", "docs/method.md", "rusir/assets/toyfaces64.md"
TRAINING, SCALING = "docs/training.md", "docs/scaling-out.md"
# every page of the docs site that quotes measurements (the README's former sections among them)
PAGES = tuple(sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")
                     if "results" not in p.parts))
DOCS = (README, CARD) + PAGES
TASKS = ("upsampling", "denoising", "deartifacting", "inpainting", "UNAP")
QB0 = "benchmarks/results/quality_bar_toyfaces64_M.json"          # faces 0-15
QB16 = "benchmarks/results/quality_bar_toyfaces64_M_from16.json"  # faces 16-47
INVERSION = "benchmarks/results/inversion_toyfaces64.json"
REALISM = "benchmarks/results/realism_toyfaces64.json"
SPEED = "benchmarks/results/speed_toyfaces64_cpu_b4_t2.json"
DEMO = "figures/demo_metrics.json"
BASELINES = "figures/baselines_table.json"
WEIGHTS = "rusir/assets/toyfaces64.safetensors"
COMMIT = re.compile(r"`([0-9a-f]{7,40})`")
DEC = re.compile(r"[−-]?\d+\.\d+")


# ---------------------------------------------------------------- reading documents and records
@lru_cache(maxsize=None)
def doc(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def flat(name: str) -> str:
    """The document with line breaks as spaces and without bold marks (for sentence regexes)."""
    return re.sub(r"\s+", " ", doc(name).replace("**", ""))


def git_bytes(commit: str, path: str) -> bytes:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"],
                              capture_output=True, check=True, timeout=600).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip(f"git history with {commit}:{path} is not available")


@lru_cache(maxsize=None)
def record(path: str, commit: str | None = None) -> dict:
    """A committed JSON: the file as it is (commit None) or as committed in `commit`."""
    raw = (ROOT / path).read_bytes() if commit is None else git_bytes(commit, path)
    return json.loads(raw)


@lru_cache(maxsize=None)
def weights_meta(commit: str | None = None) -> dict:
    """The training record in the JSON header of the generator's .safetensors file."""
    raw = (ROOT / WEIGHTS).read_bytes() if commit is None else git_bytes(commit, WEIGHTS)
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(json.loads(raw[8:8 + n])["__metadata__"]["meta"])


def number(s: str) -> float:
    return float(s.replace("−", "-").replace(",", ""))


def agrees(printed: str, value: float) -> bool:
    """`printed` is `value` rounded to the decimals it shows."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(number(printed) - value) <= 0.5 * 10 ** -decimals + 1e-9


class Check:
    """Collects every disagreement so that one run lists them all."""

    def __init__(self):
        self.errors: list[str] = []

    def num(self, printed: str, value: float, what: str):
        if not agrees(printed, value):
            self.errors.append(f"{what}: the document prints {printed}, the record gives {value:.4f}")

    def nums(self, printed: list[str], values: list[float], what: str):
        if len(printed) != len(values):
            self.errors.append(f"{what}: expected {len(values)} numbers, found {printed}")
        for i, (p, v) in enumerate(zip(printed, values)):
            self.num(p, v, f"{what} [{i}]")

    def eq(self, printed, value, what: str):
        if printed != value:
            self.errors.append(f"{what}: the document prints {printed}, the record gives {value}")

    def done(self):
        assert not self.errors, "\n".join(self.errors)


def find(name: str, pattern: str) -> re.Match:
    m = re.search(pattern, flat(name))
    assert m, f"{name}: no sentence matches {pattern!r} (reworded? update this test with the record)"
    return m


# ---------------------------------------------------------------- tables
def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table(name: str, needle: str) -> tuple[list[str], dict[str, list[str]]]:
    """The Markdown table whose header line contains `needle`: header cells and rows by row key."""
    lines = doc(name).splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and needle in line:
            rows = {}
            for body in lines[i + 1:]:
                if not body.startswith("|"):
                    break
                if set(body) <= set("|-: "):
                    continue
                c = cells(body)
                rows[row_key(c[0])] = c
            return cells(line), rows
    raise AssertionError(f"{name}: no table header contains {needle!r}")


def row_key(first_cell: str) -> str:
    return re.sub(r"[*`]", "", first_cell).split()[0].rstrip(",").lower() if first_cell else ""


def commit_of(*texts: str) -> str | None:
    """The first commit named in the texts (a cell's own commit before its column header's)."""
    for t in texts:
        m = COMMIT.search(t)
        if m:
            return m.group(1)
    return None


def decimals(cell: str) -> list[str]:
    return DEC.findall(cell.replace("**", ""))


def wins(cell: str) -> tuple[int, int | None]:
    m = re.search(r"\((\d+)(?:/(\d+))?\)", cell)
    assert m, f"no '(wins)' in {cell!r}"
    return int(m.group(1)), (int(m.group(2)) if m.group(2) else None)


# ---------------------------------------------------------------- values derived from records
def task_means(rec: dict, task: str, part: str, lo: int = 0, hi: int | None = None) -> dict:
    """Mean PSNR / SSIM of a quality-bar record's faces [lo:hi], 'restored' or 'naive'."""
    side = rec[task]["per_image"][part]
    return {"psnr": fmean(side["psnr"][lo:hi]), "ssim": fmean(side["ssim"][lo:hi])}


def qb_wins(rec: dict, task: str, lo: int = 0, hi: int | None = None) -> int:
    p = rec[task]["per_image"]
    return sum(r > n for r, n in zip(p["restored"]["psnr"][lo:hi], p["naive"]["psnr"][lo:hi]))


def demo_means(rec: dict, task: str, part: str) -> dict:
    return {k: fmean(rec[task][part][k]) for k in ("psnr", "ssim")}


def baseline_means(rec: dict) -> dict[str, tuple[float, float]]:
    out = {}
    for m in rec["methods"]:
        vals = [c["methods"][m] for c in rec["cells"]]
        out[m] = (fmean(v["psnr"] for v in vals), fmean(v["ssim"] for v in vals))
    return out


def speed_restore(rec: dict) -> float:
    key = next(k for k in rec if k.startswith("seconds_per_restore"))
    return rec[key]["fp32"]


# ================================================================ tests
PATH = re.compile(r"(?:benchmarks/results|figures)/[\w.-]+\.(?:json|md|png)")


@pytest.mark.parametrize("name", DOCS)
def test_named_result_files_exist(name):
    named = set(PATH.findall(doc(name)))
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"{name} names files that are not committed: {missing}"
    if name == CARD:
        assert {QB0, QB16, INVERSION, REALISM, SPEED, DEMO, BASELINES} <= named
    if name == METHOD:
        assert {QB0, QB16, SPEED} <= named


def git_history_available() -> bool:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--is-shallow-repository"],
                             capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "false"


@pytest.mark.parametrize("name", DOCS)
def test_named_commits_exist(name):
    commits = set(COMMIT.findall(doc(name)))
    if commits and not git_history_available():
        pytest.skip("no full git history")
    for commit in sorted(commits):
        # Ancestry, not mere existence: a commit left behind by a rebase exists in this
        # checkout but not in a fresh clone of main (CI failed on exactly that).
        rc = subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", commit, "HEAD"],
                            capture_output=True).returncode
        assert rc == 0, f"{name} names commit {commit}, which is not in this branch's history"


# ---------------------------------------------------------------- model card: quality bar table
def test_card_quality_bar_table_matches_json():
    header, rows = table(CARD, "faces 0–15: naive")
    assert "shipped" in header[3] and "shipped" in header[6]
    c = Check()
    for task in TASKS:
        row = rows[task.lower()]
        for rec_path, naive_col, ship_col, what in ((QB0, 1, 3, "faces 0–15"), (QB16, 4, 6, "faces 16–47")):
            rec = record(rec_path)
            restored, naive = task_means(rec, task, "restored"), task_means(rec, task, "naive")
            c.num(decimals(row[naive_col])[0], naive["psnr"], f"{task} {what} naive PSNR")
            c.nums(decimals(row[ship_col]), [restored["psnr"], naive["ssim"], restored["ssim"]],
                   f"{task} {what} shipped PSNR, SSIM naive / RUSIR")
            won, of = wins(row[ship_col])
            c.eq(won, qb_wins(rec, task), f"{task} {what} shipped wins")
            if of is not None:
                c.eq(of, rec[task]["summary"]["n_images"], f"{task} {what} number of faces")
    c.done()


def test_card_quality_bar_historical_columns_match_git():
    header, rows = table(CARD, "faces 0–15: naive")
    c = Check()
    for rec_path, col in ((QB0, 2), (QB16, 5)):
        commit = commit_of(header[col])
        assert commit, f"column {header[col]!r} names no commit"
        rec = record(rec_path, commit)
        for task in TASKS:
            cell = rows[task.lower()][col]
            c.num(decimals(cell)[0], task_means(rec, task, "restored")["psnr"], f"{task} {header[col]}")
            c.eq(wins(cell)[0], qb_wins(rec, task), f"{task} {header[col]} wins")
    c.done()


def test_card_deartifacting_margins():
    c = Check()
    m = find(CARD, r"turned that into \+(\d+\.\d+) dB \((\d+)/(\d+)\) and \+(\d+\.\d+) dB \((\d+)/(\d+)\)")
    for (delta, won, of), path in ((m.group(1, 2, 3), QB16), (m.group(4, 5, 6), QB0)):
        rec = record(path)
        c.num(delta, task_means(rec, "deartifacting", "restored")["psnr"]
              - task_means(rec, "deartifacting", "naive")["psnr"], f"deartifacting margin, {path}")
        c.eq((int(won), int(of)), (qb_wins(rec, "deartifacting"), rec["deartifacting"]["summary"]["n_images"]),
             f"deartifacting wins, {path}")
    c.done()


def test_card_deartifacting_margins_historical():
    c = Check()
    m = find(CARD, r"stayed (\d+\.\d+) dB below the JPEG on faces 16–47 \((\d+)/32 wins\)")
    commit = find(CARD, r"the 629-kimg columns are historical, the same files at commit `([0-9a-f]+)`").group(1)
    rec = record(QB16, commit)
    gap = task_means(rec, "deartifacting", "naive")["psnr"] - task_means(rec, "deartifacting", "restored")["psnr"]
    c.num(m.group(1), gap, "629-kimg deartifacting gap, faces 16–47")
    c.eq(int(m.group(2)), qb_wins(rec, "deartifacting"), "629-kimg deartifacting wins, faces 16–47")
    m = find(CARD, r"lost (\d+\.\d+) dB on faces 0–15 "
                   r"\(historical: benchmarks/results/quality_bar_toyfaces64_M.json at commit `([0-9a-f]+)`\)")
    rec = record(QB0, m.group(2))
    gap = task_means(rec, "deartifacting", "naive")["psnr"] - task_means(rec, "deartifacting", "restored")["psnr"]
    c.num(m.group(1), gap, "paper's schedule deartifacting loss, faces 0–15")
    c.done()


# ---------------------------------------------------------------- model card: demo table
def _demo_table_check(historical: bool):
    header, rows = table(CARD, "| task | naive |")
    c = Check()
    cols = [i for i in range(1, len(header)) if (commit_of(header[i]) is not None) == historical]
    assert cols, "no column to check"
    for i in cols:
        rec = record(DEMO, commit_of(header[i]))
        part = "naive" if header[i].startswith("naive") else "restored"
        for task in TASKS:
            means = demo_means(rec, task, part)
            c.nums(decimals(rows[task.lower()][i]), [means["psnr"], means["ssim"]], f"demo {task}, {header[i]}")
    c.done()


def test_card_demo_table_matches_json():
    _demo_table_check(historical=False)


def test_card_demo_table_historical_columns_match_git():
    _demo_table_check(historical=True)


def test_card_demo_unap_phases():
    """The demo's UNAP phases, without the discrepancy stop (historical) and with it (now)."""
    c = Check()
    m = find(CARD, r"W phase alone \((\d+\.\d+) dB\) beat the final W\+\+ result \((\d+\.\d+) dB;"
                   r"\s+per-phase PSNR in figures/demo_metrics.json at commit `([0-9a-f]+)`")
    phases = record(DEMO, m.group(3))["UNAP"]["phases"]
    c.num(m.group(1), fmean(phases["W"]["psnr"]), "UNAP after W, no stop")
    c.num(m.group(2), fmean(phases["W++"]["psnr"]), "UNAP after W++, no stop")
    m = find(CARD, r"UNAP faces the W phase reaches\s+(\d+\.\d+) dB and the final result (\d+\.\d+) dB")
    phases = record(DEMO)["UNAP"]["phases"]
    c.num(m.group(1), fmean(phases["W"]["psnr"]), "UNAP after W")
    c.num(m.group(2), fmean(phases["W++"]["psnr"]), "UNAP final")
    c.done()


# ---------------------------------------------------------------- model card: FID, inversion, speed, demo time
def _measured_table_check(historical: bool):
    header, rows = table(CARD, "**shipped**: 1196.6 kimg, L2")
    c = Check()
    for i in range(1, len(header)):
        if (commit_of(header[i]) is not None) != historical:
            continue
        what = header[i]
        fid = rows["fid"][i]
        rec = record(REALISM, commit_of(fid, header[i]))
        keys = ["fid_generated_vs_heldout", "kid_generated_vs_heldout", "kid_std"][:len(decimals(fid))]
        c.nums(decimals(fid), [rec[k] for k in keys], f"FID / KID, {what}")
        rec = record(INVERSION, commit_of(rows["identity"][i], header[i]))
        c.nums(decimals(rows["identity"][i]), [rec["mean_psnr"][p] for p in ("W", "W+", "W++")],
               f"inversion PSNR, {what}")
        c.nums(decimals(rows["same"][i]), [rec["mean_ssim"][p] for p in ("W", "W+", "W++")],
               f"inversion SSIM, {what}")
        cell = rows["seconds"][i]
        rec = record(SPEED, commit_of(cell, header[i]))
        steps = re.search(r"(\d+\.\d+) / (\d+\.\d+) / (\d+\.\d+)", cell)
        restore = re.search(r"(\d+\.\d+) s per restore", cell)
        assert steps or restore, f"speed cell {cell!r} has no number"
        if steps:
            c.nums(list(steps.groups()), [rec["seconds_per_step"]["fp32"][p] for p in ("W", "W+", "W++")],
                   f"seconds per step, {what}")
        if restore:
            c.num(restore.group(1), speed_restore(rec), f"seconds per restore, {what}")
        cell = rows["rusir"][i]
        rec = record(DEMO, commit_of(cell, header[i]))
        c.num(re.search(r"(\d+\.\d+) s", cell).group(1), rec["_meta"]["seconds_total"], f"demo time, {what}")
    c.done()


def test_card_measured_table_matches_json():
    _measured_table_check(historical=False)


def test_card_measured_table_historical_columns_match_git():
    _measured_table_check(historical=True)


def test_card_fid_scale():
    assert agrees(find(CARD, r"is (\d+\.\d+) \(`fid_heldout_half_vs_half`").group(1),
                  record(REALISM)["fid_heldout_half_vs_half"]), "FID of held-out half vs half"


def test_card_gains_of_the_gpu_stage():
    c = Check()
    m = find(CARD, r"FID fell from (\d+\.\d+) to (\d+\.\d+) and KID from (\d+\.\d+) to (\d+\.\d+) "
                   r"\(`benchmarks/results/realism_toyfaces64.json`, now and at commit `([0-9a-f]+)`\)")
    old, new = record(REALISM, m.group(5)), record(REALISM)
    c.nums(list(m.group(1, 2, 3, 4)), [old["fid_generated_vs_heldout"], new["fid_generated_vs_heldout"],
                                       old["kid_generated_vs_heldout"], new["kid_generated_vs_heldout"]],
           "FID / KID before and after the GPU stage")
    m = find(CARD, r"The GPU stage adds \+(\d\.\d) / \+(\d\.\d) / \+(\d\.\d) dB after W / W\+ / W\+\+ .{0,80}?"
                   r"now and at commit `([0-9a-f]+)`")
    old, new = record(INVERSION, m.group(4)), record(INVERSION)
    c.nums(list(m.group(1, 2, 3)), [new["mean_psnr"][p] - old["mean_psnr"][p] for p in ("W", "W+", "W++")],
           "inversion gain of the GPU stage")
    c.done()


# ---------------------------------------------------------------- model card: baselines
METHODS = {"RUSIR": "rusir", "W+ Adam": "adam_wplus", "PULSE": "pulse", "L-BRGM": "lbrgm"}


def _baseline_lines():
    found = re.findall(r"^- (RUSIR|W\+ Adam|PULSE|L-BRGM) \**(\d+\.\d+) / (\d+\.\d+)\** "
                       r"\((\d+\.\d+) / (\d+\.\d+)\)[;.]?$", doc(CARD), flags=re.M)
    assert {f[0] for f in found} == set(METHODS), f"baseline lines not found: {found}"
    return found


def test_card_baselines_match_json():
    means = baseline_means(record(BASELINES))
    c = Check()
    for name, psnr, ssim, _, _ in _baseline_lines():
        c.nums([psnr, ssim], list(means[METHODS[name]]), f"baselines {name}")
    c.done()


def test_card_baselines_historical_match_git():
    commit = commit_of(find(CARD, r"in brackets: the 629-kimg file with its own schedule, historical, "
                                  r"the same file at commit `[0-9a-f]+`").group(0))
    means = baseline_means(record(BASELINES, commit))
    c = Check()
    for name, _, _, psnr, ssim in _baseline_lines():
        c.nums([psnr, ssim], list(means[METHODS[name]]), f"baselines {name} at {commit}")
    c.done()


# ---------------------------------------------------------------- training record (.safetensors metadata)
def test_training_totals_match_the_weights_metadata():
    meta = weights_meta()
    c = Check()
    c.eq(number(find(CARD, r"three stages, ([\d,]+) images").group(1)), meta["images_seen"], "images seen")
    m = find(CARD, r"the shipped file ([\d,]+) images, ([\d,]+) steps and ([\d,]+\.\d) s")
    c.eq(number(m.group(1)), meta["images_seen"], "images seen")
    c.eq(number(m.group(2)), meta["steps"], "steps")
    c.num(m.group(3), meta["wall_time_s"], "wall time")
    c.num(find(CARD, r"last logged rate is (\d+\.\d) img/s").group(1), meta["last_stats"]["img_s"], "last img/s")
    m = find(CARD, r"one log entry at (\d+\.\d) kimg\): loss_D (\S+), loss_G (\S+), D\(real\) (\S+), "
                   r"D\(fake\) (\S+), R1 (\d+\.\d+)")
    s = meta["last_stats"]
    c.nums([g.rstrip(",") for g in m.groups()],
           [s["kimg"], s["loss_D"], s["loss_G"], s["D_real"], s["D_fake"], s["r1"]], "last logged stats")
    c.done()


def test_gpu_stage_numbers_match_the_metadata_of_both_files():
    m = find(CARD, r"the 629-kimg file \(commit `([0-9a-f]+)`\) has ([\d,]+) images, ([\d,]+) steps and ([\d,]+\.\d) s")
    old, new = weights_meta(m.group(1)), weights_meta()
    c = Check()
    c.eq(number(m.group(2)), old["images_seen"], "629-kimg images")
    c.eq(number(m.group(3)), old["steps"], "629-kimg steps")
    c.num(m.group(4), old["wall_time_s"], "629-kimg wall time")
    cpu, gpu = find(CARD, r"images, (\d+\.\d) min on 2 CPU cores \+ (\d+\.\d) min on one GPU").groups()
    c.num(cpu, old["wall_time_s"] / 60, "CPU minutes")
    c.num(gpu, (new["wall_time_s"] - old["wall_time_s"]) / 60, "GPU minutes")
    m = find(CARD, r"\(629\.3 → 1196\.6 kimg, ([\d,]+) steps, (\d+\.\d) min of training wall time")
    c.eq(number(m.group(1)), new["steps"] - old["steps"], "GPU steps")
    c.num(m.group(2), (new["wall_time_s"] - old["wall_time_s"]) / 60, "GPU minutes")
    images, seconds, rate = find(CARD, r"([\d,]+) images in (\d+\.\d) s are (\d+) img/s").groups()
    gpu_images, gpu_s = new["images_seen"] - old["images_seen"], new["wall_time_s"] - old["wall_time_s"]
    c.eq(number(images), gpu_images, "GPU images")
    c.num(seconds, gpu_s, "GPU seconds")
    c.num(rate, gpu_images / gpu_s, "GPU img/s")
    kimg, page_rate = find(TRAINING, r"last (\d+\.\d) kimg: .{0,80}? (\d+) img/s on average").groups()
    c.num(kimg, gpu_images / 1000, f"{TRAINING}: GPU kimg")
    c.num(page_rate, gpu_images / gpu_s, f"{TRAINING}: GPU img/s")
    m = find(CARD, r"at 629\.1 kimg on the CPU: (\S+), (\S+), (\S+), (\S+), (\d+\.\d+)\)")
    s = old["last_stats"]
    c.nums([g.rstrip(",") for g in m.groups()], [s["loss_D"], s["loss_G"], s["D_real"], s["D_fake"], s["r1"]],
           "629-kimg last logged stats")
    m = find(CARD, r"last logged rate (\d+\.\d) img/s in the 437-kimg file's metadata, commit `([0-9a-f]+)`; "
                   r"(\d+\.\d) in the 629-kimg file's")
    c.num(m.group(1), weights_meta(m.group(2))["last_stats"]["img_s"], "437-kimg img/s")
    c.num(m.group(3), old["last_stats"]["img_s"], "629-kimg img/s")
    c.done()


# ---------------------------------------------------------------- docs/method.md
def test_method_numbers_with_a_json_source():
    c = Check()
    m = find(METHOD, r"a W\+\+ step costs ~(\d\.\d) W steps: (\d\.\d+) vs (\d\.\d+) s in "
                     r"benchmarks/results/speed_toyfaces64_cpu_b4_t2.json")
    step = record(SPEED)["seconds_per_step"]["fp32"]
    c.nums(list(m.group(2, 3)), [step["W++"], step["W"]], "W++ / W step time")
    c.num(m.group(1), step["W++"] / step["W"], "W++ step cost in W steps")
    # the shipped row of the 1197-kimg schedule table, against faces 4-11 of the quality bar
    m = find(METHOD, r"deartifacting (\d+\.\d+) \((\d)\) equals faces 4–11 of "
                     r"benchmarks/results/quality_bar_toyfaces64_M.json")
    rec = record(QB0)
    c.num(m.group(1), task_means(rec, "deartifacting", "restored", 4, 12)["psnr"], "deartifacting, faces 4–11")
    c.eq(int(m.group(2)), qb_wins(rec, "deartifacting", 4, 12), "deartifacting wins, faces 4–11")
    shipped = [line for line in doc(METHOD).splitlines() if line.startswith("|") and "(shipped)**" in line]
    assert len(shipped) == 1, shipped
    c.eq(cells(shipped[0])[4].replace("**", ""), f"{m.group(1)} ({m.group(2)})", "schedule table, shipped row")
    m = find(METHOD, r"naive (\d+\.\d+), as in benchmarks/results/quality_bar_toyfaces64_M_from16.json")
    c.num(m.group(1), task_means(record(QB16), "deartifacting", "naive", 0, 16)["psnr"],
          "naive deartifacting, faces 16–31")
    c.done()


def test_method_numbers_with_a_historical_json_source():
    c = Check()
    m = find(METHOD, r"~(\d\.\d), (\d\.\d+) vs (\d\.\d+) s, in that file at commit `([0-9a-f]+)`")
    step = record(SPEED, m.group(4))["seconds_per_step"]["fp32"]
    c.nums(list(m.group(2, 3)), [step["W++"], step["W"]], "W++ / W step time (historical)")
    c.num(m.group(1), step["W++"] / step["W"], "W++ step cost (historical)")
    m = find(METHOD, r"gives (\d+\.\d+) dB for the default approximation on those faces "
                     r"\(benchmarks/results/quality_bar_toyfaces64_M_from16.json at commit `([0-9a-f]+)`\)")
    c.num(m.group(1), task_means(record(QB16, m.group(2)), "deartifacting", "restored", 0, 16)["psnr"],
          "629-kimg deartifacting, faces 16–31")
    c.done()


# ---------------------------------------------------------------- the embedded generator's schedule
SCHEDULE = re.compile(r"(\d+) ?/ ?(\d+) ?/ ?(\d+) steps at (\d*\.\d+) ?/ ?(\d*\.\d+) ?/ ?(\d*\.\d+) "
                      r"× (?:`lr_scale` )?(\d+)")


@pytest.mark.parametrize("name", (CARD, METHOD, "docs/python-api.md"))
def test_documented_schedule_is_the_one_the_results_ran(name):
    meta = record(QB0)["_meta"]
    demo = record(DEMO)["_meta"]
    found = [m for m in SCHEDULE.findall(flat(name)) if m[:3] != ("150", "150", "150")]
    assert found, f"{name} states no schedule for toyfaces64"
    for m in found:
        steps, lrs, scale = [int(s) for s in m[:3]], [float(x) for x in m[3:6]], float(m[6])
        assert steps == meta["steps"] == demo["steps"], (name, m)
        assert lrs == meta["lrs"] and scale == meta["lr_scale"], (name, m)
        assert demo["lrs"] == pytest.approx([lr * scale for lr in lrs]), (name, m)


# ---------------------------------------------------------------- every measured number has a source
MEASURED = re.compile(r"\d(?:[\d.,]*\d)? ?(?:dB|img/s)\b|\b(?:FID|KID)\b\D{0,30}\d+\.\d+"
                      r"|\d+\.\d+ ?(?:s per restore|min\b|s\b)")
SOURCE = ("benchmarks/results/", "figures/", "docs/results/", "historical", "not recorded", "unrecorded",
          "no committed", "not committed", "metadata", "tests/")


def blocks(text: str) -> list[tuple[str, str]]:
    """(block, context) pairs: paragraphs, list items and tables outside code fences. A table's or a
    list item's context also holds the rest of its paragraph before it and the previous paragraph."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    out = []
    for k, para in enumerate(paragraphs):
        previous = paragraphs[k - 1] if k else ""
        lines = para.splitlines()
        rows = [line for line in lines if line.startswith("|")]
        if rows:
            caption = "\n".join(line for line in lines if not line.startswith("|"))
            out.append(("\n".join(rows), previous + "\n" + para))
            if caption:
                out.append((caption, para))
            continue
        starts = [i for i, line in enumerate(lines) if re.match(r"(?:- |\d+\. )", line)]
        if not starts:
            out.append((para, para))
            continue
        lead = "\n".join(lines[:starts[0]])
        if lead:
            out.append((lead, lead))
        for a, b in zip(starts, starts[1:] + [len(lines)]):
            item = "\n".join(lines[a:b])
            out.append((item, previous + "\n" + lead + "\n" + item))
    return out


def measured(block: str) -> bool:
    """Looks like a measurement: a number with a unit, FID/KID values, or a table of 2-decimal values."""
    if block.startswith("|"):
        return bool(re.search(r"\d\.\d\d\b", block))
    return bool(MEASURED.search(block))


@pytest.mark.parametrize("name", DOCS)
def test_every_measured_number_names_its_source(name):
    unsourced = [block.strip()[:160] for block, context in blocks(doc(name))
                 if measured(block) and not any(s in context for s in SOURCE)]
    assert not unsourced, (f"{name}: measured numbers without a committed source or a "
                           "'historical' / 'not recorded' mark:\n" + "\n---\n".join(unsourced))


def test_cluster_throughput_numbers_match_the_record():
    """docs/scaling-out.md: items per hour per engine, as recorded."""
    name = "benchmarks/results/cluster_throughput_toyfaces64_cpu.json"
    text = flat(SCALING)
    assert name in text
    rec = record(name)["configs"]
    m = re.search(r"load average (\d+\.\d) to (\d+\.\d) during the runs\), in items per hour: local "
                  r"engine (\d+) \(1 thread\) and (\d+) \(2 threads\), with `--batch 8` (\d+) and (\d+); "
                  r"Ray (\d+) with 1 CPU worker, (\d+) with 2 workers, (\d+) with 2 workers and "
                  r"`--batch 8` \(Ray's own start, (\d+\.\d) s", text)
    assert m, f"{SCALING}'s throughput sentence was reworded: update this test with the record"
    loads = [v[k][0] for v in rec.values() for k in ("load_before", "load_after")]
    expected = [min(loads), max(loads)] + [rec[k]["items_per_hour"] for k in (
        "local_t1_b1", "local_t2_b1", "local_t1_b8", "local_t2_b8", "ray_w1_b1", "ray_w2_b1",
        "ray_w2_b8")] + [fmean(v["ray_init_s"] for v in rec.values() if "ray_init_s" in v)]
    for printed, value in zip(m.groups(), expected):
        decimals = len(printed.split(".")[1]) if "." in printed else 0
        assert float(printed) == round(value, decimals), (printed, value)


def test_committed_records_name_commits_of_this_history():
    """A committed record's `code.commit` (rusir.engine.provenance) is in this branch's history: a
    record made on a branch that was later rebased names a commit a fresh clone lacks."""
    paths = sorted((ROOT / "docs" / "results").glob("**/record.json"))
    commits = {}
    for path in paths:
        commit = (json.loads(path.read_text()).get("code") or {}).get("commit")
        if commit:
            commits.setdefault(commit, path)
    if commits and not git_history_available():
        pytest.skip("no full git history")
    for commit, path in sorted(commits.items()):
        rc = subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", commit, "HEAD"],
                            capture_output=True).returncode
        assert rc == 0, f"{path.relative_to(ROOT)} was made by commit {commit}, not in this branch's history"
