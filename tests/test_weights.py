"""Weight I/O without PyTorch: real torch.save files (tests/fixtures, made once by
make_pth_fixtures.py with PyTorch 2.13), malicious pickles, name/shape checks, and our
own atomic checkpoints."""
from __future__ import annotations

import collections
import math
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dainet.weights import (WeightError, add_prefix, backbone_to_model, check_state_dict,
                            load_checkpoint, load_into, load_torch_file, read_pth,
                            save_checkpoint, strip_prefix, unwrap_state_dict)
from dainet.errors import UserError
from dainet.weights import pth

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
MARKER = "dainet_pwned_marker"   # what every evil payload would create in the current folder


def expected(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as z:
        return {str(k): z[str(k)] for k in z["__keys__"]}


def assert_same_state(got: dict, want: dict) -> None:
    assert list(got) == list(want)                      # file order kept
    for k, v in want.items():
        assert got[k].dtype == v.dtype, k
        assert got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes]) -> Path:
    """Copy a zip archive, replacing the members whose name ends with a key of ``replace``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            zout.writestr(info.filename, data)
    return dst


class _Reduce:
    """Pickles as ``func(*args)``: how a malicious pickle calls arbitrary code."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# ------------------------------------------------------------------------ reading .pth files

@pytest.mark.parametrize("name, ref", [
    ("dainet_tiny_zip", "dainet_tiny_zip"),
    ("dainet_tiny_bigendian_zip", "dainet_tiny_zip"),
    ("vgg16_tiny_legacy", "vgg16_tiny_legacy"),
    ("dtypes_zip", "dtypes_zip"),
    ("old_gpu_view_legacy", "old_gpu_view_legacy"),   # torch.cuda.FloatStorage, storage view
])
def test_fixture_loads_exactly(name, ref):
    state = read_pth(FIXTURES / f"{name}.pt")
    assert_same_state(state, expected(ref))
    for v in state.values():   # ordinary arrays, whatever the layout in the file
        assert v.flags.c_contiguous and v.flags.writeable and v.dtype.isnative


def test_views_offsets_scalars_and_shared_storage():
    state = read_pth(FIXTURES / "dainet_tiny_zip.pt")
    count = state["fpn_fem.0.branch1.num_batches_tracked"]
    assert count.shape == () and count.dtype == np.int64 and count == 7
    assert state["conf_pal2.0.bias"][2] == 3 << 40       # int64 kept, not through float
    assert state["loc_pal1.0.weight"].dtype == np.float64
    # fpn_topdown.0.{weight,bias}: views of one [4, 10] storage (offset 10 stride (10, 2);
    # offset 34 stride (1,)); extras.0.weight: a transposed [3, 5]
    shared = np.arange(40, dtype=np.float32).reshape(4, 10) / 7
    np.testing.assert_allclose(state["fpn_topdown.0.weight"], shared[1:3, ::2], rtol=1e-6)
    np.testing.assert_allclose(state["fpn_topdown.0.bias"], shared[3, 4:8], rtol=1e-6)
    assert state["extras.0.weight"].shape == (5, 3)
    # the arrays are independent even though the file shared one storage
    before = state["fpn_topdown.0.bias"].copy()
    state["fpn_topdown.0.weight"][:] = -1
    np.testing.assert_array_equal(state["fpn_topdown.0.bias"], before)


def test_dtype_fixture_values():
    state = read_pth(FIXTURES / "dtypes_zip.pt")
    np.testing.assert_array_equal(state["bf16"][:2], [1.0, -3.5])   # bfloat16 -> float32
    assert state["bf16"].dtype == np.float32 and 0.99e30 < state["bf16"][2] < 1.01e30
    assert state["u16"].dtype == np.uint16 and state["u16"].tolist() == [1, 65535]  # v3 rebuild
    np.testing.assert_array_equal(state["param"], np.arange(6.0, dtype=np.float32).reshape(2, 3))
    assert state["empty"].shape == (0, 3)
    np.testing.assert_array_equal(state["channels_last"],
                                  np.arange(24.0, dtype=np.float32).reshape(1, 2, 3, 4))
    np.testing.assert_array_equal(state["expanded"], [[1, 1, 1], [2, 2, 2]])   # stride 0
    assert state["bool"].tolist() == [True, False, True]
    assert state["c64"].dtype == np.complex64 and state["c64"][1] == -3j


def test_wrapped_and_dataparallel_files():
    raw = load_torch_file(FIXTURES / "wrapped_epoch_zip.pt")
    assert raw["epoch"] == 3 and type(raw["weight"]) is dict
    assert_same_state(read_pth(FIXTURES / "wrapped_epoch_zip.pt"), expected("dainet_tiny_zip"))

    state = read_pth(FIXTURES / "dataparallel_legacy.pt")    # {'state_dict': {'module.*'}}
    assert all(k.startswith("module.") for k in state)
    assert_same_state(strip_prefix(state, "module.", "dp.pt"), expected("vgg16_tiny_legacy"))


def test_backbone_file_maps_to_vgg_names():
    state = backbone_to_model(read_pth(FIXTURES / "vgg16_tiny_legacy.pt"), "vgg.pt")
    assert list(state) == ["vgg." + k for k in expected("vgg16_tiny_legacy")]
    with pytest.raises(WeightError, match=r"x\.pt: not a backbone file.*vgg\.0\.weight"):
        backbone_to_model({"vgg.0.weight": np.zeros(1), "0.bias": np.zeros(1)}, "x.pt")


def test_pth_reader_needs_no_jittor():
    code = ("import sys; sys.modules['jittor'] = None; sys.modules['torch'] = None\n"
            "from dainet.weights.pth import read_pth\n"
            f"print(len(read_pth({str(FIXTURES / 'dainet_tiny_zip.pt')!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(len(expected("dainet_tiny_zip")))


# -------------------------------------------------------------------------- hostile files

EVIL_FIXTURES = [
    ("evil_zip_system.pt", r"'posix\.system'"),
    ("evil_legacy_eval.pt", r"'__builtin__\.eval' \(Python 3: builtins\.eval\)"),
    ("evil_legacy_sysinfo.pt", r"'posix\.system'"),   # in a header pickle, before the object
]


@pytest.mark.parametrize("name, global_name", EVIL_FIXTURES)
def test_malicious_fixture_refused_and_not_run(name, global_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightError, match=rf"{name}: refused to load.*{global_name}.*nothing"):
        read_pth(FIXTURES / name)
    assert not (tmp_path / MARKER).exists()


UNRESTRICTED_LOADER = """
import pickle, sys, zipfile
class Loose(pickle.Unpickler):       # an ordinary unpickler, with torch stubbed out
    def find_class(self, module, name):
        return (lambda *a: None) if module.startswith("torch") else super().find_class(module, name)
    def persistent_load(self, pid):
        return None
path = sys.argv[1]
if zipfile.is_zipfile(path):
    z = zipfile.ZipFile(path)
    Loose(z.open(next(n for n in z.namelist() if n.endswith("/data.pkl")))).load()
else:
    with open(path, "rb") as f:
        for _ in range(4):           # magic, protocol, sys-info, object
            Loose(f).load()
"""


@pytest.mark.parametrize("name", [n for n, _ in EVIL_FIXTURES])
def test_malicious_fixture_really_runs_code_when_unpickled_plainly(name, tmp_path):
    """Guards the test above: the payload is live, so 'marker absent' means something."""
    subprocess.run([sys.executable, "-c", UNRESTRICTED_LOADER, str(FIXTURES / name)],
                   cwd=tmp_path, capture_output=True)
    assert (tmp_path / MARKER).exists()


@pytest.mark.parametrize("payload, global_name", [
    (b"(Vtouch " + MARKER.encode() + b"\niposix\nsystem\n.", "posix.system"),
    (pickle.dumps(_Reduce(subprocess.call, (["touch", MARKER],)), protocol=4), "subprocess.call"),
    (pickle.dumps(_Reduce(exec, (f"open({MARKER!r}, 'w')",)), protocol=2), "exec"),
    (pickle.dumps(collections.OrderedDict(a=1, b=_Reduce(os.system, (f"touch {MARKER}",))),
                  protocol=2), "posix.system"),
], ids=["INST-protocol-0", "STACK_GLOBAL-protocol-4", "GLOBAL-protocol-2", "nested-value"])
def test_other_payloads_in_a_zip_file_refused(payload, global_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = rewrite_zip(FIXTURES / "dainet_tiny_zip.pt", tmp_path / "evil.pt", {"/data.pkl": payload})
    with pytest.raises(WeightError, match=rf"evil\.pt: refused.*{global_name}"):
        read_pth(evil)
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("payload", [
    # BUILD on an allowlisted rebuild function, trying to replace what it calls
    b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x04\x00\x00\x00funcK\x01s\x86b.",
    # BUILD on the OrderedDict class itself
    b"\x80\x02ccollections\nOrderedDict\n}X\x03\x00\x00\x00fooK\x01sb.",
], ids=["rebuild-function", "OrderedDict-class"])
def test_pickle_cannot_modify_allowlisted_objects(payload, tmp_path):
    path = rewrite_zip(FIXTURES / "dainet_tiny_zip.pt", tmp_path / "x.pt", {"/data.pkl": payload})
    with pytest.raises(WeightError, match=r"x\.pt: corrupt"):
        load_torch_file(path)
    assert pth.ALLOWED_GLOBALS["torch._utils", "_rebuild_tensor_v2"].func is pth._rebuild_tensor_v2
    assert not hasattr(collections.OrderedDict, "foo")


def test_pickle_cannot_enlarge_a_tensor_after_its_bounds_check(tmp_path):
    """A 4-element tensor over storage 0, then BUILD {'size': (10**6,)} on it."""
    payload = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n("
               b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000"
               b"X\x03\x00\x00\x00cpuK\x04tQ"                  # persistent id -> storage '0'
               b"K\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR"
               b"}X\x04\x00\x00\x00size" + b"J" + struct.pack("<i", 10 ** 6) + b"\x85sb.")
    path = rewrite_zip(FIXTURES / "dainet_tiny_zip.pt", tmp_path / "grow.pt", {"/data.pkl": payload})
    with pytest.raises(WeightError, match=r"grow\.pt: corrupt.*tries to modify"):
        load_torch_file(path)
    honest = rewrite_zip(FIXTURES / "dainet_tiny_zip.pt", tmp_path / "ok.pt",
                         {"/data.pkl": payload[:payload.index(b"}X")] + b"."})   # without BUILD
    assert load_torch_file(honest).shape == (4,)


def test_self_referencing_pickle_is_a_clean_error(tmp_path):
    loop = b"\x80\x02]q\x00h\x00a."          # a list that contains itself
    path = rewrite_zip(FIXTURES / "dainet_tiny_zip.pt", tmp_path / "loop.pt", {"/data.pkl": loop})
    with pytest.raises(WeightError, match=r"loop\.pt: corrupt.*RecursionError"):
        load_torch_file(path)


def test_view_past_its_storage_refused():
    with pytest.raises(WeightError, match=r"oob_view_zip\.pt: corrupt.*size \(100,\).*storage of 4"):
        read_pth(FIXTURES / "oob_view_zip.pt")


@pytest.mark.parametrize("name", ["dainet_tiny_zip", "vgg16_tiny_legacy", "dtypes_zip"])
@pytest.mark.parametrize("keep", [0.0, 0.05, 0.5, 0.95, -1])
def test_truncated_file_raises_weight_error(name, keep, tmp_path):
    data = (FIXTURES / f"{name}.pt").read_bytes()
    cut = tmp_path / f"{name}.pt"
    cut.write_bytes(data[:keep] if keep == -1 else data[:int(len(data) * keep)])
    with pytest.raises(WeightError, match=rf"{name}\.pt: "):
        read_pth(cut)


def test_short_storage_member_missing_file_and_other_formats(tmp_path):
    short = rewrite_zip(FIXTURES / "dainet_tiny_zip.pt", tmp_path / "short.pt",
                        {"/data/0": b"\0" * 8})
    with pytest.raises(WeightError, match=r"short\.pt: corrupt.*holds 8 bytes, needs 432"):
        read_pth(short)
    with pytest.raises(WeightError, match=r"nope\.pth: no such file"):
        read_pth(tmp_path / "nope.pth")
    text = tmp_path / "notes.pth"
    text.write_bytes(b"\x00\x01 not a pickle at all")
    with pytest.raises(WeightError, match=r"notes\.pth: not a PyTorch file"):
        read_pth(text)
    script = tmp_path / "scripted.pt"
    with zipfile.ZipFile(script, "w") as z:
        z.writestr("scripted/data.pkl", b"")
        z.writestr("scripted/code/__torch__.py", b"")
    with pytest.raises(WeightError, match=r"scripted\.pt: a TorchScript archive"):
        read_pth(script)


# ------------------------------------------------------------------------------- names

def test_unwrap_state_dict_forms():
    sd = {"vgg.0.weight": np.zeros((2, 3)), "weight": np.ones(1)}   # a 'weight' tensor stays
    assert unwrap_state_dict(sd, "f") is not sd and list(unwrap_state_dict(sd, "f")) == list(sd)
    assert list(unwrap_state_dict({"epoch": 3, "weight": sd}, "f")) == list(sd)
    assert list(unwrap_state_dict({"state_dict": sd, "optimizer": {}}, "f")) == list(sd)
    with pytest.raises(WeightError, match=r"f: not a state dict.*'epoch': int"):
        unwrap_state_dict({"epoch": 3, "net": sd}, "f")
    with pytest.raises(WeightError, match=r"f: no state dict found \(the file holds a list\)"):
        unwrap_state_dict([np.zeros(1)], "f")
    with pytest.raises(WeightError, match=r"f: the state dict is empty"):
        unwrap_state_dict({"weight": {}}, "f")


def test_prefixes():
    sd = {"module.a": 1, "module.b.c": 2}
    assert strip_prefix(sd, "module.", "f") == {"a": 1, "b.c": 2}
    assert strip_prefix({"a": 1}, "module.", "f") == {"a": 1}
    with pytest.raises(WeightError, match=r"f: 1 names start with 'module\.' but 1 do not: b"):
        strip_prefix({"module.a": 1, "b": 2}, "module.", "f")
    assert list(add_prefix({"0.weight": 1, "0.bias": 2}, "vgg.")) == ["vgg.0.weight", "vgg.0.bias"]


def test_check_state_dict_reports_every_misfit_at_once():
    assert issubclass(WeightError, UserError)        # stages print it as 'error: ...', exit 2
    model = {"vgg.0.weight": (16, 3, 3, 3), "vgg.0.bias": (16,), "L2Normof1.weight": (256,),
             "extras.0.weight": (256, 1024, 1, 1)}
    given = {"vgg.0.weight": np.zeros((64, 3, 3, 3)), "vgg.0.bias": np.zeros(16),
             "num_batches_tracked": np.zeros(())}
    with pytest.raises(WeightError) as err:
        check_state_dict(model, given, "weights.pth")
    assert str(err.value) == (
        "weights.pth does not fit the model: 2 missing (L2Normof1.weight, extras.0.weight), "
        "1 unexpected (num_batches_tracked), "
        "1 mis-shaped (vgg.0.weight: file (64, 3, 3, 3), model (16, 3, 3, 3))")
    check_state_dict({"a": (2,)}, {"a": np.zeros(2)}, "ok.pth")        # a fit: no error
    many = {f"x{i}": (1,) for i in range(20)}
    with pytest.raises(WeightError, match=r"20 missing \(x0, .*x11, \.\.\. 8 more\)"):
        check_state_dict(many, {}, "w.pth")


# ------------------------------------------------------------------------- our checkpoints

def assert_tree_equal(got, want, where="state"):
    assert type(got) is type(want) or (isinstance(want, np.generic) and type(got) is type(want)), \
        f"{where}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, dict):
        assert list(got) == list(want), where
        for k in want:
            assert_tree_equal(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_tree_equal(g, w, f"{where}[{i}]")
    elif isinstance(want, (np.ndarray, np.generic)):
        assert got.dtype == want.dtype and np.shape(got) == np.shape(want), where
        np.testing.assert_array_equal(got, want, err_msg=where)
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), where
    else:
        assert got == want, where


def test_checkpoint_round_trip_with_optimiser_state(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    state = {
        "model": {"vgg.0.weight": w, "vgg.0.bias": np.arange(4, dtype=np.float64)},
        "optimizer": {
            "defaults": {"lr": 5e-4, "momentum": 0.9, "weight_decay": 5e-4,
                         "param_groups": [{"params": [w], "values": [np.zeros_like(w)], "lr": 5e-5}]},
            "state": {0: {"momentum_buffer": np.ones(2)}, 1: {}},          # int keys
        },
        "epoch": 3, "iteration": 5000, "big": 2 ** 70, "best_loss": float("inf"),
        "nan": float("nan"), "name": "dainet ü", "flag": True, "none": None,
        "crop": (640, 640), "nested": ((1, 2.5), [3, (4,)]), "scalar": np.float32(0.5),
        "count": np.int64(7), "empty": np.zeros((0, 3), np.int16),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
        "strided": np.arange(10, dtype=np.uint8)[::3], "mask": np.array([True, False]),
        "tuple_key": {(1, "a"): 2, None: 3}, "looks_tagged": {"__tuple__": 1, "x": 2},
        "only_tag": {"__ndarray__": "arrays/000000.npy"},              # a user dict, not a tag
    }
    path = tmp_path / "ckpt" / "last.dnc"
    save_checkpoint(path, state)
    assert_tree_equal(load_checkpoint(path), state)
    with zipfile.ZipFile(path) as z:                 # a plain zip of .npy files + JSON
        assert "checkpoint.json" in z.namelist() and not any(i.compress_type for i in z.infolist())


def test_checkpoint_stores_jittor_vars_as_arrays(tmp_path):
    import jittor as jt   # after dainet (imported above), as required
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_checkpoint(tmp_path / "c.dnc", {"model": {"w": jt.array(value)}, "list": [jt.array(value[0])]})
    got = load_checkpoint(tmp_path / "c.dnc")
    assert type(got["model"]["w"]) is np.ndarray
    np.testing.assert_array_equal(got["model"]["w"], value)
    np.testing.assert_array_equal(got["list"][0], value[0])


def test_failed_write_keeps_old_checkpoint_and_leaves_no_temp(tmp_path):
    path = tmp_path / "ckpt.dnc"
    save_checkpoint(path, {"w": np.ones(3)})
    before = path.read_bytes()
    # the bad value comes after an array has already been streamed into the temp file
    with pytest.raises(TypeError, match=r"state\['bad'\]\[0\] of type object"):
        save_checkpoint(path, {"w": np.zeros(1000), "bad": [object()]})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.dnc"]
    with pytest.raises(TypeError, match="object arrays"):
        save_checkpoint(tmp_path / "new.dnc", {"o": np.array([None, 1], dtype=object)})
    assert os.listdir(tmp_path) == ["ckpt.dnc"]


def test_truncated_or_foreign_checkpoint_raises_weight_error(tmp_path):
    path = tmp_path / "c.dnc"
    save_checkpoint(path, {"w": np.ones((50, 50)), "epoch": 1})
    data = path.read_bytes()
    for keep in (0, 10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:keep])
        with pytest.raises(WeightError, match=r"c\.dnc: "):
            load_checkpoint(path)
    with pytest.raises(WeightError, match=r"dainet_tiny_zip\.pt: not a DAI-Net checkpoint.*read_pth"):
        load_checkpoint(FIXTURES / "dainet_tiny_zip.pt")
    with pytest.raises(WeightError, match=r"missing\.dnc: no such file"):
        load_checkpoint(tmp_path / "missing.dnc")


def test_checkpoint_loading_runs_no_pickle(tmp_path):
    """An object array (pickled inside .npy) or a path outside arrays/ is refused."""
    import io
    import json
    npy = io.BytesIO()
    np.save(npy, np.array([_Reduce(os.system, (f"touch {MARKER}",))], dtype=object), allow_pickle=True)
    for member, tree in (("arrays/000000.npy", {"x": {"__ndarray__": "arrays/000000.npy"}}),
                         ("../x.npy", {"x": {"__ndarray__": "../x.npy"}})):
        path = tmp_path / "evil.dnc"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("checkpoint.json", json.dumps(
                {"format": "dainet-checkpoint", "version": 1, "tree": tree}))
            z.writestr(member, npy.getvalue())
        with pytest.raises(WeightError, match=r"evil\.dnc: corrupt checkpoint"):
            load_checkpoint(path)
    assert not (Path.cwd() / MARKER).exists()


# ------------------------------------------------------------------------- into a module

def small_net():
    from jittor import nn
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))


def test_load_into_checks_casts_and_verifies():
    net = small_net()
    rng = np.random.default_rng(1)
    state = {k: rng.standard_normal(tuple(v.shape)) for k, v in net.state_dict().items()}  # float64
    load_into(net, state, "w.pth")
    for k, v in net.state_dict().items():
        assert str(v.dtype) == "float32"             # the model's dtype, not the file's
        np.testing.assert_array_equal(v.numpy(), state[k].astype(np.float32))


def test_load_into_refuses_misfits_and_loads_nothing():
    net = small_net()
    # known values first: reading the random initial values back would compile Jittor kernels
    before = {k: np.full(tuple(v.shape), 0.5, np.float32) for k, v in net.state_dict().items()}
    load_into(net, before, "init.pth")
    bad = {k: np.zeros(tuple(v.shape), np.float32) for k, v in net.state_dict().items()}
    bad["0.weight"] = np.zeros((8, 3, 3, 3), np.float32)
    del bad["2.bias"]
    bad["2.running_mean"] = np.zeros(2, np.float32)
    with pytest.raises(WeightError, match=r"w\.pth does not fit the model: 1 missing \(2\.bias\), "
                                          r"1 unexpected \(2\.running_mean\), 1 mis-shaped \(0\.weight"):
        load_into(net, bad, "w.pth")
    mistyped = {k: np.zeros(tuple(v.shape), np.complex64) for k, v in net.state_dict().items()}
    with pytest.raises(WeightError, match=r"4 with an incompatible dtype \(0\.weight: file complex64"):
        load_into(net, mistyped, "w.pth")
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
