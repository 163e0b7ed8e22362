"""Hostile-input probe of plug-in entry points (rusir.plugins): packages that raise or exit on
import, clash with built-in names or each other, or register objects of the wrong kind; faked
entry points, in-process. Prints refused / ran / TRACEBACK per case.

    PYTHONPATH=. python scripts/probe_plugins.py
"""
import sys, traceback
from rusir import plugins
import rusir.baselines as baselines
from rusir.degradations import registry, make, Upsampling

class EP:
    def __init__(s, name, obj=None, exc=None): s.name, s.obj, s.exc, s.value, s.dist = name, obj, exc, f"pkg:{name}", None
    def load(s):
        if s.exc: raise s.exc
        return s.obj

def case(label, group, eps, action):
    plugins.entry_points = lambda group=None, _e=eps, _g=group: _e if group == _g else []
    plugins.load.cache_clear()
    registry._REGISTRY = dict(ORIG)
    baselines.METHODS = dict(ORIGM)
    try:
        r = action()
        print(f"{'ran':10s} {label}: {r!r}"[:200])
    except ValueError as e:
        print(f"{'refused':10s} {label}: {e}"[:200])
    except SystemExit as e:
        print(f"{'SYSEXIT':10s} {label}: {e!r}")
    except BaseException as e:
        print(f"{'TRACEBACK':10s} {label}: {type(e).__name__}: {e}"[:200])

ORIG, ORIGM = dict(registry._REGISTRY), dict(baselines.METHODS)
ok = lambda level=None, seed=0, **kw: Upsampling(level=level or "M", seed=seed)
D = "rusir.degradations"
case("import raises ImportError", D, [EP("x", exc=ImportError("nope"))], lambda: make("x"))
case("import raises SyntaxError", D, [EP("x", exc=SyntaxError("bad"))], lambda: make("x"))
case("import raises SystemExit", D, [EP("x", exc=SystemExit(3))], lambda: make("x"))
case("import raises RecursionError", D, [EP("x", exc=RecursionError())], lambda: make("x"))
case("clash denoising (make denoising)", D, [EP("denoising", ok)], lambda: type(make("denoising")).__name__)
case("clash Denoising case (available)", D, [EP("Denoising", ok)], lambda: "Denoising" in registry.available())
case("clash initials UN", D, [EP("un", ok)], lambda: type(make("UN")).__name__)
case("clash initials g", D, [EP("g", ok)], lambda: type(make("g")).__name__)
case("not callable", D, [EP("x", 5)], lambda: make("x"))
case("returns non-degradation", D, [EP("x", lambda level=None, seed=0: 5)], lambda: make("x"))
case("returns None", D, [EP("x", lambda level=None, seed=0: None)], lambda: make("x"))
case("factory raises TypeError inside", D, [EP("x", lambda level=None, seed=0: [][1])], lambda: make("x"))
case("two plugins same name", D, [EP("x", ok), EP("x", lambda **k: 5)], lambda: type(make("x")).__name__)
case("empty name", D, [EP("", ok)], lambda: make(""))
M = "rusir.methods"
case("method clash rusir", M, [EP("rusir", lambda *a, **k: 5)], lambda: baselines.get_method("rusir") is ORIGM["rusir"])
case("method not callable", M, [EP("m", 5)], lambda: baselines.get_method("m"))
F = "rusir.families"
from rusir.model import family
case("family not Family", F, [EP("f", 5)], lambda: family.load_plugin_families())
case("family raises", F, [EP("f", exc=ImportError("x"))], lambda: family.load_plugin_families())
