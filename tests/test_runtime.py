"""The runtime module's decisions, with the machine faked (no Jittor import needed)."""
import ctypes
import os
from pathlib import Path

import pytest

from dainet import runtime


class FakeCudaLib:
    def __init__(self, init_rc=0, count=1):
        self.init_rc, self.count = init_rc, count

    def cuInit(self, flags):
        return self.init_rc

    def cuDeviceGetCount(self, ptr):
        ctypes.cast(ptr, ctypes.POINTER(ctypes.c_int)).contents.value = self.count
        return 0


def loader_for(lib):
    def load(name):
        if lib is None:
            raise OSError(f"{name}: cannot open shared object file")
        return lib
    return load


def test_no_nvcc_means_no_cuda():
    ok, why = runtime.cuda_usable(loader=loader_for(FakeCudaLib()), which=lambda _: None)
    # /usr/local/cuda/bin/nvcc may exist on the host; only assert when it does not
    if not Path("/usr/local/cuda/bin/nvcc").exists():
        assert not ok and why == "no nvcc"


def test_nvcc_without_driver_is_not_cuda():
    ok, why = runtime.cuda_usable(loader=loader_for(None), which=lambda _: "/usr/bin/nvcc")
    assert not ok and "no CUDA driver" in why


def test_driver_without_gpu_is_not_cuda():
    ok, why = runtime.cuda_usable(loader=loader_for(FakeCudaLib(count=0)), which=lambda _: "/x/nvcc")
    assert not ok and "no GPU" in why
    ok, why = runtime.cuda_usable(loader=loader_for(FakeCudaLib(init_rc=100)), which=lambda _: "/x/nvcc")
    assert not ok and "cuInit" in why


def test_driver_with_gpu_is_cuda():
    ok, why = runtime.cuda_usable(loader=loader_for(FakeCudaLib(count=2)), which=lambda _: "/x/nvcc")
    assert ok and why.startswith("2 GPU")


def test_decide_disables_nvcc_and_mkl_when_unusable():
    env = {}
    info = runtime.decide(env, cuda=lambda: (False, "no driver"), onednn=lambda: (False, "none"))
    assert env["nvcc_path"] == "" and env["use_mkl"] == "0"
    assert not info.cuda and not info.onednn


def test_decide_keeps_cuda_and_mkl_when_usable():
    env = {}
    info = runtime.decide(env, cuda=lambda: (True, "1 GPU(s)"), onednn=lambda: (True, "ready"))
    assert "nvcc_path" not in env and "use_mkl" not in env
    assert info.cuda and info.onednn


def test_decide_respects_user_settings():
    def boom():
        raise AssertionError("probe must not run when the user decided")
    env = {"nvcc_path": "", "use_mkl": "0", "cc_flags": "-O1"}
    info = runtime.decide(env, cuda=boom, onednn=boom, cpu=lambda: runtime.X86_64_V3_FLAGS)
    assert env == {"nvcc_path": "", "use_mkl": "0", "cc_flags": "-O1", "log_silent": "1"}
    assert info.numerics == "set by user (cc_flags)"
    assert not info.cuda and not info.onednn


def test_numerics_pinned_on_an_x86_64_v3_cpu_without_cuda():
    env = {}
    info = runtime.decide(env, cuda=lambda: (False, "no nvcc"), onednn=lambda: (True, "ready"),
                          cpu=lambda: runtime.X86_64_V3_FLAGS | {"avx512f"})
    assert env["cc_flags"] == "-march=x86-64-v3 -mtune=generic"
    assert env["DNNL_MAX_CPU_ISA"] == env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert env["cache_name"] == "dainet_x86-64-v3"   # never mixed with -march=native kernels
    assert info.numerics.startswith("x86-64-v3")


@pytest.mark.parametrize("flags, cuda, user, expect", [
    (runtime.X86_64_V3_FLAGS - {"avx2"}, False, {}, "native (not an x86-64-v3 CPU)"),
    (frozenset(), False, {}, "native (not an x86-64-v3 CPU)"),
    (runtime.X86_64_V3_FLAGS, True, {}, "native (CUDA machine)"),
    (runtime.X86_64_V3_FLAGS, False, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
     "set by user (ONEDNN_MAX_CPU_ISA)"),
])
def test_numerics_left_native(flags, cuda, user, expect):
    env = dict(user)
    assert runtime.pin_cpu_numerics(env, flags, cuda) == expect
    assert env == user


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert runtime.cpu_flags(info) == {"fpu", "avx2", "fma"}
    assert runtime.cpu_flags(tmp_path / "missing") == frozenset()


def test_prepare_onednn_links_system_copy(tmp_path):
    sys_inc = tmp_path / "usr" / "include"
    (sys_inc / "oneapi" / "dnnl").mkdir(parents=True)
    for name in ("dnnl.hpp", "dnnl.h", "dnnl_config.h"):
        (sys_inc / name).write_text("// header")
    sys_lib = tmp_path / "usr" / "lib" / "libdnnl.so"
    sys_lib.parent.mkdir(parents=True)
    sys_lib.write_bytes(b"\x7fELF")
    target = tmp_path / "home" / ".cache" / "jittor" / "mkl" / runtime.ONEDNN_DIRNAME
    ok, why = runtime.prepare_onednn(target, system=lambda: (sys_lib, sys_inc))
    assert ok, why
    assert os.path.realpath(target / "lib" / "libmkldnn.so") == str(sys_lib)
    assert (target / "include" / "dnnl.hpp").read_text() == "// header"
    assert (target / "include" / "oneapi" / "dnnl").is_dir()
    # second call: already prepared, nothing to do
    ok, why = runtime.prepare_onednn(target, system=lambda: pytest.fail("should not probe again"))
    assert ok and why.startswith("ready")


def test_prepare_onednn_without_system_copy(tmp_path):
    ok, why = runtime.prepare_onednn(tmp_path / "dnnl", system=lambda: None)
    assert not ok and "libdnnl-dev" in why
    assert not (tmp_path / "dnnl").exists()


def test_doctor_reports_without_jittor(capsys):
    from dainet.__main__ import main
    assert main(["doctor", "--no-jittor"]) == 0
    out = capsys.readouterr().out
    for key in ("cuda", "onednn", "jittor_home", "onednn_dir"):
        assert key in out


def test_doctor_install_reports_its_own_settings_as_detected_not_as_set_by_user():
    """``make setup`` runs ``doctor --install`` after the import configured Jittor: what
    dainet set itself must be detected again, not shown as the user's choice."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("nvcc_path", "use_mkl", *runtime.NUMERICS_VARS)}
    code = ("import dainet.runtime as r; r.install_system_packages = lambda: 'skipped in the test'; "
            "from dainet.__main__ import main; main(['doctor', '--install', '--no-jittor'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert "system packages: skipped in the test" in out
    assert "set by user" not in out


def test_use_device_is_the_one_picker():
    """train, predict and visualize all pick the device here (no GPU on the test machine)."""
    import jittor as jt
    if jt.has_cuda:
        pytest.skip("a GPU is usable here")
    assert runtime.use_device("auto") == "cpu" and jt.flags.use_cuda == 0
    assert runtime.use_device("cpu") == "cpu"
    from dainet.errors import UserError
    with pytest.raises(UserError, match=r"^params train.device is 'cuda' but no usable GPU was found"):
        runtime.use_device("cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        runtime.use_device("tpu")


def test_missing_onednn_is_said_once_where_a_stage_picks_the_cpu(monkeypatch, capsys):
    """Not at ``import dainet``: ``make setup`` imports it before ``doctor --install`` has
    installed oneDNN, and a fresh machine then warned about a library it was installing."""
    import dataclasses
    monkeypatch.setattr(runtime, "_INFO", dataclasses.replace(
        runtime.configure(), onednn=False, onednn_reason="no oneDNN: install it"))
    monkeypatch.setitem(runtime._INFO_SET_BY_US, "use_mkl", True)
    monkeypatch.setattr(runtime, "_WARNED", [])
    runtime.warn_if_slow()
    runtime.warn_if_slow()
    assert capsys.readouterr().err == "dainet: warning: no oneDNN: install it; CPU convolutions will be slow\n"
    monkeypatch.setitem(runtime._INFO_SET_BY_US, "use_mkl", False)   # use_mkl=0 chosen by the user
    monkeypatch.setattr(runtime, "_WARNED", [])
    runtime.warn_if_slow()
    assert capsys.readouterr().err == ""
