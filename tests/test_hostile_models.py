"""Model files that would exhaust the machine (issue 17, section 2) are refused with one clear error.

Every crafted file is generated here in a tmp dir and loaded in a forked child under a memory
limit (2 GiB beyond what it starts with) and a CPU limit (`hostile.guarded`): a loader that
hangs, allocates terabytes or crashes fails its test instead of taking the machine down. The
expected outcome is always a ValueError subclass (NetworkPickleError / CheckpointError) with a
short, one-line message, which the command line prints as one line with exit status 2.

Classes: (1) error messages that format an untrusted object whole (a memo-shared nested tuple
of a few hundred bytes has a repr of terabytes); (2) configurations, structures and tensors
that make the loader allocate without bound, recurse without bound or hash for ever;
(3) weights that are not floating point or not finite.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import pickle
import re
import struct
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import hostile as H
from conftest import fixture_path, small_generator
from rusir.model.checkpoint import load_generator_file
from rusir.model.generators import load_generator
from rusir.model.pkl import load_network_pickle, read_network_pickle
from rusir.cli import main as cli_main
import rusir.restore_files  # noqa: F401  (imported once here, not in every forked child)

MAX_MESSAGE = 600  # characters an error may take (paths included)

# the guard forks and reads /proc/self/status
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the load guard needs Linux")


def refused(result: dict, error: str, pattern: str) -> None:
    """The guarded load raised `error` (a ValueError subclass) with a short one-line message."""
    assert result["raised"] == error, result
    assert "ValueError" in result["mro"], result
    message = result["message"]
    assert "\n" not in message and len(message) < MAX_MESSAGE, message[:2000]
    assert re.search(pattern, message), message


def load_pkl(path: Path) -> dict:
    return H.guarded(lambda: load_network_pickle(path) and None)


def g_ema() -> "H.PersistentRecord":
    """A fresh copy of tiny32's G_ema record tree (the official converted-file layout)."""
    return read_network_pickle(fixture_path("tiny32.pkl"))["G_ema"]


def sub(record, *names: str):
    for name in names:
        record = record.state["_modules"][name]
    return record


def meta(**fields) -> H.Persistent:
    base = dict(type="class", version=6, module_src="", class_name="Generator", state={})
    return H.Persistent({**base, **fields})


# ---------------------------------------------------------------------------------------------
# (1) error messages never format untrusted objects whole

def test_summaries_are_bounded_and_never_recurse():
    from rusir.model.safety import clip, describe
    bomb = ()
    for _ in range(200):  # 2**200 leaves: any walk of it as a tree never ends
        bomb = (bomb, bomb)
    assert describe(bomb) == "a tuple of 2 items"
    assert describe([bomb] * 3) == "a list of 3 items"
    assert describe(10 ** 5000) == "an int of 16610 bits"
    assert describe("x" * 10 ** 6).endswith("... (1000000 characters)") and len(describe("x" * 10 ** 6)) < 100
    assert describe(torch.zeros(2, 3)) == "a torch.float32 tensor of shape [2, 3]"
    assert describe("Discriminator") == "'Discriminator'" and describe(None) == "None"
    assert clip("a\nb") == "'a\\nb'"  # one line


@pytest.mark.parametrize("where", ["version", "class_name", "architecture", "built_class_name"])
def test_nested_tuple_bomb_is_never_formatted(tmp_path, where):
    """A memo-shared nested tuple (2**40 leaves in a few hundred bytes) where the loader used to
    format it (version, class name) or put it in a set (architecture): it hung for good."""
    bomb = H.laughs(40)
    if where in ("version", "class_name"):
        obj = {"G_ema": meta(**{where: bomb})}
    elif where == "architecture":
        obj = g_ema()
        sub(obj, "synthesis", "b8").state["architecture"] = bomb
        obj = {"G_ema": obj}
    else:  # a BUILD that sets the attribute after the record was created and checked
        obj = {"G_ema": H.Build(g_ema(), {"class_name": bomb})}
    path = H.write(tmp_path / "bomb.pkl", obj)
    if where == "version":
        assert path.stat().st_size < 1000
    refused(load_pkl(path), "UnsafePickleError" if where == "built_class_name" else "NetworkPickleError",
            r"a tuple of 2 items|BUILD")


def test_long_names_are_clipped_in_messages(tmp_path):
    """A refused global's name is quoted, but only its start (a name can be megabytes long)."""
    name = "evil\n" * 200_000
    path = tmp_path / "name.pkl"
    path.write_bytes(b"\x80\x04" + pickle.dumps("os", protocol=2)[2:-1] + pickle.dumps(name, protocol=2)[2:-1]
                     + pickle.STACK_GLOBAL + pickle.STOP)
    refused(load_pkl(path), "UnsafePickleError", r"refusing to load global 'os\.evil\\nevil")


# ---------------------------------------------------------------------------------------------
# (2) configurations, structures and tensors that would allocate, recurse or hash without bound

def _set_state(*names: str, key: str, value):
    def edit(record):
        sub(record, *names).state[key] = value
    return edit


def _drop_state(*names: str, key: str):
    def edit(record):
        del sub(record, *names).state[key]
    return edit


def _set_weight(*names: str, value):
    def edit(record):
        sub(record, *names).state["_parameters"]["weight"] = value
    return edit


PICKLE_CONFIGS = {
    # name: (edit of tiny32's G_ema, expected message)
    "z_dim 1e10 (a 1.3 TB mapping layer)": (_set_state(key="z_dim", value=10 ** 10), r"z_dim must be an integer in 1\.\.4096, got 10000000000"),
    "z_dim -5": (_set_state(key="z_dim", value=-5), r"z_dim must be .* got -5"),
    "z_dim as a string": (_set_state(key="z_dim", value="32"), r"z_dim must be .* got '32'"),
    "w_dim as a float": (_set_state(key="w_dim", value=32.0), r"w_dim must be .* got 32\.0"),
    "img_resolution 2**40": (_set_state(key="img_resolution", value=2 ** 40), r"img_resolution must be"),
    "img_resolution not a power of two": (_set_state(key="img_resolution", value=48), r"power of two"),
    "no block_resolutions (KeyError)": (_drop_state("synthesis", key="block_resolutions"), r"no attribute 'block_resolutions'"),
    "block_resolutions inconsistent": (_set_state("synthesis", key="block_resolutions", value=[4, 8, 16, 32, 64]), r"block_resolutions"),
    "mapping num_layers 10**6": (_set_state("mapping", key="num_layers", value=10 ** 6), r"num_layers must be"),
    "w_avg_beta NaN": (_set_state("mapping", key="w_avg_beta", value=float("nan")), r"w_avg_beta must be"),
    "conv_clamp a list": (_set_state("synthesis", "b4", "conv1", key="conv_clamp", value=[256]), r"conv_clamp must be"),
    "use_fp16 a tensor": (_set_state("synthesis", "b8", key="use_fp16", value=torch.ones(3)), r"use_fp16 is a torch\.float32 tensor"),
    "_modules not a dict": (_set_state("mapping", key="_modules", value=[1, 2]), r"_modules is a list of 2 items"),
    "a parameter that is a string": (_set_weight("mapping", "fc1", value="w"), r"'mapping\.fc1\.weight' is 'w', not a tensor"),
}


@pytest.mark.parametrize("case", list(PICKLE_CONFIGS))
def test_pickle_configuration_is_validated_before_anything_is_built(tmp_path, case):
    edit, pattern = PICKLE_CONFIGS[case]
    record = g_ema()
    edit(record)
    refused(load_pkl(H.write(tmp_path / "cfg.pkl", {"G_ema": record})), "NetworkPickleError", pattern)


VIEWS = {
    # fc0 weight of shape [2**31, 32] on 1 float: the loader built a 275 GB mapping from its shape
    "giant stride-0 fc0": (("mapping", "fc0"), lambda w: torch.zeros(1).expand(2 ** 31, w.shape[1]), r"stride-0"),
    # the right shape, but all 1024 weights read one float
    "stride-0, right shape": (("mapping", "fc1"), lambda w: torch.ones(1).expand(*w.shape), r"stride-0"),
    # the right shape on a storage of 63 floats: rows overlap
    "overlapping rows": (("mapping", "fc1"), lambda w: torch.arange(63.0).as_strided(w.shape, (1, 1)), r"stride-1 \(overlapping\)"),
    # 5000 channels claimed by a view
    "5000 channels": (("synthesis", "b4", "conv1"), lambda w: torch.zeros(1).expand(5000, *w.shape[1:]), r"stride-0"),
}


@pytest.mark.parametrize("case", list(VIEWS))
def test_tensor_views_larger_than_their_storage_are_refused(tmp_path, case):
    names, make, pattern = VIEWS[case]
    record = g_ema()
    params = sub(record, *names).state["_parameters"]
    params["weight"] = make(params["weight"])
    refused(load_pkl(H.write(tmp_path / "view.pkl", {"G_ema": record})), "NetworkPickleError", pattern)


def test_tensor_state_cannot_be_rewritten_by_build(tmp_path):
    """BUILD on a tensor calls Tensor.__setstate__ -> set_(storage, offset, size, stride): a way
    to turn a checked tensor into a stride-0 view after the fact. Official files never do it."""
    record = g_ema()
    params = sub(record, "mapping", "fc1").state["_parameters"]
    storage = torch.ones(1)._typed_storage()
    params["weight"] = H.Build(params["weight"], (storage, 0, tuple(params["weight"].shape), (0, 0)))
    refused(load_pkl(H.write(tmp_path / "build.pkl", {"G_ema": record})), "UnsafePickleError", r"BUILD of a torch")


def test_deep_module_chain_is_refused_not_a_recursion_error(tmp_path):
    record = g_ema()
    sub(record, "mapping").state["_modules"]["deep"] = H.module_chain(20_000)
    refused(load_pkl(H.write(tmp_path / "chain.pkl", {"G_ema": record})), "NetworkPickleError",
            r"module tree deeper than 8 levels")


def test_shared_modules_are_refused_not_walked_a_billion_times(tmp_path):
    record = g_ema()
    sub(record, "mapping").state["_modules"]["dag"] = H.module_dag(depth=3, width=1000)
    refused(load_pkl(H.write(tmp_path / "dag.pkl", {"G_ema": record})), "NetworkPickleError",
            r"appears twice")


@pytest.mark.parametrize("where", ["dict key", "set element"])
def test_unhashable_in_practice_keys_are_refused(tmp_path, where):
    """Hashing a 60-level memo-shared tuple takes 2**60 steps: keys must be plain atoms."""
    bomb = H.laughs(60)
    extra = {bomb: 1} if where == "dict key" else {"x": H.Call("builtins", "set", [bomb])}
    path = H.write(tmp_path / "hash.pkl", {"G_ema": g_ema(), **extra})
    refused(load_pkl(path), "UnsafePickleError", rf"{where} is a tuple of 2 items")


def test_memo_index_does_not_size_anything(tmp_path):
    """The C unpickler sizes its memo array by the largest index: LONG_BINPUT 2**30 = 8 GiB."""
    path = H.write(tmp_path / "memo.pkl", {"G_ema": H.Raw(pickle.NONE + H.put(2 ** 30))})
    refused(load_pkl(path), "NetworkPickleError", r"G_ema is None, not a persistent network object")


def test_object_count_and_nesting_are_bounded(tmp_path):
    (tmp_path / "many.pkl").write_bytes(b"\x80\x02" + pickle.EMPTY_LIST * 40_000_000 + pickle.STOP)
    refused(load_pkl(tmp_path / "many.pkl"), "UnsafePickleError", r"more than 2,000,000 pickle operations")
    (tmp_path / "deep.pkl").write_bytes(b"\x80\x02" + pickle.MARK * 100_000 + pickle.STOP)
    refused(load_pkl(tmp_path / "deep.pkl"), "UnsafePickleError", r"nested deeper than 200 marks")


def test_length_fields_never_allocate_what_the_file_does_not_hold(tmp_path):
    for name, ops in {"frame": pickle.FRAME + struct.pack("<Q", 2 ** 40),
                      "bytes": pickle.BINBYTES8 + struct.pack("<Q", 2 ** 40),
                      "bytearray": pickle.BYTEARRAY8 + struct.pack("<Q", 2 ** 33)}.items():
        (tmp_path / f"{name}.pkl").write_bytes(b"\x80\x05" + ops + b"\x00" * 16)
        result = load_pkl(tmp_path / f"{name}.pkl")
        assert result["raised"] in ("NetworkPickleError", "UnsafePickleError"), (name, result)
        assert "ValueError" in result["mro"], (name, result)


def test_storages_come_verbatim_from_the_file(tmp_path):
    """A storage is read from the bytes the file holds: not from a deflated zip archive (66 KB
    here expand to 64 MiB; the ratio is ~1000 whatever the size) and not larger than its data."""
    blob = H.zip_storage_blob(64 << 20)
    assert len(blob) * 500 < 64 << 20
    path = H.write(tmp_path / "zip.pkl", {"G_ema": H.Call("torch.storage", "_load_from_bytes", blob)})
    refused(load_pkl(path), "NetworkPickleError", r"not in the legacy torch format")
    path = H.write(tmp_path / "claim.pkl", {"G_ema": H.Call("torch.storage", "_load_from_bytes",
                                                             H.storage_blob(2 ** 40, b"\0" * 4))})
    refused(load_pkl(path), "NetworkPickleError", r"declares 1099511627776 elements but holds 4 bytes")


def test_pickle_file_layout_is_unchanged_for_good_files(tmp_path):
    """The hand-written re-pickling used above gives a file that loads to the fixture's weights:
    the refusals come from the edits, not from the writer."""
    path = H.write(tmp_path / "same.pkl", {"G_ema": g_ema()})
    G, ref = load_network_pickle(path), load_network_pickle(fixture_path("tiny32.pkl"))
    for (k, a), (k2, b) in zip(G.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


SAFETENSORS_CONFIGS = {
    "z_dim 10**10": (dict(z_dim=10 ** 10), r"z_dim must be an integer in 1\.\.4096, got 10000000000"),
    "z_dim 1e10": (dict(z_dim=1e10), r"z_dim must be .* got 10000000000\.0"),
    "w_dim -3": (dict(w_dim=-3), r"w_dim must be .* got -3"),
    "img_resolution 3": (dict(img_resolution=3), r"img_resolution must be"),
    "channel_max 10**9": (dict(synthesis_kwargs=dict(channel_base=128, channel_max=10 ** 9)), r"channel_max must be"),
    "unknown synthesis key": (dict(synthesis_kwargs=dict(channel_base=128, channel_max=16, use_noise=False)), r"'use_noise'"),
    "mapping_kwargs a list": (dict(mapping_kwargs=[1]), r"mapping_kwargs must be a mapping, got a list of 1 items"),
    # a string width made the parameter count repeat the string and crash with a TypeError
    "mapping layer_features a string": (dict(mapping_kwargs=dict(layer_features="16")), r"mapping layer_features must be an integer in 1\.\.4096, got '16'"),
    "mapping embed_features 0": (dict(mapping_kwargs=dict(embed_features=0)), r"mapping embed_features must be an integer in 1\.\.4096, got 0"),
    # each value within bounds, the whole 4x larger than the budget (537M mapping weights)
    "over the budget": (dict(z_dim=4096, w_dim=4096, mapping_kwargs=dict(num_layers=32, layer_features=4096)),
                        r"generator of 537,\d+,\d+ weights, more than the 268,435,456"),
}


def _safetensors(path: Path, config: dict | None = None, meta: str = "{}", edit=None) -> Path:
    G = small_generator()
    state = {k: v.contiguous() for k, v in G.state_dict().items()}
    if edit:
        edit(state)
    cfg = {**G.init_kwargs, **(config or {})}
    save_file(state, str(path), metadata={"config": json.dumps(cfg), "meta": meta})
    return path


@pytest.mark.parametrize("case", list(SAFETENSORS_CONFIGS))
def test_safetensors_configuration_is_validated_before_anything_is_built(tmp_path, case):
    config, pattern = SAFETENSORS_CONFIGS[case]
    path = _safetensors(tmp_path / "g.safetensors", config)
    refused(H.guarded(lambda: load_generator(str(path)) and None), "CheckpointError", pattern)


@pytest.mark.parametrize("config,meta,pattern", [
    ('[1]', "{}", r"'config' is a list of 1 items, not a JSON object"),
    (None, "[1]", r"'meta' is a list of 1 items, not a JSON object"),
    (None, '{"default_loss": [1]}', r"default_loss' is a list of 1 items"),
    (None, "[" * 100_000 + "]" * 100_000, r"'meta' is not valid JSON \(RecursionError"),
    (None, json.dumps({"x": "y" * (2 << 20)}), r"'meta' is 2,097,161 characters long"),
])
def test_safetensors_metadata_is_validated(tmp_path, config, meta, pattern):
    path = _safetensors(tmp_path / "g.safetensors", meta=meta)
    if config is not None:
        G = small_generator()
        save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(path),
                  metadata={"config": config, "meta": meta})
    refused(H.guarded(lambda: load_generator(str(path)) and None), "CheckpointError", pattern)


# A config within the parameter budget (252M weights, ~1 GiB of float32) in a file that holds
# almost nothing: the loader built that generator before it compared the file's tensors with it.
HUGE_MAPPING = dict(z_dim=4096, w_dim=4096, mapping_kwargs=dict(num_layers=15, layer_features=4096))
SMALL_BUILD = 300 << 20   # memory a refusal may take: far less than the declared generator
MISMATCH = r"tensors do not match the generator of its config: they hold [\d,]+ weights, the config describes 25\d,\d{3},\d{3}"


def test_a_small_safetensors_file_declaring_a_huge_generator_builds_nothing(tmp_path):
    path = tmp_path / "g.safetensors"
    cfg = {**small_generator().init_kwargs, **HUGE_MAPPING}
    save_file({"mapping.w_avg": torch.zeros(1)}, str(path), metadata={"config": json.dumps(cfg)})
    assert path.stat().st_size < 1000
    refused(H.guarded(lambda: load_generator(str(path)) and None, mem=SMALL_BUILD), "CheckpointError", MISMATCH)


def test_a_pickle_of_empty_tensors_declaring_4096_wide_layers_builds_nothing(tmp_path):
    record = g_ema()
    record.state.update(z_dim=4096, w_dim=4096)
    sub(record, "mapping").state["num_layers"] = 15
    _set_weight("mapping", "fc0", value=torch.zeros(4096, 0))(record)   # 4096 features, no data
    path = H.write(tmp_path / "g.pkl", {"G_ema": record})
    assert path.stat().st_size < 1 << 20
    refused(H.guarded(lambda: load_network_pickle(path) and None, mem=SMALL_BUILD), "NetworkPickleError", MISMATCH)


def _rewrite_header(path: Path, edit) -> Path:
    """The safetensors file at `path` with its JSON header text replaced by edit(text)."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    text = edit(raw[8:8 + n].decode()).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    return path


def _first(entry: str):
    """Put `entry` ('"name": value') first in a header's JSON object."""
    return lambda text: "{" + entry + "," + text.strip()[1:]


@pytest.mark.parametrize("entry,name", [
    # a second entry for the const, as half precision over the same bytes; the library kept the last
    ('"synthesis.b4.const": {"dtype": "F16", "shape": [32, 4, 4], "data_offsets": [0, 1024]}',
     "'synthesis.b4.const'"),
    ('"__metadata__": {"config": "{}"}', "'__metadata__'"),
])
def test_safetensors_header_with_a_repeated_name_is_refused(tmp_path, entry, name):
    path = _rewrite_header(_safetensors(tmp_path / "g.safetensors"), _first(entry))
    refused(H.guarded(lambda: load_generator(str(path)) and None), "CheckpointError",
            rf"header names {name} twice \(the format forbids it\)")


def test_safetensors_header_size_is_bounded_before_it_is_read(tmp_path):
    path = tmp_path / "g.safetensors"
    path.write_bytes(struct.pack("<Q", 2 ** 62) + b"{}")
    refused(H.guarded(lambda: load_generator(str(path)) and None, mem=SMALL_BUILD), "CheckpointError",
            r"not a safetensors file of a generator: its header would be 4,611,686,018,427,387,904 bytes \(at most 8,388,608")


# ---------------------------------------------------------------------------------------------
# (3) weights that are not floating point or not finite

def _put(name: str, value):
    def edit(state):
        state[name] = value(state[name])
    return edit


WEIGHTS = {
    "bool": (_put("mapping.fc0.weight", lambda w: w > 0), r"'mapping\.fc0\.weight' has dtype BOOL"),
    "int64": (_put("synthesis.b4.const", lambda w: w.long()), r"'synthesis\.b4\.const' has dtype I64"),
    "NaN": (_put("synthesis.b8.conv1.weight", lambda w: w.index_fill(0, torch.tensor([1]), float("nan"))),
            r"'synthesis\.b8\.conv1\.weight' has 144 non-finite values"),
    "+Inf": (_put("mapping.w_avg", lambda w: w.index_fill(0, torch.tensor([3]), float("inf"))), r"'mapping\.w_avg' has 1 non-finite"),
    "-Inf": (_put("synthesis.b16.torgb.bias", lambda w: torch.full_like(w, -float("inf"))), r"'synthesis\.b16\.torgb\.bias' has 3 non-finite"),
    "float64 beyond float32": (_put("mapping.fc1.weight", lambda w: w.double() * 1e300), r"'mapping\.fc1\.weight' has 256 non-finite"),
}


@pytest.mark.parametrize("case", list(WEIGHTS))
def test_safetensors_weights_must_be_finite_floats(tmp_path, case):
    edit, pattern = WEIGHTS[case]
    path = _safetensors(tmp_path / "g.safetensors", edit=edit)
    refused(H.guarded(lambda: load_generator_file(path) and None), "CheckpointError", pattern)


def test_other_float_dtypes_still_load(tmp_path):
    G = small_generator()
    path = _safetensors(tmp_path / "half.safetensors", edit=lambda s: s.update({k: v.half() for k, v in s.items()}))
    loaded = load_generator_file(path)
    torch.testing.assert_close(loaded.synthesis.b4.const, G.synthesis.b4.const, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("case", ["NaN", "bool"])
def test_pickle_weights_must_be_finite_floats(tmp_path, case):
    record = g_ema()
    params = sub(record, "synthesis", "b16", "conv0").state["_parameters"]
    w = params["weight"].clone()
    if case == "NaN":
        w[0, 0, 0, 0] = float("nan")
    params["weight"] = w if case == "NaN" else w > 0
    refused(load_pkl(H.write(tmp_path / "w.pkl", {"G_ema": record})), "NetworkPickleError",
            r"'synthesis\.b16\.conv0\.weight' has (1 non-finite|dtype torch\.bool)")


# ---------------------------------------------------------------------------------------------
# one error type, one line on the command line

def _cli(args: list) -> dict:
    """Run the CLI; the input image (args[1]) is written first when missing: the command checks
    its inputs before it loads the generator, and these tests are about the generator."""
    if len(args) > 1 and args[1].endswith(".png") and not Path(args[1]).exists():
        from PIL import Image
        Image.new("RGB", (8, 8), (128, 100, 90)).save(args[1])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(args)
    return {"code": code, "stderr": err.getvalue()}


class _Boom:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_cli_reports_a_refused_pickle_in_one_line(tmp_path):
    """UnsafePickleError used to escape `main` (it was no ValueError): a traceback, exit 1."""
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Boom(marker)}, protocol=4))
    out = _cli(["restore", str(tmp_path / "x.png"), "--task", "upsampling", "--generator", str(path)])
    assert out["code"] == 2 and not marker.exists()
    lines = out["stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("rusir restore: error: "), out
    assert "os.system" in lines[0] or "posix.system" in lines[0], out


@pytest.mark.parametrize("kind", ["version bomb", "giant view", "z_dim", "NaN", "meta"])
def test_cli_exits_2_with_one_line_for_hostile_files(tmp_path, kind):
    if kind == "version bomb":
        path = H.write(tmp_path / "g.pkl", {"G_ema": meta(version=H.laughs(40))})
    elif kind == "giant view":
        record = g_ema()
        _set_weight("mapping", "fc0", value=torch.zeros(1).expand(2 ** 31, 32))(record)
        path = H.write(tmp_path / "g.pkl", {"G_ema": record})
    elif kind == "z_dim":
        path = _safetensors(tmp_path / "g.safetensors", dict(z_dim=10 ** 10))
    elif kind == "NaN":
        path = _safetensors(tmp_path / "g.safetensors", edit=WEIGHTS["NaN"][0])
    else:
        path = _safetensors(tmp_path / "g.safetensors", meta="[1]")
    out = H.guarded(lambda: _cli(["restore", str(tmp_path / "x.png"), "--task", "upsampling",
                                  "--generator", str(path)]))
    assert out["raised"] is None, out
    lines = out["value"]["stderr"].splitlines()
    assert out["value"]["code"] == 2 and len(lines) == 1, out
    assert lines[0].startswith("rusir restore: error: ") and len(lines[0]) < MAX_MESSAGE, lines
    assert path.name in lines[0], lines  # refused for the generator file (not the missing image)


# ---------------------------------------------------------------------------------------------
# the helpers the checks rely on

def test_configs_at_the_edges_of_the_bounds_are_accepted():
    """The checks refuse what is out of bounds, not what is merely unusual."""
    from rusir.model.safety import check_config
    cfg = small_generator().init_kwargs
    for edit in (dict(img_channels=1), dict(mapping_kwargs={**cfg["mapping_kwargs"], "activation": "linear"})):
        assert check_config({**cfg, **edit}) == {**cfg, **edit}


def test_parameter_count_equals_the_built_generator():
    from rusir.model.safety import parameter_count
    from rusir.model.stylegan2 import Generator
    configs = [dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                    mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16)),
               dict(z_dim=8, c_dim=5, w_dim=12, img_resolution=32, img_channels=1,
                    mapping_kwargs=dict(num_layers=3, layer_features=7, embed_features=4, w_avg_beta=None),
                    synthesis_kwargs=dict(channel_base=256, channel_max=24)),
               dict(z_dim=4, c_dim=2, w_dim=4, img_resolution=8, img_channels=4)]
    for cfg in configs:
        G = Generator(**cfg)
        assert parameter_count(cfg) == sum(v.numel() for v in G.state_dict().values())
    # FFHQ-1024: the official state-dict listing (parameters and buffers)
    listing = fixture_path("ffhq1024_state_dict.txt").read_text().splitlines()
    total = sum(math.prod(json.loads(line.split("\t")[1].replace("(", "[").replace(",)", ")").replace(")", "]")))
                for line in listing if line.strip())
    assert parameter_count(dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3)) == total


def test_view_check_accepts_plain_views_only():
    from rusir.model.safety import view_problem
    x = torch.arange(24.0).reshape(2, 3, 4)
    for ok in (x, x[1], x.transpose(0, 2), x[:, 1:], torch.zeros(0), torch.tensor(1.0), x[:, :, ::2]):
        assert view_problem(ok) is None
    assert "stride-0" in view_problem(torch.zeros(1).expand(5, 3))
    assert "overlapping" in view_problem(torch.arange(11.0).as_strided((3, 3), (3, 2)))
    assert view_problem(torch.zeros(1).expand(1, 1)) is None


def test_corrupted_official_file_fails_with_one_error_type(tmp_path):
    """Random corruptions of tiny32.pkl's structure (opcodes, small arguments, storage headers):
    each loads, or raises a ValueError with a one-line message; nothing else, nothing hangs.
    (Seeded; 1,600 such corruptions were run while writing the loader, all clean.)"""
    import pickletools
    import random
    raw = fixture_path("tiny32.pkl").read_bytes()
    spots = []
    for op, arg, pos in pickletools.genops(raw):
        spots.append(pos)
        if op.name == "BINBYTES":  # a storage blob: its header pickles
            spots.extend(range(pos + 5, pos + 5 + min(250, len(arg))))
    rng, path = random.Random(17), tmp_path / "corrupt.pkl"

    def run() -> list:
        odd = []
        for _ in range(40):
            data = bytearray(raw)
            for _ in range(rng.choice([1, 2, 3])):
                data[min(rng.choice(spots) + rng.choice([0, 1, 2]), len(data) - 1)] = rng.randrange(256)
            path.write_bytes(bytes(data[: rng.choice(spots)] if rng.random() < 0.1 else data))
            try:
                load_network_pickle(path)
            except ValueError as exc:
                if "\n" in str(exc) or len(str(exc)) >= MAX_MESSAGE:
                    odd.append(str(exc)[:200])
            except Exception as exc:  # noqa: BLE001 - what the test looks for
                odd.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        return odd

    out = H.guarded(run)
    assert out == {"raised": None, "value": []}, out
