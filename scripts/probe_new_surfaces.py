"""Hostile-input probe of the surfaces added in the photos/test-set/grayscale/plug-in session:
`rusir restore --align` (--scale --paste --detector --color --files-per-call, per-face files),
`rusir data build|verify`, grayscale inputs, plug-in entry points. Each case runs the CLI
in-process under an alarm and is classified: refused (exit 2, one line), ran (exit 0/1), or a
failure (traceback, hang, wrong exit, file written outside --out). Prints one line per case and
a summary; writes nothing outside a temporary folder.

    PYTHONPATH=. python scripts/probe_new_surfaces.py [FILTER]
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch
from PIL import Image

torch.set_num_threads(1)
from rusir.cli import main  # noqa: E402
from rusir.data import avatars, heldout  # noqa: E402
from rusir.degradations import Upsampling  # noqa: E402
from rusir.degradations.base import to_pil  # noqa: E402
from rusir.faces.scenes import place_faces  # noqa: E402

RESULTS = []


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang()


def run(name, argv, expect="refuse", timeout=60, check=None):
    """Run `rusir argv`; expect 'refuse' (exit 2, one line), 'ok' (exit 0), 'nonzero' or 'any'."""
    if len(sys.argv) > 1 and sys.argv[1] not in name:
        return
    err, out = io.StringIO(), io.StringIO()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    verdict = None
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 2
    except Hang:
        verdict, rc = "HANG", None
    except BaseException:
        verdict, rc = "TRACEBACK", None
        err.write(traceback.format_exc())
    finally:
        signal.alarm(0)
    text = err.getvalue()
    lines = [ln for ln in text.strip().splitlines() if not ln.startswith("warning")]
    if verdict is None:
        if "Traceback" in text:
            verdict = "TRACEBACK"
        elif expect == "refuse":
            verdict = "ok" if rc == 2 and len(lines) == 1 else f"WRONG(rc={rc},{len(lines)} lines)"
        elif expect == "ok":
            verdict = "ok" if rc == 0 else f"WRONG(rc={rc})"
        elif expect == "nonzero":
            verdict = "ok" if rc not in (0, None) and len(lines) >= 1 else f"WRONG(rc={rc})"
        else:
            verdict = "ok" if rc in (0, 1, 2) else f"WRONG(rc={rc})"
    if verdict == "ok" and check is not None:
        problem = check()
        if problem:
            verdict = f"WRONG({problem})"
    last = (lines[-1] if lines else out.getvalue().strip()[-150:])[:200]
    if verdict.startswith(("TRACEBACK",)):
        last = text.strip().splitlines()[-1][:200] if text.strip() else ""
    RESULTS.append((name, verdict, last))
    print(f"{verdict:24s} {name:55s} {last}", flush=True)


def _task(argv, task):
    argv = list(argv)
    argv[3] = task
    return argv


def photo(tmp: Path, n=1, name="photo.png"):
    s = place_faces(heldout(n), avatars.landmarks(64), np.random.default_rng(1), cell=256,
                    side=(0.5, 0.7))
    low = Upsampling("M", seed=0, factor=8).degrade_ground_truth(s.photo)
    path = tmp / name
    to_pil(low[0], "round").save(path)
    return path, [(lm / 8).tolist() for lm in s.landmarks]


def main_probe():
    base = Path(tempfile.mkdtemp(prefix="probe_h9_"))
    ph, lms = photo(base, 1)
    lmf = base / "lm.json"
    lmf.write_text(json.dumps(lms))
    outside = base / "outside.txt"
    outside.write_text("precious")

    def untouched():
        return None if outside.read_text() == "precious" else "file outside --out overwritten"

    def align(*extra, out=None, img=ph, lm=lmf):
        out = out or Path(tempfile.mkdtemp(dir=base))
        return ["restore", img, "--task", "upsampling", "--align", "--landmarks", lm,
                "--out", out, "--steps", "0,0,0", *extra]

    # --- restore --align numbers ------------------------------------------------------------
    for v in ["nan", "inf", "-inf", "-1", "0", "1e300", "1e-300", "0.001", "100000", "abc", "",
              "1e5", "65", "0x10", "1_0"]:     # "1_0" is Python's 10 (float() reads it): accepted
        run(f"align --scale {v!r}", align("--scale", v), expect="any" if v == "1_0" else "refuse")
    run("align --scale 64 (bounded output size)", align("--scale", "64"), expect="any", timeout=120)
    for v in ["nan", "inf", "-3", "0", "1e300", "300"]:
        run(f"align --factor {v!r}", align("--factor", v))
    for v in ["bogus", "", "DLIB", "../dlib"]:
        run(f"align --detector {v!r}", align("--detector", v))
    for v in ["bogus", "", "MASK"]:
        run(f"align --paste {v!r}", align("--paste", v))
    for v in ["bogus", "", "grey"]:
        run(f"align --color {v!r}", align("--color", v))
    for v in ["0", "-1", "nan", "1e300", "5000", "auto1", "1.5"]:
        run(f"--files-per-call {v!r}", align("--files-per-call", v))
    run("--files-per-call with --batch-size", align("--files-per-call", "2", "--batch-size", "2"))
    for v in ["-1", "1e300", "nan", "5", "1000001"]:
        run(f"align --face {v!r}", align("--face", v))
    run("--scale without --align", ["restore", ph, "--task", "upsampling", "--scale", "2",
                                    "--out", base / "o1"])
    run("--paste without --align", ["restore", ph, "--task", "upsampling", "--paste", "square",
                                    "--out", base / "o1"])

    # --- landmark JSON -----------------------------------------------------------------------
    bad_lms = {
        "nan": '[[[NaN, 1],[2,3],[4,5],[6,7],[8,9]]]',
        "infinity": '[[[Infinity, 1],[2,3],[4,5],[6,7],[8,9]]]',
        "1e300": json.dumps([[[1e300, 1], [2, 3], [4, 5], [6, 7], [8, 9]]]),
        "huge int": "[[[" + "9" * 5000 + ",1],[2,3],[4,5],[6,7],[8,9]]]",
        "xy objects": json.dumps([[{"x": 1, "y": 2}] * 5]),
        "strings": json.dumps([[["1", "2"]] * 5]),
        "bools": json.dumps([[[True, False]] * 5]),
        "null": "null", "number": "5", "empty list": "[]", "empty face": "[[]]",
        "3 points": json.dumps([[[0, 0]] * 3]), "3d points": json.dumps([[[0, 0, 0]] * 5]),
        "eyes 1e-5 apart": json.dumps([[[30, 30], [30.00001, 30], [30, 31], [29, 33], [31, 33]]]),
        "all same point": json.dumps([[[30, 30]] * 5]),
        "negative coords": json.dumps([[[-30, -30], [-20, -30], [-25, -25], [-28, -20], [-22, -20]]]),
        "deep nesting": "[" * 100000 + "]" * 100000,
        "truncated": '[[[1, 2]',
        "not json": "hello: [1, 2]",
        "binary": "\x00\x01\x02",
        "dict of unknown file": json.dumps({"nope.png": lms}),
        "dict traversal": json.dumps({"../../etc/passwd": lms}),
        "duplicate keys": '{"photo.png": %s, "photo.png": %s}' % (json.dumps(lms), json.dumps(lms)),
        "10000 faces": json.dumps(lms * 10000),
        "duplicate faces": json.dumps(lms * 2),
    }
    for k, text in bad_lms.items():
        f = base / f"lm_{k.replace(' ', '_')}.json"
        f.write_text(text)
        run(f"landmarks {k}", align(lm=f), expect="refuse" if k not in ("duplicate faces", "duplicate keys") else "any", timeout=90)
    big = base / "lm_big.json"
    big.write_text(" " * (2 << 20) + "[]")
    run("landmarks 2 MiB", align(lm=big))
    fifo = base / "lm_fifo.json"
    os.mkfifo(fifo)
    run("landmarks FIFO", align(lm=fifo), timeout=20)
    run("landmarks folder", align(lm=base))
    run("landmarks missing", align(lm=base / "nope.json"))
    dl = base / "lm_dangling.json"
    os.symlink(base / "nowhere", dl)
    run("landmarks dangling link", align(lm=dl))

    # --- input images ------------------------------------------------------------------------
    def img(name, make):
        p = base / "imgs" / name
        p.parent.mkdir(exist_ok=True)
        make(p)
        return p
    rgb = Image.open(ph)
    cases = {
        "rgba.png": lambda p: rgb.convert("RGBA").save(p),
        "la.png": lambda p: rgb.convert("LA").save(p),
        "palette.png": lambda p: rgb.convert("P").save(p),
        "grey16.png": lambda p: Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257)).save(p),
        "bilevel.png": lambda p: rgb.convert("1").save(p),
        "cmyk.jpg": lambda p: rgb.convert("CMYK").save(p),
        "float.tif": lambda p: Image.fromarray(np.asarray(rgb.convert("L"), np.float32) / 255).save(p),
        "I16.tif": lambda p: Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257).save(p),
    }
    for name, make in cases.items():
        p = img(name, make)
        run(f"align image {name}", align(img=p, out=base / f"o_{name}"), expect="ok", timeout=120)
        run(f"grayscale task image {name}", ["restore", p, "--task", "grayscale", "--out",
                                              base / f"g_{name}", "--steps", "0,0,0"], expect="ok", timeout=120)
        run(f"align grayscale+upsampling color restore {name}",
            _task(align("--color", "restore", img=p, out=base / f"gc_{name}"), "grayscale+upsampling"),
            expect="any", timeout=120)
    corrupt = {
        "truncated.png": lambda p: p.write_bytes(ph.read_bytes()[:200]),
        "empty.png": lambda p: p.write_bytes(b""),
        "text.png": lambda p: p.write_text("not an image"),
        "bomb.png": lambda p: Image.new("L", (1, 1)).save(p),
    }
    for name, make in corrupt.items():
        p = img(name, make)
        run(f"align corrupt {name}", align(img=p, out=base / f"c_{name}"))
    f2 = base / "imgs" / "fifo.png"
    os.mkfifo(f2)
    run("align FIFO image", align(img=f2, out=base / "o_fifo"), timeout=20)
    bomb = base / "imgs" / "huge.png"
    import zlib, struct
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))
    run("align 100000x100000 header PNG", align(img=bomb, out=base / "o_bomb"))

    # --- outputs: links, per-face folder, concurrent runs --------------------------------------
    out = base / "links1"
    out.mkdir()
    os.symlink(outside, out / "photo_restored.png")
    run("align output name is a link", align(out=out), check=untouched)
    run("align output name is a link --overwrite", align("--overwrite", out=out), check=untouched)
    out = base / "links2"
    out.mkdir()
    os.symlink(base / "dangling_target.png", out / "photo_restored.png")
    run("align output name dangling link", align(out=out),
        check=lambda: "created where dangling link points" if (base / "dangling_target.png").exists() else None)
    out = base / "links3"
    out.mkdir()
    elsewhere = base / "elsewhere_faces"
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "photo.faces")
    run("align <stem>.faces is a link to another folder", align(out=out),
        check=lambda: "per-face files written through a linked folder" if any(elsewhere.iterdir()) else None)
    out = base / "links4"
    out.mkdir()
    os.symlink(base / "nowhere_faces", out / "photo.faces")
    run("align <stem>.faces dangling link", align(out=out),
        check=lambda: "created where dangling link points" if (base / "nowhere_faces").exists() else None)
    out = base / "links5"
    (out / "photo.faces").mkdir(parents=True)
    os.symlink(outside, out / "photo.faces" / "face_0.png")
    run("align face_0.png is a link", align(out=out), check=untouched)
    run("align face_0.png is a link --overwrite", align("--overwrite", out=out), check=untouched)
    out = base / "links6"
    (out / "photo.faces").mkdir(parents=True)
    (out / "photo.faces" / "face_0.json").write_text("{" * 100 + "x")
    Image.new("RGB", (64, 64)).save(out / "photo.faces" / "face_0.png")
    run("align corrupt resumable face_0.json", align(out=out))
    out = base / "links7"
    (out / "photo.faces").mkdir(parents=True)
    (out / "photo.faces" / "face_0.json").write_text(json.dumps({"key": {"x": 1}}))
    (out / "photo.faces" / "face_0.png").write_bytes(b"garbage")
    run("align stale face_0.json + corrupt png", align(out=out))
    out = base / "links8"
    (out / "photo.faces").mkdir(parents=True)
    (out / "photo.faces" / "face_0.json").write_text(" " * (50 << 20))
    Image.new("RGB", (64, 64)).save(out / "photo.faces" / "face_0.png")
    run("align 50 MiB face_0.json", align(out=out))
    out = base / "links9"
    (out / "photo.faces").mkdir(parents=True)
    os.mkfifo(out / "photo.faces" / "face_0.json")
    Image.new("RGB", (64, 64)).save(out / "photo.faces" / "face_0.png")
    run("align face_0.json FIFO", align(out=out), expect="any", timeout=30)
    out = base / "links10"
    out.mkdir()
    (out / "photo.faces").write_text("a file")
    run("align <stem>.faces is a file", align(out=out))

    # concurrent runs into one --out (a held claim)
    from rusir.data import claims
    out = base / "conc"
    out.mkdir()
    tok = claims.claim_token()
    held = [claims.claim_item(out, n, tok) for n in ("photo_restored.png", "photo_face0_latent.pt")]
    run("align into --out whose outputs another live run claims", align(out=out))

    # --- data build / verify -------------------------------------------------------------------
    photos = base / "photos"
    photos.mkdir()
    p2, lms2 = photo(photos, 2, "a.png")
    (photos / "lm.json").write_text(json.dumps({"a.png": [(np.array(l) * 1).tolist() for l in lms2]}))
    # photos are x8 downsampled: faces small; use --min-face 0 and --size 16
    def build(*extra, out=None, lm=photos / "lm.json"):
        out = out or Path(tempfile.mkdtemp(dir=base))
        return ["data", "build", "--photos", photos, "--out", out, "--landmarks", lm, *extra]
    run("build baseline", build("--min-face", "0"), expect="ok")
    for v in ["nan", "inf", "-1", "1e300", "1e-300", "abc", "100000"]:
        run(f"build --min-face {v!r}", build("--min-face", v), expect="refuse" if v not in ("1e-300",) else "ok")
    for v in ["nan", "-1", "257", "1e300", "3.5"]:
        run(f"build --dedup-bits {v!r}", build("--dedup-bits", v))
    for v in ["0", "-1", "nan", "1e300", "100000", "3.5"]:
        run(f"build --size {v!r}", build("--size", v))
    for v in ["0000-00-00", "2026-13-01", "2026-02-30", "99999-01-01", "-0001-01-01", "yesterday",
              "1e300", "", "2026-1-1", "0001-01-01", "9999-12-31"]:
        run(f"build --exclude-before {v!r}", build("--exclude-before", v, "--min-face", "0"),
            expect="ok" if v in ("0001-01-01", "9999-12-31", "2026-01-01T00:00") else "refuse")
    for v in ["bogus", "../x"]:
        run(f"build --generator {v!r}", build("--generator", v))
    run("build --detector bogus", build("--detector", "bogus"))
    run("build no --photos", ["data", "build", "--out", base / "x"])
    run("build --photos is a file", ["data", "build", "--photos", ph, "--out", base / "x"])
    run("build --photos missing", ["data", "build", "--photos", base / "nope", "--out", base / "x"])
    for k in ("nan", "xy objects", "eyes 1e-5 apart", "deep nesting", "number", "null"):
        f = photos.parent / f"blm_{k.replace(' ', '_')}.json"
        t = bad_lms[k]
        f.write_text(t if k in ("deep nesting", "number", "null") else '{"a.png": %s}' % t)
        run(f"build landmarks {k}", build("--min-face", "0", lm=f))
    f = base / "blm_trav.json"
    f.write_text(json.dumps({"../../etc/passwd": lms2, "a.png": lms2}))
    run("build landmarks with a traversal key", build("--min-face", "0", lm=f), expect="any")
    out = base / "bl_link"
    out.mkdir()
    os.symlink(outside, out / "0000.png")
    run("build output 0000.png is a link", build("--min-face", "0", out=out), check=untouched)
    run("build output 0000.png is a link --overwrite", build("--min-face", "0", "--overwrite", out=out), check=untouched)
    out = base / "bl_link2"
    out.mkdir()
    os.symlink(outside, out / "manifest.json")
    run("build manifest.json is a link --overwrite", build("--min-face", "0", "--overwrite", out=out), check=untouched)
    run("build --out is a file", build("--min-face", "0", out=ph))
    tok = claims.claim_token()
    out = base / "bl_conc"
    out.mkdir()
    claims.claim_item(out, "manifest.json", tok)
    claims.claim_item(out, "0000.png", tok)
    run("build into --out that another live build claims", build("--min-face", "0", out=out))
    # photos folder with hostile members
    hp = base / "hphotos"
    hp.mkdir()
    (hp / "a.png").write_bytes(p2.read_bytes())
    os.mkfifo(hp / "fifo.png")
    (hp / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    os.symlink(base / "nowhere.png", hp / "dangling.png")
    (hp / "lm.json").write_text(json.dumps({"a.png": lms2}))
    (hp / "sub").mkdir()
    os.symlink(hp, hp / "sub" / "loop")
    run("build photos with FIFO, corrupt, dangling, loop", ["data", "build", "--photos", hp, "--out",
        base / "hp_out", "--landmarks", hp / "lm.json", "--min-face", "0"], expect="ok", timeout=60)
    # EXIF absurd dates
    ep = base / "ephotos"
    ep.mkdir()
    dates = ["0000:00:00 00:00:00", "9999:99:99 99:99:99", "    :  :     :  :  ", "2026:01:01 00:00:00\x00junk",
             "x" * 10000, "1900:01:01 00:00:00"]
    emap = {}
    for i, d in enumerate(dates):
        ex = Image.Exif()
        ex.get_ifd(0x8769)[36867] = d
        Image.open(p2).convert("RGB").save(ep / f"e{i}.jpg", exif=ex, quality=95)
        emap[f"e{i}.jpg"] = lms2
    (ep / "lm.json").write_text(json.dumps(emap))
    run("build EXIF absurd dates --exclude-before", ["data", "build", "--photos", ep, "--out", base / "ep_out",
        "--landmarks", ep / "lm.json", "--min-face", "0", "--exclude-before", "2000-01-01", "--dedup-bits", "0"], expect="ok")

    # manifests for verify
    good = base / "goodset"
    main([str(a) for a in ["data", "build", "--photos", photos, "--out", good, "--landmarks", photos / "lm.json", "--min-face", "0"]])
    man = json.loads((good / "manifest.json").read_text())

    def mset(name, mutate, text=None, expect="nonzero"):
        # accepted by design: landmarks are read only by --photos (which checks them), "64" is
        # a whole number, `template` is metadata (a rebuild refuses an unknown one)
        if name in ("landmarks garbage", "resolution str", "template unknown"):
            expect = "any"
        d = base / f"set_{name.replace(' ', '_')}"
        d.mkdir()
        for f in good.glob("*.png"):
            (d / f.name).write_bytes(f.read_bytes())
        m = json.loads(json.dumps(man))
        if mutate:
            mutate(m)
        (d / "manifest.json").write_text(text if text is not None else json.dumps(m))
        run(f"verify manifest {name}", ["data", "verify", d], expect=expect, timeout=60)
        run(f"verify --photos manifest {name}", ["data", "verify", d, "--photos", photos], expect=expect, timeout=60)
        run(f"bench --images manifest {name}", ["bench", "--images", d, "--out", base / f"b_{name.replace(' ', '_')}",
                                                 "--steps", "0,0,0", "--metrics", "psnr", "--max-items", "1"],
            expect="refuse" if expect != "ok" else "any", timeout=120)
    mset("good", None, expect="ok")
    mset("traversal file", lambda m: m["faces"].__setitem__(0, {**m["faces"][0], "file": "../../etc/passwd"}))
    mset("absolute file", lambda m: m["faces"][0].__setitem__("file", "/etc/passwd"))
    mset("traversal source", lambda m: m["faces"][0].__setitem__("source", "../../../../etc/passwd"))
    mset("absolute source", lambda m: m["faces"][0].__setitem__("source", "/etc/passwd"))
    mset("duplicate entry", lambda m: m["faces"].append(dict(m["faces"][0])))
    mset("file int", lambda m: m["faces"][0].__setitem__("file", 5))
    mset("source int", lambda m: m["faces"][0].__setitem__("source", 5))
    mset("landmarks garbage", lambda m: m["faces"][0].__setitem__("landmarks", "x"))
    mset("landmarks nan", lambda m: m["faces"][0].__setitem__("landmarks", [[float("nan"), 0]] * 5))
    mset("resolution huge", lambda m: m.__setitem__("resolution", 10 ** 9))
    mset("resolution 0", lambda m: m.__setitem__("resolution", 0))
    mset("resolution str", lambda m: m.__setitem__("resolution", "64"))
    mset("resolution missing", lambda m: m.pop("resolution"))
    mset("template list", lambda m: m.__setitem__("template", ["x"]))
    mset("template unknown", lambda m: m.__setitem__("template", "../../evil"))
    mset("faces not list", lambda m: m.__setitem__("faces", {"a": 1}))
    mset("empty faces", lambda m: m.__setitem__("faces", []))
    mset("format wrong", lambda m: m.__setitem__("format", "other"))
    mset("file empty name", lambda m: m["faces"][0].__setitem__("file", ""))
    mset("file dot", lambda m: m["faces"][0].__setitem__("file", "."))
    mset("file NUL", lambda m: m["faces"][0].__setitem__("file", "a\x00.png"))
    mset("file subdir", lambda m: m["faces"][0].__setitem__("file", "sub/0000.png"))
    mset("sha256 not hex", lambda m: m["faces"][0].__setitem__("sha256", "zz"))
    mset("not json", None, text="{not json")
    mset("alias-bomb-ish nesting", None, text="[" * 200000 + "]" * 200000)
    mset("huge", None, text=json.dumps({**man, "pad": "x" * (3 << 20)}))
    mset("nan in json", None, text=json.dumps(man).replace('"min_face": 0.0', '"min_face": NaN'))
    mset("top list", None, text="[]")
    d = base / "set_link_face"
    d.mkdir()
    for f in good.glob("*.png"):
        (d / f.name).write_bytes(f.read_bytes())
    (d / "manifest.json").write_text(json.dumps(man))
    os.unlink(d / "0000.png")
    os.symlink("/etc/passwd", d / "0000.png")
    run("verify face file is a link to /etc/passwd", ["data", "verify", d], expect="nonzero")
    d = base / "set_fifo_face"
    d.mkdir()
    for f in good.glob("*.png"):
        (d / f.name).write_bytes(f.read_bytes())
    (d / "manifest.json").write_text(json.dumps(man))
    os.unlink(d / "0000.png")
    os.mkfifo(d / "0000.png")
    run("verify face file is a FIFO", ["data", "verify", d], expect="nonzero", timeout=20)
    d = base / "set_fifo_manifest"
    d.mkdir()
    os.mkfifo(d / "manifest.json")
    run("verify manifest is a FIFO", ["data", "verify", d], expect="refuse", timeout=20)
    run("verify no folder", ["data", "verify"])
    run("verify folder missing", ["data", "verify", base / "nope"])
    run("verify folder is a file", ["data", "verify", ph])

    # --- grayscale degradation / API ------------------------------------------------------------
    from rusir import degradations
    for kw in [dict(level="nan"), dict(level="Z"), dict(level="M", seed=-1), dict(level="M", seed=2**70),
               dict(level="M", seed=float("nan")), dict(level="M", weights=[float("nan")] * 3),
               dict(level="M", weights=[0, 0, 0]), dict(level="M", weights=[-1, 1, 1]),
               dict(level="M", weights=[1, 1]), dict(level="M", bogus=1)]:
        name = f"grayscale make {kw}"
        if len(sys.argv) > 1 and sys.argv[1] not in name:
            continue
        try:
            d = degradations.make("grayscale", **kw)
            y = d.degrade_ground_truth(torch.rand(1, 3, 8, 8))
            v = "ok(accepted)" if torch.isfinite(y).all() else "WRONG(non-finite output)"
        except ValueError as e:
            v = "ok"
            y = str(e)
        except Exception as e:
            v, y = "TRACEBACK", f"{type(e).__name__}: {e}"
        RESULTS.append((name, v, str(y)[:120] if isinstance(y, str) else ""))
        print(f"{v:24s} {name:55s} {str(y)[:120] if isinstance(y, str) else ''}")
    for shape in [(1, 1, 8, 8), (1, 4, 8, 8), (3, 8, 8), (1, 3, 0, 0)]:
        name = f"grayscale degrade shape {shape}"
        try:
            degradations.make("grayscale", level="M").degrade_ground_truth(torch.rand(*shape))
            v, y = "ok(accepted)", ""
        except ValueError as e:
            v, y = "ok", str(e)
        except Exception as e:
            v, y = "TRACEBACK", f"{type(e).__name__}: {e}"
        RESULTS.append((name, v, y[:120]))
        print(f"{v:24s} {name:55s} {y[:120]}")

    # --- summary -------------------------------------------------------------------------------
    bad = [r for r in RESULTS if not r[1].startswith("ok")]
    print(f"\n{len(RESULTS)} cases, {len(bad)} failing")
    for r in bad:
        print("FAIL", *r)
    return base


if __name__ == "__main__":
    main_probe()
