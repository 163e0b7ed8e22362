"""What input rusir accepts: the limits on every number, size, name and parsed document, and
the checkers that enforce them.

The command line (its option types), the YAML configurations (`bench --config`, sweep files,
loss presets, baseline tables) and the Python API (`restore`, `restore_photo`, `load_image`,
`degradations.make`, ...) all check their input here, so one value is refused the same way
wherever it comes from, in one line naming it, and before anything is allocated from it: a size
that would take terabytes, a YAML alias bomb that expands to billions of nodes or a grid of
10^12 sets ends in a ValueError, not in a hang or a crash after the compute.

Every limit is a named constant below and each error states the one it hit. They are far above
any real use (the largest official generator is 1024 px; the paper runs 150 steps per phase).
"""
from __future__ import annotations

import argparse
import json
import math
import operator
import re
import string
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import yaml

__all__ = ["MAX_IMAGE_SIDE", "MAX_OUTPUT_MEGAPIXELS", "MAX_FACTOR", "MAX_STEPS", "MAX_RATE",
           "MAX_BATCH", "MAX_COUNT", "MAX_CROPS", "MAX_PHOTONS", "MAX_BLUR_SIGMA", "MAX_STROKES",
           "MAX_LEVELS", "MAX_TAU", "MAX_RETRIES", "MAX_REPEATS", "MAX_SEED", "MAX_GRID_SETS", "MAX_NAME_LENGTH",
           "MAX_DOCUMENT_BYTES", "MAX_YAML_NODES", "MAX_YAML_DEPTH", "MIN_EYE_DISTANCE",
           "MAX_CHANNELS", "MAX_UNET_LEVELS",
           "whole", "number", "side", "step_counts", "choice", "grid_size", "name_template",
           "file_name", "relative_path",
           "load_yaml", "read_yaml", "read_json", "option"]

MAX_IMAGE_SIDE = 8192           # px: any image made or loaded (official generators: <= 1024)
MAX_OUTPUT_MEGAPIXELS = 256     # a restored photo, enlarged by its upsampling factor
MAX_FACTOR = 64                 # upsampling factor (the levels go up to 32)
MAX_STEPS = 100_000             # optimisation steps per phase (the paper: 150)
MAX_RATE = 1e3                  # learning rates and lr_scale (the paper: 0.005 .. 0.08 x 1)
MAX_BATCH = 4096                # images restored together
MAX_COUNT = 1_000_000           # images, items, faces, CPUs/GPUs per task: any other count
MAX_CROPS = 10_000              # patch-FID crops per image (the paper: 1000)
MAX_PHOTONS = 1e6               # denoising's photon count (the levels: 6 to 96)
MAX_BLUR_SIGMA = 64.0           # blur's sigma in px (the levels: 1 to 8)
MAX_STROKES = 1000              # inpainting's strokes (the levels: 1 to 17)
MAX_LEVELS = 16                 # a loss pyramid's levels (each halves the side; presets: 6)
MAX_TAU = 1e6                   # the discrepancy stop, in noise levels (1 to 2 in use; 1e6: at once)
MAX_RETRIES = 100               # re-runs of a unit whose worker died
MAX_REPEATS = 100               # restorations of each benchmark item (`rusir bench --repeats`)
MAX_SEED = 2**32 - 1            # seeds (per-image seeds add the image's index)
MAX_GRID_SETS = 10_000          # parameter sets of one sweep
MAX_NAME_LENGTH = 255           # a name that becomes a file or folder name
MAX_DOCUMENT_BYTES = 1 << 20    # a YAML or JSON document rusir reads (its own: a few kB)
MAX_YAML_NODES = 100_000        # values in a document, each alias expanded where it is used
MAX_YAML_DEPTH = 100            # nesting of lists and mappings
ENGINES = ("local", "ray")      # where a run executes; named here so torch-free callers can check it
MIN_EYE_DISTANCE = 2.0          # px between a face's eyes: below it no face can be aligned
MAX_CHANNELS = 4096             # a network's feature width (StyleGAN2: at most 512)
MAX_UNET_LEVELS = 8             # a diffusion UNet's resolutions (and layers per block)


def _limit(name: Optional[str]) -> str:
    if name is None:
        return ""
    value = globals()[name]
    return f" (limit rusir.validation.{name} = {value:g})" if isinstance(value, float) else \
        f" (limit rusir.validation.{name} = {value})"


def whole(value: Any, what: str, minimum: int = 0, maximum: int = MAX_COUNT,
          limit: Optional[str] = "MAX_COUNT") -> int:
    """`value` as an int in [minimum, maximum]: a whole number (an int, a float without a fraction
    or a string of one); bools, fractions, NaN and text are refused, naming `what`."""
    number_ = _as_whole(value)
    if number_ is None or number_ < minimum:
        raise ValueError(f"{what} must be a whole number >= {minimum}, got {value!r}")
    if number_ > maximum:
        raise ValueError(f"{what} must be at most {maximum}{_limit(limit)}, got {value!r}")
    return number_


def _as_whole(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):          # "12", or a float's spelling of a whole number ("1e+30")
        text = value.strip()
        if re.fullmatch(r"[+-]?\d{1,30}", text):
            return int(text)
        try:
            value = float(text)
        except ValueError:
            return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return operator.index(value)
    except TypeError:
        return None


def number(value: Any, what: str, minimum: float = 0.0, maximum: float = MAX_RATE,
           limit: Optional[str] = "MAX_RATE", strict: bool = True) -> float:
    """`value` as a finite float in (minimum, maximum] (`strict`) or [minimum, maximum]."""
    try:
        if isinstance(value, bool):
            raise TypeError
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        x = math.nan
    if not math.isfinite(x) or x < minimum or (strict and x == minimum):
        raise ValueError(f"{what} must be a finite number {'>' if strict else '>='} {minimum:g}, "
                         f"got {value!r}")
    if x > maximum:
        raise ValueError(f"{what} must be at most {maximum:g}{_limit(limit)}, got {value!r}")
    return x


def side(value: Any, what: str = "size") -> int:
    """An image side in pixels: a whole number in [1, MAX_IMAGE_SIDE]."""
    return whole(value, what, 1, MAX_IMAGE_SIDE, "MAX_IMAGE_SIDE")


def step_counts(value: Any, n: Optional[int] = None, what: str = "steps") -> tuple[int, ...]:
    """Steps per phase: whole numbers in [0, MAX_STEPS] (0 skips a phase), `n` of them when
    given; a sequence or a comma list ("150,150,150")."""
    values = value.split(",") if isinstance(value, str) else value
    if isinstance(values, bytes) or not isinstance(values, Iterable):
        raise ValueError(f"{what} must be a sequence of step counts, got {value!r}")
    values = list(values)
    if n is not None and len(values) != n:
        raise ValueError(f"{what}: need one step count per phase ({n}), got {len(values)}: {value!r}")
    counts = [_as_whole(v) for v in values]
    if any(c is None or c < 0 for c in counts):
        raise ValueError(f"{what} must be whole numbers >= 0 (one per phase; 0 skips a phase), "
                         f"got {value!r}")
    if max(counts, default=0) > MAX_STEPS:
        raise ValueError(f"{what}: at most {MAX_STEPS} per phase{_limit('MAX_STEPS')}, got {value!r}")
    return tuple(counts)


def choice(value: Any, what: str, allowed: Iterable[str]) -> str:
    """`value` if it is one of the `allowed` names, else a ValueError listing them."""
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; valid: {allowed}")
    return value


def grid_size(lengths: Sequence[int], what: str = "grid") -> int:
    """The number of combinations of axes of these lengths, refused above MAX_GRID_SETS before
    any is made (a product of lengths, not a count of the product)."""
    total = 1
    for n in lengths:
        total *= int(n)
        if total > MAX_GRID_SETS:
            raise ValueError(f"{what} has {' x '.join(map(str, lengths))} = "
                             f"{math.prod(int(v) for v in lengths):.3g} combinations, more than "
                             f"{MAX_GRID_SETS}{_limit('MAX_GRID_SETS')}")
    return total


def name_template(template: Any, what: str = "name template") -> str:
    """A str.format template for file names whose fields cannot be wider than a file name: a
    format spec's width or precision above MAX_NAME_LENGTH ("{task:2000000000}") is refused
    before anything is formatted (it would allocate that many characters)."""
    if not isinstance(template, str):
        raise ValueError(f"{what} must be a string, got {type(template).__name__}")
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad {what} {template!r} ({exc})") from None
    for _, _, spec, _ in fields:
        if any(int(d) > MAX_NAME_LENGTH for d in re.findall(r"\d+", spec or "")) or "{" in (spec or ""):
            raise ValueError(f"{what} {template!r}: field format {spec!r} is wider than a file "
                             f"name{_limit('MAX_NAME_LENGTH')} (or nested)")
    return template


def file_name(value: Any, what: str = "file name") -> str:
    """A plain file name in one folder, as a document (a manifest) names its files: a non-empty
    string of at most MAX_NAME_LENGTH characters with no folder separator, NUL, "." or "..", so
    that `folder / name` can never point outside `folder`."""
    if not isinstance(value, str) or not value or value in (".", "..") or len(value) > MAX_NAME_LENGTH \
            or any(c in value for c in "/\\\0"):
        raise ValueError(f"{what} must be a plain file name (no folder, '..' or NUL, at most "
                         f"{MAX_NAME_LENGTH} characters){_limit('MAX_NAME_LENGTH')}, got {value!r}")
    return value


def relative_path(value: Any, what: str = "path") -> str:
    """A relative path that stays inside the folder it is relative to ("sub/a.jpg"): each part a
    `file_name`, so an absolute path or a "../" escape is refused."""
    if not isinstance(value, str) or value.startswith(("/", "\\")) or not value:
        raise ValueError(f"{what} must be a relative path inside its folder, got {value!r}")
    for part in value.split("/"):
        file_name(part, f"{what} {value!r}: each part")
    return value


# --- YAML ----------------------------------------------------------------------------------------

def _expanded_size(node: yaml.Node, what: str) -> int:
    """Values in the document with every alias expanded where it is used, counted on the node
    graph (each shared node once, times its uses), refused above MAX_YAML_NODES or
    MAX_YAML_DEPTH, for a recursive document (an alias inside its own anchor) and for a key
    given twice in one mapping."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(n: yaml.Node, depth: int) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        if id(n) in open_:
            raise ValueError(f"{what}: a recursive YAML alias (an anchor used inside itself)")
        if depth > MAX_YAML_DEPTH:
            raise ValueError(f"{what}: YAML nested deeper than {MAX_YAML_DEPTH}"
                             f"{_limit('MAX_YAML_DEPTH')}")
        open_.add(id(n))
        if isinstance(n, yaml.MappingNode):
            _unique_keys(n, what)
        children = ([c for pair in n.value for c in pair] if isinstance(n, yaml.MappingNode)
                    else n.value if isinstance(n, yaml.SequenceNode) else [])
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_YAML_NODES:
                raise ValueError(f"{what}: the YAML expands to more than {MAX_YAML_NODES} values"
                                 f"{_limit('MAX_YAML_NODES')} (aliases expanded)")
        open_.discard(id(n))
        sizes[id(n)] = total
        return total

    return size(node, 0)


def _unique_keys(node: yaml.MappingNode, what: str) -> None:
    """A key given twice in one mapping (YAML would keep the last one silently: a second
    `pulse:` block replacing the first) is refused, naming its line."""
    seen: set = set()
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        if key.value in seen:
            raise ValueError(f"{what}: line {key.start_mark.line + 1}: key {key.value!r} given "
                             "twice in one mapping (YAML would keep only the last)")
        seen.add(key.value)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line from a YAML error: where, and what (a `!!python` tag named as such)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    tag = re.search(r"tag:yaml\.org,2002:(python/[^'\s]*)", problem)
    if tag or "python/" in problem:
        problem = (f"!!{tag.group(1)}: " if tag else "") + "a !!python tag (only plain YAML data is read)"
    return where + " ".join(str(problem).split())


def load_yaml(text: Union[str, bytes], what: str = "YAML") -> Any:
    """Plain YAML data (yaml.safe_load's) from `text`, bounded before any object is built: at
    most MAX_DOCUMENT_BYTES, MAX_YAML_NODES values once aliases are expanded ("billion laughs"),
    MAX_YAML_DEPTH levels. Any problem is a one-line ValueError starting with `what`."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{what}: {len(text)} bytes, more than {MAX_DOCUMENT_BYTES}"
                         f"{_limit('MAX_DOCUMENT_BYTES')}")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, what)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ValueError(f"{what}: not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ValueError(f"{what}: YAML nested too deeply{_limit('MAX_YAML_DEPTH')}") from None
    except (ValueError, OverflowError) as exc:     # e.g. an int of 5000 digits
        text_ = " ".join(str(exc).split())
        raise ValueError(text_ if text_.startswith(what) else f"{what}: {text_}") from None
    finally:
        loader.dispose()


def _read_text(path: Union[str, Path], what: str) -> str:
    """The text of a regular file of at most MAX_DOCUMENT_BYTES (its size checked first)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file" if what != str(path) else f"no such file: {path}")
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{what}: {path.stat().st_size} bytes, more than {MAX_DOCUMENT_BYTES}"
                         f"{_limit('MAX_DOCUMENT_BYTES')}")
    try:
        return path.read_text()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what}: not a text file ({exc.reason})") from None


def read_yaml(path: Union[str, Path], what: Optional[str] = None) -> Any:
    """`load_yaml` of a regular file (its size checked before it is read)."""
    what = what or str(path)
    return load_yaml(_read_text(path, what), what)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a document may hold")


def read_json(path: Union[str, Path], what: Optional[str] = None, finite: bool = False) -> Any:
    """A JSON file's data, bounded as YAML is (size first; nesting by Python's recursion limit).
    `finite`: refuse NaN and Infinity (Python writes them; a user's input never needs them)."""
    what = what or str(path)
    text = _read_text(path, what)
    try:
        return json.loads(text, parse_constant=_no_constant if finite else None)
    except RecursionError:
        raise ValueError(f"{what}: JSON nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"{what}: not valid JSON ({exc})") from None


# --- the command line -----------------------------------------------------------------------------

def option(check: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[str], Any]:
    """An argparse `type=` from a checker above: `option(whole, "a count", 1)` parses the text,
    and the checker's ValueError becomes argparse's one-line "argument --x: ..." error."""
    def parse(text: str) -> Any:
        try:
            return check(text, *args, **kwargs)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = getattr(check, "__name__", "value")
    return parse
