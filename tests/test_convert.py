"""Stage `convert_weights` and dainet.weights.convert: published .pth files -> our initial
checkpoint. The published-format files are written by tests/torch_writer.py, which is
itself checked here against the real torch-written fixtures."""
from __future__ import annotations

import json
import pickletools
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import yaml

from dainet.errors import UserError
from dainet.models import build_decomposer, build_model, init_weights
from dainet.weights import WeightError, load_checkpoint, load_into, read_pth
from dainet.weights.convert import (ConvertConfig, convert_backbone, convert_model, convert_state, fit_to_reference,
                                    require_published_width)

import torch_writer
from conftest import stage_main
from helpers import paper_model

FIXTURES = Path(__file__).parent / "fixtures"
MARKER = "dainet_pwned_marker"   # what the evil fixtures' payload would create
TINY = 0.0625                    # model.width of the quick tests: channels 4 .. 64


convert_main = stage_main("convert_weights")


def write_params(path: Path, width: float, seed: int = 0, vgg_src: str = "", dainet_src: str = "",
                 backbone: str = "vgg", resnet_src: str = "") -> Path:
    """A params file with the spec's `model` section at ``width`` and a `convert` section."""
    model = {"backbone": backbone, "width": width, "vgg_cfg": [64, 64, "M", 128, 128, "M", 256, 256, 256, "C",
                                         512, 512, 512, "M", 512, 512, 512, "M"],
             "fc_channels": 1024, "fc_dilation": 3, "extras_cfg": [256, 512, 128, 256],
             "l2norm_scales": [10.0, 8.0, 5.0], "l2norm_eps": 1.0e-10, "fem_dilation": 3,
             "num_classes": 2, "ref_channels": 64, "decomp_channels": 64, "decomp_kernel": 9,
             "decomp_layers": 5, "norm": "none", "norm_group_size": 8, "norm_scope": "all"}
    convert = {"seed": seed, "backbone_init": "kaiming", "neck_init": "xavier", "zero_init_residual": False,
               "vgg_src": vgg_src,
               "resnet_src": resnet_src, "dainet_src": dainet_src}
    path.write_text(yaml.safe_dump({"model": model, "convert": convert}))
    return path


def state_of(net) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in net.state_dict().items()}


def random_state(shapes: dict[str, tuple], seed: int) -> OrderedDict:
    """A state dict as nn.Module.state_dict() returns it: OrderedDict with _metadata."""
    rng = np.random.default_rng(seed)
    sd = OrderedDict((k, rng.standard_normal(s).astype(np.float32)) for k, s in shapes.items())
    sd._metadata = OrderedDict({"": {"version": 1}})
    return sd


def shapes_of(module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def exit_code_and_message(argv, capsys) -> tuple[int, str]:
    from dainet.cli import run
    with pytest.raises(SystemExit) as exc:
        run(convert_main, argv)
    return exc.value.code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# tests/torch_writer.py writes what torch writes
# ---------------------------------------------------------------------------------------

def fixture_state(name: str) -> OrderedDict:
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as z:
        sd = OrderedDict((str(k), z[str(k)]) for k in z["__keys__"])
    sd._metadata = OrderedDict({"": {"version": 1}})
    return sd


def ops(data) -> list[tuple[str, object]]:
    return [(op.name, arg) for op, arg, _ in pickletools.genops(data)]


def globals_of(op_list) -> set:
    return {arg for name, arg in op_list if name == "GLOBAL"}


def up_to(op_list, key: str) -> list:
    """The opcodes before the state-dict entry ``key``."""
    return op_list[:op_list.index(("BINUNICODE", key))]


def test_writer_zip_matches_torch_fixture(tmp_path):
    sd = fixture_state("dainet_tiny_zip")
    path = tmp_path / "dainet_tiny_zip.pt"
    torch_writer.save_zip(sd, path)

    got = read_pth(path)
    assert list(got) == list(sd)
    for k, v in sd.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)

    with zipfile.ZipFile(FIXTURES / "dainet_tiny_zip.pt") as real, zipfile.ZipFile(path) as ours:
        real_ops = ops(real.read("dainet_tiny_zip/data.pkl"))
        our_ops = ops(ours.read("dainet_tiny_zip/data.pkl"))
        # torch's pickle, opcode for opcode and argument for argument, up to the first tensor
        # that torch stored as a view (transposed, shared storage) and the writer stores plain
        assert up_to(our_ops, "extras.0.weight") == up_to(real_ops, "extras.0.weight")
        assert globals_of(our_ops) == globals_of(real_ops) == {
            "collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch FloatStorage",
            "torch DoubleStorage", "torch LongStorage"}
        def metadata(op_list):   # the state dict's _metadata, set by BUILD (memo indices differ)
            return [n for n, _ in op_list[op_list.index(("BINUNICODE", "_metadata")):]]
        assert metadata(our_ops) == metadata(real_ops)

        def layout(zf):
            return [n for n in zf.namelist() if "/data/" not in n]
        assert layout(ours) == layout(real)
        assert ours.read("dainet_tiny_zip/version") == real.read("dainet_tiny_zip/version")
        raw = path.read_bytes()
        for info in ours.infolist():   # storages start 64-byte aligned, as torch writes them
            name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
            assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0, info.filename
            assert info.compress_type == zipfile.ZIP_STORED


def test_writer_legacy_matches_torch_fixture(tmp_path):
    sd = fixture_state("vgg16_tiny_legacy")
    path = tmp_path / "vgg16_tiny_legacy.pt"
    torch_writer.save_legacy(sd, path)

    got = read_pth(path)
    assert list(got) == list(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)

    def pickles(p):
        with open(p, "rb") as f:
            return [ops(f) for _ in range(5)], f.read()

    (real, real_tail), (ours, our_tail) = pickles(FIXTURES / "vgg16_tiny_legacy.pt"), pickles(path)
    assert ours[:3] == real[:3]          # magic number, protocol version, sys-info: identical

    def without_keys(op_list):           # legacy storage keys are memory addresses: mask them
        return [(n, "<key>" if isinstance(a, str) and a.isdigit() and len(a) > 8 else a) for n, a in op_list]
    # the object pickle, identical up to the first tensor torch stored in a shared storage
    assert without_keys(up_to(ours[3], "2.bias")) == without_keys(up_to(real[3], "2.bias"))
    assert globals_of(ours[3]) == globals_of(real[3])
    keys = [a for n, a in ours[4] if n == "BINUNICODE"]
    assert keys == sorted(keys) and len(keys) == len(sd)
    # after the pickles: per storage an int64 element count, then its bytes
    assert len(our_tail) == sum(8 + v.nbytes for v in sd.values())
    assert struct.unpack("<q", our_tail[:8])[0] == sd[next(iter(sd))].size


# ---------------------------------------------------------------------------------------
# Pure conversion functions (dainet.weights.convert), tiny width
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_net():
    return build_model(paper_model(width=TINY))


@pytest.fixture(scope="module")
def tiny_init(tiny_net):
    return state_of(init_weights(tiny_net, 7))


def test_convert_model_unwraps_casts_and_orders(tiny_net):
    shapes = shapes_of(tiny_net)
    sd = random_state(shapes, 1)
    published = {"module." + k: v.astype(np.float64) for k, v in reversed(sd.items())}
    out = convert_model(tiny_net.state_dict(), published, "x.pth")
    assert list(out) == list(shapes)                            # the model's order
    for k, v in sd.items():
        assert out[k].dtype == np.float32 and out[k].flags.c_contiguous
        np.testing.assert_array_equal(out[k], v)


def test_fit_refuses_misfits_naming_them(tiny_net):
    ref = tiny_net.state_dict()
    sd = random_state(shapes_of(tiny_net), 2)
    bad = dict(sd, **{"extras.1.weight": sd["extras.1.weight"][:1]})
    with pytest.raises(WeightError, match=r"x\.pth does not fit the model: 1 mis-shaped "
                                          r"\(extras\.1\.weight: file \(1, "):
        fit_to_reference(ref, bad, "x.pth")
    with pytest.raises(WeightError, match=r"1 missing \(ref\.3\.bias\)"):
        fit_to_reference(ref, {k: v for k, v in sd.items() if k != "ref.3.bias"}, "x.pth")
    with pytest.raises(WeightError, match=r"1 unexpected \(DecomNet\.net1_conv0\.weight\)"):
        fit_to_reference(ref, dict(sd, **{"DecomNet.net1_conv0.weight": np.zeros(3)}), "x.pth")
    with pytest.raises(WeightError, match=r"incompatible dtype \(vgg\.0\.bias: file complex64"):
        fit_to_reference(ref, dict(sd, **{"vgg.0.bias": sd["vgg.0.bias"].astype(np.complex64)}), "x.pth")
    nan = sd["fpn_fem.2.branch3.4.weight"].copy()
    nan.flat[3] = np.nan
    with pytest.raises(WeightError, match=r"x\.pth: 1 tensors hold NaN.*fpn_fem\.2\.branch3\.4\.weight"):
        fit_to_reference(ref, dict(sd, **{"fpn_fem.2.branch3.4.weight": nan}), "x.pth")


def test_convert_backbone_replaces_only_vgg(tiny_init):
    backbone = {k[len("vgg."):]: v + 1.0 for k, v in tiny_init.items() if k.startswith("vgg.")}
    out = convert_backbone(tiny_init, backbone, "vgg.pth")
    assert list(out) == list(tiny_init)
    for k, v in out.items():
        np.testing.assert_array_equal(v, tiny_init[k] + 1.0 if k.startswith("vgg.") else tiny_init[k])
    with pytest.raises(WeightError, match=r"vgg\.pth does not fit the model: 1 missing \(vgg\.33\.bias\)"):
        convert_backbone(tiny_init, {k: v for k, v in backbone.items() if k != "33.bias"}, "vgg.pth")
    with pytest.raises(WeightError, match=r"not a backbone file.*vgg\.0\.weight"):   # a whole model
        convert_backbone(tiny_init, {"vgg." + k: v for k, v in backbone.items()}, "vgg.pth")


def test_require_published_width():
    require_published_width(1.0, "p.yaml: model.width", "a.pth")
    with pytest.raises(WeightError, match=r"^p\.yaml: model\.width is 0\.25 but published weights need 1\.0"):
        require_published_width(0.25, "p.yaml: model.width", "a.pth")


def test_convert_config_source():
    def cfg(**kw):
        return ConvertConfig(**{"seed": 0, "backbone_init": "kaiming", "neck_init": "kaiming",
                                "zero_init_residual": False, "vgg_src": "", "resnet_src": "", "dainet_src": "", **kw})
    assert cfg().source() == ("init", "")
    assert cfg(vgg_src="v.pth").source() == ("vgg", "v.pth")
    assert cfg(resnet_src="r.pth").source() == ("resnet", "r.pth")
    assert cfg(resnet_src="r.pth", dainet_src="d.pth").source() == ("dainet", "d.pth")
    assert cfg(vgg_src="v.pth", dainet_src="d.pth").source() == ("dainet", "d.pth")


# ---------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------

def test_default_is_a_deterministic_seeded_init(tmp_path, tiny_net):
    params = write_params(tmp_path / "params.yaml", TINY, seed=3)
    for name in ("a", "b"):
        assert convert_main(["--dst", str(tmp_path / f"{name}.ckpt"),
                           "--metrics", str(tmp_path / f"{name}.json"), "--params", str(params)]) == 0
    a, b = load_checkpoint(tmp_path / "a.ckpt"), load_checkpoint(tmp_path / "b.ckpt")
    assert {k: v for k, v in a.items() if k != "model"} == {
        "pretrained": False, "kind": "init", "source": "", "seed": 3, "width": TINY}
    assert list(a["model"]) == list(tiny_net.state_dict())      # the full DAI-Net, ref.* included
    for k, v in a["model"].items():
        np.testing.assert_array_equal(v, b["model"][k])
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    metrics = json.loads((tmp_path / "a.json").read_text())
    assert metrics == {"pretrained": False, "kind": "init", "source": "", "seed": 3, "width": TINY,
                       "parameters": sum(v.size for v in a["model"].values()), "tensors_loaded": 0}
    for k, scale in (("L2Normof1", 10.0), ("L2Normof3", 5.0), ("L2Normef2", 8.0)):
        assert (a["model"][f"{k}.weight"] == scale).all()
    assert not a["model"]["fpn_fem.5.branch3.4.bias"].any() and a["model"]["extras.0.weight"].std() > 0

    write_params(params, TINY, seed=4)
    convert_main(["--dst", str(tmp_path / "c.ckpt"), "--params", str(params)])
    c = load_checkpoint(tmp_path / "c.ckpt")["model"]
    assert not np.array_equal(c["loc_pal2.0.weight"], a["model"]["loc_pal2.0.weight"])
    load_into(tiny_net, c, "c.ckpt")                            # what the train stage does


def test_vgg_kind_full_width_legacy_file(tmp_path):
    """The one width-1.0 conversion (~80 MB in, ~200 MB out): a legacy vgg16_reducedfc.pth."""
    cfg = paper_model(width=1.0)
    init = state_of(init_weights(build_model(cfg), 5))
    shapes = {k[len("vgg."):]: v.shape for k, v in init.items() if k.startswith("vgg.")}
    backbone = random_state(shapes, 6)
    src, dst = tmp_path / "vgg16_reducedfc.pth", tmp_path / "init.ckpt"
    torch_writer.save_legacy(backbone, src)
    params = write_params(tmp_path / "params.yaml", 1.0, seed=5, vgg_src=str(src))
    try:
        argv = ["--dst", str(dst), "--metrics", str(tmp_path / "m.json"), "--params", str(params)]
        assert convert_main(argv) == 0
        ck = load_checkpoint(dst)
        out = ck["model"]
        assert list(out) == list(init)
        for k, v in out.items():
            want = backbone[k[len("vgg."):]] if k.startswith("vgg.") else init[k]
            assert np.array_equal(v, want), k
        assert (out["L2Normef1.weight"] == 10.0).all() and (out["L2Normof2.weight"] == 8.0).all()
        metrics = json.loads((tmp_path / "m.json").read_text())
        assert (metrics["kind"], metrics["pretrained"], metrics["tensors_loaded"], metrics["width"]) == \
            ("vgg", True, 30, 1.0)
        assert metrics["source"] == str(src) and metrics["parameters"] == sum(v.size for v in init.values())
    finally:
        for p in (src, dst):
            p.unlink(missing_ok=True)


def test_dainet_kind_wrapped_and_prefixed(tmp_path, tiny_net):
    sd = random_state(shapes_of(tiny_net), 8)
    src = tmp_path / "DarkFaceZSDA.pth"
    wrapped = OrderedDict(("module." + k, v) for k, v in sd.items())
    torch_writer.save_zip({"epoch": 3, "weight": wrapped}, src)
    state, loaded = convert_state("dainet", str(src), paper_model(width=TINY), seed=0)
    assert loaded == len(sd) and list(state) == list(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(state[k], v)

    del wrapped["module.ref.3.bias"]
    torch_writer.save_zip({"epoch": 3, "weight": wrapped}, src)
    with pytest.raises(WeightError, match=r"DarkFaceZSDA\.pth does not fit the model: "
                                          r"1 missing \(ref\.3\.bias\)"):
        convert_state("dainet", str(src), paper_model(width=TINY), seed=0)


def test_dainet_kind_refusals_exit_2(tmp_path, capsys, monkeypatch):
    params = write_params(tmp_path / "params.yaml", 1.0)
    dst = tmp_path / "init.ckpt"
    bad = tmp_path / "bad.pth"   # one tensor, mis-shaped for the width-1.0 model
    torch_writer.save_zip({"vgg.0.weight": np.zeros((32, 3, 3, 3), np.float32)}, bad)
    code, err = exit_code_and_message(["--kind", "dainet", "--src", str(bad), "--dst", str(dst),
                                       "--params", str(params)], capsys)
    assert code == 2
    assert "bad.pth does not fit the model" in err
    assert "vgg.0.weight: file (32, 3, 3, 3), model (64, 3, 3, 3)" in err

    monkeypatch.chdir(tmp_path)   # the payload would create MARKER here
    code, err = exit_code_and_message(["--kind", "dainet", "--src", str(FIXTURES / "evil_zip_system.pt"),
                                       "--dst", str(dst), "--params", str(params)], capsys)
    assert code == 2 and "refused to load" in err and "posix.system" in err
    assert not (tmp_path / MARKER).exists() and not dst.exists()


def test_decomp_kind_round_trip_and_refusal(tmp_path, capsys):
    decomposer = build_decomposer(paper_model())
    sd = random_state(shapes_of(decomposer), 9)
    src, dst, metrics = tmp_path / "decomp.pth", tmp_path / "decomp.ckpt", tmp_path / "m.json"
    torch_writer.save_zip(sd, src)
    params = write_params(tmp_path / "params.yaml", TINY)    # the decomposer ignores model.width
    argv = ["--kind", "decomp", "--src", str(src), "--dst", str(dst), "--metrics", str(metrics),
            "--params", str(params)]
    assert convert_main(argv) == 0
    ck = load_checkpoint(dst)
    assert (ck["kind"], ck["pretrained"], ck["source"]) == ("decomp", True, str(src))
    assert list(ck["model"]) == list(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(ck["model"][k], v)
    load_into(decomposer, ck["model"], str(dst))
    assert json.loads(metrics.read_text())["tensors_loaded"] == len(sd)

    sd["DecomNet.net1_recon.weight"] = np.zeros((3, 64, 3, 3), np.float32)
    torch_writer.save_zip(sd, src)
    dst.unlink()
    code, err = exit_code_and_message(argv, capsys)
    assert code == 2 and "DecomNet.net1_recon.weight: file (3, 64, 3, 3), model (4, 64, 3, 3)" in err
    assert not dst.exists()


def test_width_mismatch_refused_before_reading(tmp_path, capsys):
    missing = tmp_path / "not_there.pth"
    params = write_params(tmp_path / "params.yaml", 0.25, vgg_src=str(missing))
    with pytest.raises(UserError, match=r"params\.yaml: model\.width is 0\.25 "
                                        r"but published weights need 1\.0"):
        convert_main(["--dst", str(tmp_path / "x.ckpt"), "--params", str(params)])
    code, err = exit_code_and_message(["--kind", "dainet", "--src", str(missing),
                                       "--dst", str(tmp_path / "x.ckpt"), "--params", str(params)], capsys)
    assert code == 2 and "model.width is 0.25 but published weights need 1.0" in err


def test_kind_and_src_go_together(tmp_path):
    with pytest.raises(SystemExit) as exc:
        convert_main(["--kind", "vgg", "--dst", str(tmp_path / "x.ckpt")])
    assert exc.value.code == 2
