"""The runtime module's decisions, with the machine faked (no Jittor import needed)."""
import os

import pytest

from dainet import gpu_stack as gs
from dainet import runtime


NO_GPU = gs.CudaFacts(gpus=0, driver_note="no CUDA driver (libcuda.so.1)")


def test_decide_disables_nvcc_and_mkl_when_unusable():
    env = {}
    info = runtime.decide(env, gpu=lambda: NO_GPU, onednn=lambda: (False, "none"))
    assert env["nvcc_path"] == "" and env["use_mkl"] == "0"
    assert not info.cuda and not info.onednn and info.gpu_route == "cpu"
    assert info.cuda_reason == "no CUDA driver (libcuda.so.1)" and info.facts == {"gpus": 0, "driver_cuda": "none"}


def test_decide_keeps_cuda_and_mkl_when_usable():
    env = {}
    info = runtime.decide(env, gpu=lambda: gs.CudaFacts(
        gpus=1, driver=(12, 4), nvcc="/usr/local/cuda/bin/nvcc", toolkit=(12, 4), toolkit_home="/usr/local/cuda",
        libs={n: gs.Library(n, "/usr/local/cuda/include", "/usr/local/cuda/lib64", f"lib{n}.so",
                            (8, 9, 7) if n == "cudnn" else ()) for n in (*gs.CUDA_LIBS, "cudnn")}),
        onednn=lambda: (True, "ready"), materialise=lambda stack, f, e, h: e.update(nvcc_path=stack.nvcc) or [])
    assert env["nvcc_path"] == "/usr/local/cuda/bin/nvcc" and "use_mkl" not in env
    assert info.cuda and info.onednn and info.gpu_route == "system"


def test_decide_respects_user_settings():
    def boom():
        raise AssertionError("probe must not run when the user decided")
    env = {"nvcc_path": "", "use_mkl": "0", "cc_flags": "-O1"}
    info = runtime.decide(env, gpu=boom, onednn=boom, cpu=lambda: runtime.X86_64_V3_FLAGS)
    assert env == {"nvcc_path": "", "use_mkl": "0", "cc_flags": "-O1", "log_silent": "1", "FIX_TORCH_ERROR": "0"}
    assert info.numerics == "set by user (cc_flags)"
    assert not info.cuda and not info.onednn


def test_jittor_kernels_pinned_on_an_x86_64_v3_cpu_without_cuda_and_onednn_left_native():
    env = {}
    info = runtime.decide(env, gpu=lambda: NO_GPU, onednn=lambda: (True, "ready"),
                          cpu=lambda: runtime.X86_64_V3_FLAGS | {"avx512f"})
    assert env["cc_flags"] == "-march=x86-64-v3 -mtune=generic"
    assert env["cache_name"] == "dainet_x86-64-v3"   # never mixed with -march=native kernels
    assert "DNNL_MAX_CPU_ISA" not in env and "ONEDNN_MAX_CPU_ISA" not in env
    assert info.numerics == "Jittor kernels x86-64-v3 (cc_flags '-march=x86-64-v3 -mtune=generic'), oneDNN native"


@pytest.mark.parametrize("flags, cuda, user, expect", [
    (runtime.X86_64_V3_FLAGS - {"avx2"}, False, {}, "native (not an x86-64-v3 CPU)"),
    (frozenset(), False, {}, "native (not an x86-64-v3 CPU)"),
    (runtime.X86_64_V3_FLAGS, True, {}, "native (CUDA machine)"),
    (runtime.X86_64_V3_FLAGS, False, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "set by user (ONEDNN_MAX_CPU_ISA)"),
    (runtime.X86_64_V3_FLAGS, False, {"cc_flags": "", "DNNL_MAX_CPU_ISA": "AVX2"},
     "set by user (cc_flags, DNNL_MAX_CPU_ISA)"),
])
def test_numerics_left_alone(flags, cuda, user, expect):
    env = dict(user)
    assert runtime.pin_jittor_kernels(env, flags, cuda) == expect
    assert env == user


def test_cpu_flags_reads_the_flags_line(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\nbugs\t: x\n")
    assert runtime.cpu_flags(tmp_path / "cpuinfo") == frozenset({"fpu", "avx2", "fma"})
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


def test_a_gpu_that_cannot_be_used_is_said_once_and_named_when_cuda_is_asked_for(monkeypatch, capsys):
    import dataclasses
    from dainet.errors import UserError
    error = "1 GPU(s) found but no CUDA stack Jittor can use (no system nvcc): install a CUDA 12/13 toolkit"
    monkeypatch.setattr(runtime, "_INFO", dataclasses.replace(runtime.configure(), gpu_error=error))
    monkeypatch.setattr(runtime, "_WARNED", [])
    runtime.warn_if_slow()
    runtime.warn_if_slow()
    assert capsys.readouterr().err == f"dainet: warning: {error}; using the CPU\n"
    import jittor as jt
    monkeypatch.setattr(jt, "has_cuda", False)    # as on the machine this error is for
    with pytest.raises(UserError, match=r"^params train.device is 'cuda' but no usable GPU was found: "
                                        r"1 GPU\(s\) found .* install a CUDA 12/13 toolkit \(python -m dainet doctor\)$"):
        runtime.use_device("cuda")


def test_jittors_own_convolutions_are_said_with_their_cost(monkeypatch, capsys):
    import dataclasses
    stack = gs.decide(gs.CudaFacts(gpus=1, driver=(13, 0), nvcc="/n", toolkit=(13, 0), toolkit_home="/t", libs={
        n: gs.Library(n, "/t/include", "/t/lib64", f"lib{n}.so") for n in gs.CUDA_LIBS}))
    assert stack.route == "jittor-conv"
    monkeypatch.setattr(runtime, "_INFO", dataclasses.replace(runtime.configure(), gpu_route=stack.route,
                                                              cuda_reason=stack.reason))
    monkeypatch.setattr(runtime, "_WARNED", [])
    runtime.warn_if_slow()
    err = capsys.readouterr().err
    assert err.startswith("dainet: warning: system CUDA 13.0 without cuDNN: Jittor's own convolutions are "
                          "about 15x slower than cuDNN") and err.count("\n") == 1


def test_doctor_shows_the_facts_and_the_decision(monkeypatch, capsys):
    import dataclasses
    from dainet.__main__ import main
    facts = gs.CudaFacts(gpus=2, driver=(13, 0), nvcc="/usr/local/cuda/bin/nvcc", toolkit=(13, 0),
                         toolkit_home="/usr/local/cuda",
                         libs={n: gs.Library(n, "/p/include", "/p/lib", f"lib{n}.so.13", (9, 19, 1) if n == "cudnn" else ())
                               for n in (*gs.CUDA_LIBS, "cudnn")})
    stack = gs.decide(facts)
    monkeypatch.setattr(runtime, "_INFO", dataclasses.replace(
        runtime.configure(), cuda=True, gpu_route=stack.route, cuda_reason=stack.reason, gpu_notes=stack.notes,
        facts=runtime.describe(facts), jittor_overlay="/h/.cache/jittor/dainet/jittor-overlay"))
    assert main(["doctor", "--no-jittor"]) == 0
    out = capsys.readouterr().out
    assert "gpu_route      system\n" in out
    assert "cuda_reason    system CUDA 13.0 + cuDNN 9.19.1 (Jittor patched copy for it); driver CUDA 13.0, 2 GPU(s)" in out
    assert "  cudnn        /p/lib/libcudnn.so.13 (9.19.1, headers /p/include)\n" in out
    assert "  jittor_bundle none\n" in out and "note           NCCL not found" in out
    assert "jittor_overlay /h/.cache/jittor/dainet/jittor-overlay\n" in out


def test_doctor_install_fetches_jittors_cuda_bundle_only_for_a_gpu_without_a_usable_system_stack(monkeypatch, capsys):
    import dataclasses
    from dainet.__main__ import main
    calls = []
    monkeypatch.setattr(runtime, "install_system_packages", lambda: "skipped in the test")
    monkeypatch.setattr(runtime, "install_jittor_cuda", lambda: calls.append(1) or "installed (test)")
    monkeypatch.setattr(runtime, "_INFO_SET_BY_US", {})
    for route, error, wanted in (("jittor-conv", "", True), ("cpu", "1 GPU(s) found but ...", True),
                                 ("system", "", False), ("cpu", "", False), ("user", "", False)):
        calls.clear()
        info = dataclasses.replace(runtime.configure(), gpu_route=route, gpu_error=error)
        monkeypatch.setattr(runtime, "configure", lambda info=info: info)
        assert main(["doctor", "--install", "--no-jittor"]) == 0
        out = capsys.readouterr().out
        assert bool(calls) == wanted and ("Jittor CUDA bundle: installed (test)" in out) == wanted, route


def test_install_jittor_cuda_runs_jittors_installer_without_our_nvcc_path(monkeypatch):
    seen = {}

    def run(cmd, env, **kw):
        seen.update(cmd=cmd, env=env)
        return subprocess.CompletedProcess(cmd, 0, "nvcc is installed at /h/.cache/jittor/jtcuda/x/bin/nvcc\n", "")
    import subprocess
    monkeypatch.setenv("nvcc_path", "")
    assert runtime.install_jittor_cuda(run=run) == "installed (nvcc is installed at /h/.cache/jittor/jtcuda/x/bin/nvcc)"
    assert seen["cmd"][1:] == ["-m", "jittor_utils.install_cuda"] and "nvcc_path" not in seen["env"]


def test_importing_dainet_changes_nothing_until_jittor_is_imported():
    """Only ``dainet.jt`` (where Jittor is imported) configures the runtime: importing the
    package, the params and their schema, the formats or the evaluation leaves the
    environment, ``sys.path`` and ``sys.modules`` without Jittor."""
    import subprocess
    import sys
    # cv2 sets LD_LIBRARY_PATH when it loads (its own doing): imported before the snapshot
    code = ("import os, sys, cv2, numpy, scipy.io; env = dict(os.environ); path = list(sys.path); "
            "import dainet, dainet.schema, dainet.params, dainet.cli, dainet.formats.lists, dainet.evaluation, "
            "dainet.evaluation.compare, dainet.data.sample, dainet.data.prepare; "
            "assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items()); "
            "assert sys.path == path and 'jittor' not in sys.modules and 'dainet.jt' not in sys.modules; "
            "import dainet.jt; print('jittor' in sys.modules, dainet.runtime._INFO is not None)")
    env = {k: v for k, v in os.environ.items() if k not in ("nvcc_path", "use_mkl", *runtime.NUMERICS_VARS)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["True", "True"]


@pytest.mark.parametrize("env, mallopt, expect, calls", [
    ({}, "ok", "freed memory kept (glibc mmap threshold 1024 MiB, trim threshold 2 GiB)",
     [(runtime.M_MMAP_THRESHOLD, 1 << 30), (runtime.M_TRIM_THRESHOLD, (1 << 31) - 1)]),
    ({"MALLOC_TRIM_THRESHOLD_": "0"}, "ok", "set by user (MALLOC_TRIM_THRESHOLD_)", []),
    ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1"}, "ok", "set by user (GLIBC_TUNABLES)", []),
    ({}, None, "system default (no glibc mallopt)", []),
    ({}, "refuse", "partly system default (mallopt refused the mmap threshold)",
     [(runtime.M_MMAP_THRESHOLD, 1 << 30), (runtime.M_TRIM_THRESHOLD, (1 << 31) - 1)]),
])
def test_keep_freed_memory_decides(env, mallopt, expect, calls):
    seen = []

    def fake(param, value):
        seen.append((param, value))
        return 0 if mallopt == "refuse" and param == runtime.M_MMAP_THRESHOLD else 1
    assert runtime.keep_freed_memory(env, mallopt=lambda: None if mallopt is None else fake) == expect
    assert seen == calls


FAULTS = r"""
import ctypes, resource, sys
from dainet import runtime
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
if sys.argv[1] == "1":
    print(runtime.keep_freed_memory({}), file=sys.stderr)
size, faults = 64 << 20, []
for _ in range(3):   # what every convolution's reorder buffer does: malloc, fill, free
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(size); ctypes.memset(p, 1, size); libc.free(p)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(faults[-1])
"""


@pytest.mark.skipif(runtime.glibc_mallopt() is None, reason="glibc only")
def test_kept_memory_is_not_faulted_in_again():
    """A 64 MiB block freed and allocated again: with glibc's defaults every 4 KiB page is a
    fresh page fault each time; with keep_freed_memory the second block reuses the first's."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in runtime.MALLOC_VARS}
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    faults = {on: int(subprocess.run([sys.executable, "-c", FAULTS, on], env=env, capture_output=True,
                                     text=True, check=True).stdout) for on in ("0", "1")}
    assert faults["0"] > 0.9 * pages and faults["1"] < 0.01 * pages, faults
