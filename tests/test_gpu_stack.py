"""Which CUDA stack Jittor gets (dainet.gpu_stack), on fake machines: every branch of the
decision, the probes on fake driver libraries and file trees, the CUDA view and the
patched Jittor copy (on the real installed Jittor 1.3.11 too). No GPU needed."""
from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import pytest

from dainet import gpu_stack as gs
from dainet import runtime


# ------------------------------------------------------------------ fake machines

class FakeDriver:
    def __init__(self, init_rc=0, count=1, version=13000):
        self.init_rc, self.count, self.version = init_rc, count, version

    def cuInit(self, flags):
        return self.init_rc

    def cuDeviceGetCount(self, ptr):
        ctypes.cast(ptr, ctypes.POINTER(ctypes.c_int)).contents.value = self.count
        return 0

    def cuDriverGetVersion(self, ptr):
        ctypes.cast(ptr, ctypes.POINTER(ctypes.c_int)).contents.value = self.version
        return 0


def loader_for(lib):
    def load(name):
        assert name == "libcuda.so.1"
        if lib is None:
            raise OSError(f"{name}: cannot open shared object file")
        return lib
    return load


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def cudnn_header(major, minor=0, patch=0) -> str:
    return f"#define CUDNN_MAJOR {major}\n#define CUDNN_MINOR {minor}\n#define CUDNN_PATCHLEVEL {patch}\n"


def fake_toolkit(root: Path, release="13.0", libs=("cublas", "curand", "cufft", "cusparse")) -> Path:
    """root/cuda-<release>: bin/nvcc printing its release, include/, lib64/ with ``libs``."""
    home = root / f"cuda-{release}"
    nvcc = touch(home / "bin" / "nvcc", f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.1'\n")
    nvcc.chmod(0o755)
    touch(home / "include" / "cuda_runtime.h")
    touch(home / "lib64" / "libcudart.so")
    for name in libs:
        touch(home / "include" / gs.LIB_HEADERS[name])
        touch(home / "lib64" / f"lib{name}.so.13")
        touch(home / "lib64" / f"lib{name}.so")
    return home


def fake_pip_cudnn(site: Path, major=9, minor=19) -> Path:
    pkg = site / "nvidia" / "cudnn"
    touch(pkg / "include" / "cudnn.h")
    touch(pkg / "include" / "cudnn_version.h", cudnn_header(major, minor, 1))
    touch(pkg / "lib" / f"libcudnn.so.{major}")
    touch(pkg / "lib" / f"libcudnn_graph.so.{major}")
    return pkg


def lib(name, where="/usr/local/cuda", version=(), soname=None) -> gs.Library:
    return gs.Library(name, f"{where}/include", f"{where}/lib64", soname or f"lib{name}.so", version)


def facts(**kw) -> gs.CudaFacts:
    """A GPU machine with a driver for CUDA 13.0 and, unless replaced, a complete CUDA 12.4 + cuDNN 8."""
    base = dict(gpus=1, driver=(13, 0), driver_note="1 GPU(s), driver CUDA 13.0", nvcc="/usr/local/cuda/bin/nvcc",
                toolkit=(12, 4), toolkit_home="/usr/local/cuda",
                libs={n: lib(n) for n in gs.CUDA_LIBS} | {"cudnn": lib("cudnn", version=(8, 9, 7))})
    base.update(kw)
    return gs.CudaFacts(**base)


# ------------------------------------------------------------------ the decision, every branch

def test_no_gpu_is_the_cpu_without_an_error():
    stack = gs.decide(gs.CudaFacts(gpus=0, driver_note="no CUDA driver (libcuda.so.1)"))
    assert stack.route == "cpu" and not stack.cuda and not stack.error
    assert stack.reason == "no CUDA driver (libcuda.so.1)"


def test_a_complete_cuda_12_toolkit_with_cudnn_8_is_used_as_it_is():
    stack = gs.decide(facts())
    assert stack.route == "system" and stack.nvcc == "/usr/local/cuda/bin/nvcc"
    assert not stack.overlay and not stack.conv_opt and not stack.error
    assert stack.reason.startswith("system CUDA 12.4 + cuDNN 8.9.7")


def test_cuda_13_with_pip_cudnn_9_takes_the_patched_jittor_and_a_view():
    pip = "/venv/site-packages/nvidia"
    f = facts(toolkit=(13, 0), libs={n: lib(n, f"{pip}/cu13", soname=f"lib{n}.so.13") for n in gs.CUDA_LIBS}
              | {"cudnn": lib("cudnn", f"{pip}/cudnn", (9, 19, 1), "libcudnn.so.9")})
    stack = gs.decide(f)
    assert stack.route == "system" and stack.overlay and stack.view and not stack.conv_opt
    assert "CUDA 13.0 + cuDNN 9.19.1 (Jittor patched copy for it)" in stack.reason


def test_cudnn_9_alone_also_needs_the_patched_jittor():
    stack = gs.decide(facts(libs=facts().libs | {"cudnn": lib("cudnn", version=(9, 1, 0))}))
    assert stack.route == "system" and stack.overlay


def test_a_toolkit_newer_than_jittor_builds_falls_back_to_the_bundle():
    f = facts(toolkit=(14, 0), driver=(14, 0), bundle_nvcc="/h/.cache/jittor/jtcuda/cuda12.2_cudnn8_linux/bin/nvcc",
              bundle=(12, 2))
    stack = gs.decide(f)
    assert stack.route == "bundle" and stack.nvcc == f.bundle_nvcc and not stack.overlay
    assert "newer than Jittor 1.3.11 builds with" in stack.reason


def test_a_toolkit_newer_than_the_driver_is_not_used():
    stack = gs.decide(facts(driver=(12, 2)))    # toolkit 12.4 on a 12.2 driver
    assert stack.route == "cpu" and "needs a newer driver" in stack.error


def test_no_cudnn_prefers_the_bundle_to_jittors_own_convolutions():
    f = facts(libs={n: lib(n) for n in gs.CUDA_LIBS}, bundle_nvcc="/b/nvcc", bundle=(12, 2))
    stack = gs.decide(f)
    assert stack.route == "bundle" and "has no cuDNN" in stack.reason


def test_no_cudnn_and_no_bundle_uses_jittors_convolutions_with_their_cost():
    stack = gs.decide(facts(libs={n: lib(n) for n in gs.CUDA_LIBS}))
    assert stack.route == "jittor-conv" and stack.conv_opt and stack.cuda and not stack.error
    assert "15x slower than cuDNN" in stack.reason and "pip install nvidia-cudnn-cu12" in stack.reason


def test_a_bundle_the_driver_cannot_run_is_refused():
    f = facts(nvcc=None, toolkit=None, toolkit_home=None, libs={}, driver=(11, 8), bundle_nvcc="/b/nvcc",
              bundle=(12, 2))
    stack = gs.decide(f)
    assert stack.route == "cpu" and "bundle needs a newer driver" in stack.error


def test_a_gpu_without_any_usable_stack_names_what_to_install():
    stack = gs.decide(facts(nvcc=None, toolkit=None, toolkit_home=None, libs={}))
    assert stack.route == "cpu" and not stack.cuda
    assert stack.error.startswith("1 GPU(s) found but no CUDA stack Jittor can use (no system nvcc)")
    assert "python -m dainet doctor --install" in stack.error and "cuDNN" in stack.error


def test_a_toolkit_without_cublas_is_not_usable():
    stack = gs.decide(facts(libs={"curand": lib("curand")}))
    assert stack.route == "cpu" and "without cublas" in stack.error


def test_nccl_missing_is_a_note():
    assert gs.decide(facts()).notes and "NCCL" in gs.decide(facts()).notes[0]
    assert gs.decide(facts(libs=facts().libs | {"nccl": lib("nccl")})).notes == ()


# ------------------------------------------------------------------ probes

def test_probe_driver_on_fake_drivers():
    assert gs.probe_driver(loader_for(None)) == (0, None, "no CUDA driver (libcuda.so.1)")
    assert gs.probe_driver(loader_for(FakeDriver(init_rc=100)))[2] == "CUDA driver present but cuInit failed"
    assert gs.probe_driver(loader_for(FakeDriver(count=0)))[2] == "CUDA driver present but no GPU"
    assert gs.probe_driver(loader_for(FakeDriver(count=2, version=12040))) == (2, (12, 4), "2 GPU(s), driver CUDA 12.4")


def test_nvcc_release_parses_the_version_line(tmp_path):
    home = fake_toolkit(tmp_path, "13.0")
    assert gs.nvcc_release(str(home / "bin" / "nvcc")) == (13, 0)
    assert gs.nvcc_release(str(tmp_path / "missing")) is None


def test_probe_finds_the_toolkit_pip_cudnn_and_the_bundle(tmp_path):
    home = fake_toolkit(tmp_path, "13.0")
    site = tmp_path / "site"
    fake_pip_cudnn(site)
    touch(tmp_path / "h" / ".cache" / "jittor" / "jtcuda" / "cuda12.2_cudnn8_linux" / "bin" / "nvcc")
    f = gs.probe(tmp_path / "h", loader=loader_for(FakeDriver()), which=lambda _: str(home / "bin" / "nvcc"),
                 pip_paths=[site])
    assert (f.gpus, f.driver, f.toolkit, f.toolkit_home) == (1, (13, 0), (13, 0), str(home))
    assert set(f.libs) == {"cublas", "curand", "cufft", "cusparse", "cudnn"}
    assert f.libs["cudnn"].version == (9, 19, 1) and f.libs["cudnn"].soname == "libcudnn.so.9"
    assert f.libs["cublas"].lib == str(home / "lib64")
    assert f.bundle == (12, 2) and f.bundle_nvcc.endswith("cuda12.2_cudnn8_linux/bin/nvcc")
    stack = gs.decide(f)
    assert stack.route == "system" and stack.overlay and stack.view


def test_probe_without_a_gpu_looks_no_further(tmp_path):
    def which(_):
        raise AssertionError("no nvcc lookup without a GPU")
    f = gs.probe(tmp_path, loader=loader_for(FakeDriver(count=0)), which=which, pip_paths=[])
    assert f.gpus == 0 and f.libs == {}


def test_cudnn_headers_of_one_major_and_a_library_of_another_are_not_paired(tmp_path):
    pkg = fake_pip_cudnn(tmp_path / "site", major=9)
    (pkg / "lib" / "libcudnn.so.9").unlink()
    touch(pkg / "lib" / "libcudnn.so.8")
    assert gs.find_library("cudnn", None, gs.pip_nvidia_dirs([tmp_path / "site"])) is None


def test_a_header_without_its_library_is_not_found(tmp_path):
    touch(tmp_path / "nvidia" / "cu13" / "include" / "cublas_v2.h")
    assert gs.find_library("cublas", None, gs.pip_nvidia_dirs([tmp_path])) is None


# ------------------------------------------------------------------ materialise

def test_the_view_is_a_cuda_install_jittor_can_read(tmp_path):
    home = fake_toolkit(tmp_path, "13.0", libs=())
    site = tmp_path / "site"
    fake_pip_cudnn(site)
    cu13 = site / "nvidia" / "cu13"
    for name in gs.CUDA_LIBS:
        touch(cu13 / "include" / gs.LIB_HEADERS[name])
        touch(cu13 / "lib" / f"lib{name}.so.13")
    touch(cu13 / "include" / "cudalibxt.h")      # cufft.h includes it: the whole wheel folder is linked
    touch(cu13 / "lib" / "libcublasLt.so.13")
    f = gs.probe(tmp_path / "h", loader=loader_for(FakeDriver()), which=lambda _: str(home / "bin" / "nvcc"),
                 pip_paths=[site])
    env = {}
    paths = gs.materialise(gs.decide(f), f, env, tmp_path / "h", source=lambda: fake_jittor(tmp_path))
    view = Path(env["nvcc_path"]).parents[1]
    assert view.parent == tmp_path / "h" / ".cache" / "jittor" / "dainet"
    out = subprocess.run([env["nvcc_path"], "--version"], capture_output=True, text=True).stdout
    assert "release 13.0" in out                   # the wrapper runs the real nvcc
    for name in ("cuda_runtime.h", "cudnn.h", "cudnn_version.h", "cublas_v2.h", "cudalibxt.h"):
        assert (view / "include" / name).exists(), name
    for name in ("libcudart.so", "libcublas.so", "libcublasLt.so", "libcudnn.so", "libcudnn.so.9",
                 "libcudnn_graph.so.9", "libcurand.so"):
        assert (view / "lib64" / name).exists(), name
    assert os.path.realpath(view / "lib64" / "libcublas.so") == str(cu13 / "lib" / "libcublas.so.13")
    assert env["use_nccl"] == env["use_cutt"] == env["use_cutlass"] == "0"
    assert env["cache_name"] == gs.OVERLAY_CACHE_NAME and paths == [str(tmp_path / "h" / ".cache" / "jittor" /
                                                                        "dainet" / "jittor-overlay")]
    # built once: a second call reuses it
    env2 = {}
    gs.materialise(gs.decide(f), f, env2, tmp_path / "h", source=lambda: fake_jittor(tmp_path))
    assert env2["nvcc_path"] == env["nvcc_path"]


def test_nccl_from_a_wheel_is_used_through_the_view(tmp_path):
    f = facts(toolkit_home=str(fake_toolkit(tmp_path, "12.4")),
              libs=facts().libs | {"nccl": gs.Library("nccl", str(tmp_path / "nccl" / "include"),
                                                      str(tmp_path / "nccl" / "lib"), "libnccl.so.2")})
    f = gs.CudaFacts(**{**f.__dict__, "nvcc": str(Path(f.toolkit_home) / "bin" / "nvcc"),
                        "libs": {k: v for k, v in f.libs.items() if k in ("nccl",)} |
                        {n: gs.Library(n, str(Path(f.toolkit_home) / "include"), str(Path(f.toolkit_home) / "lib64"),
                                       f"lib{n}.so") for n in ("cublas", "curand")}})
    touch(tmp_path / "nccl" / "include" / "nccl.h")
    touch(tmp_path / "nccl" / "lib" / "libnccl.so.2")
    stack = gs.decide(f)
    assert stack.route == "jittor-conv" and stack.view    # no cuDNN here; nccl has no plain .so
    env = {}
    gs.materialise(stack, f, env, tmp_path / "h")
    view = Path(env["nvcc_path"]).parents[1]
    assert env["nccl_lib_path"] == str(view / "lib64") and (view / "lib64" / "libnccl.so").exists()
    assert env["conv_opt"] == "1" and "use_nccl" not in env


def test_the_cpu_route_switches_cuda_off_and_builds_nothing(tmp_path):
    env = {}
    assert gs.materialise(gs.GpuStack("cpu", "no GPU"), gs.CudaFacts(), env, tmp_path) == []
    assert env == {"nvcc_path": ""} and not (tmp_path / ".cache").exists()


def test_jittors_own_downloads_are_used_where_present(tmp_path):
    touch(tmp_path / ".cache" / "jittor" / "cutt" / "cutt-1.2" / "src" / "cutt.h")
    env = {}
    gs.materialise(gs.GpuStack("system", "", nvcc="/usr/local/cuda/bin/nvcc"), facts(), env, tmp_path)
    assert env["nvcc_path"] == "/usr/local/cuda/bin/nvcc"
    assert "use_cutt" not in env and env["use_cutlass"] == env["use_nccl"] == "0"


# ------------------------------------------------------------------ the patched Jittor copy

def fake_jittor(root: Path) -> Path:
    """A folder holding exactly the texts the overlay patches."""
    pkg = root / "fakejittor" / "jittor"
    if pkg.exists():
        return pkg
    touch(pkg / "__init__.py", "__version__ = '1.3.11.0'\n")
    for rel, _, old, _ in gs.OVERLAY_PATCHES:
        f = pkg / rel
        touch(f, (f.read_text() if f.exists() else "") + "before\n" + old + "after\n")
    touch(pkg / "extern" / "cuda" / "inc" / "helper_cuda.h",
          "cudaGetDeviceProperties(&deviceProp, devID);\nif (deviceProp.computeMode == 0) {}\n"
          "cudaGetDeviceProperties(&deviceProp, current_device);\nx = deviceProp.clockRate;\n")
    for rel in gs.CUDNN9_DROPPED:
        touch(pkg / rel)
    return pkg


def test_the_overlay_patches_a_copy_and_never_the_installed_jittor(tmp_path):
    source = fake_jittor(tmp_path)
    before = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    parent = gs.build_overlay(source, tmp_path / "cache", cudnn9=True)
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == before
    copy = parent / "jittor"
    for rel, _, old, new in gs.OVERLAY_PATCHES:
        assert new in (copy / rel).read_text()
    helper = (copy / "extern" / "cuda" / "inc" / "helper_cuda.h").read_text()
    assert "cudaDeviceGetAttribute(&v, cudaDevAttrComputeMode, devID)" in helper
    assert "cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, current_device)" in helper
    assert "deviceProp.clockRate" not in helper and "deviceProp.computeMode" not in helper
    assert not any((copy / rel).exists() for rel in gs.CUDNN9_DROPPED)
    assert "CUDA 13 removed cudaDeviceProp" in (copy / ".dainet-overlay").read_text()
    # the same inputs: kept; cuDNN 8: rebuilt in place, the RNN sources back
    mtime = (copy / ".dainet-overlay").stat().st_mtime_ns
    assert gs.build_overlay(source, tmp_path / "cache", cudnn9=True) == parent
    assert (copy / ".dainet-overlay").stat().st_mtime_ns == mtime
    assert gs.build_overlay(source, tmp_path / "cache", cudnn9=False) == parent
    assert all((parent / "jittor" / rel).exists() for rel in gs.CUDNN9_DROPPED)


def test_an_overlay_that_does_not_apply_names_the_file(tmp_path):
    source = fake_jittor(tmp_path)
    (source / "compiler.py").write_text("another version\n")
    with pytest.raises(gs.OverlayError, match=r"compiler.py: the CUDA 13 / cuDNN 9 patch .* jittor==1.3.11.0"):
        gs.build_overlay(source, tmp_path / "cache", cudnn9=True)
    assert not (tmp_path / "cache" / "jittor-overlay").exists()


def test_the_overlay_applies_to_the_installed_jittor(tmp_path):
    """Every patch finds its text exactly once in the Jittor that is installed (1.3.11.0)."""
    parent = gs.build_overlay(gs.installed_jittor(), tmp_path, cudnn9=True)
    assert (parent / "jittor" / "__init__.py").is_file()
    helper = (parent / "jittor" / "extern" / "cuda" / "inc" / "helper_cuda.h").read_text()
    assert helper.count("cudaDeviceGetAttribute(&v,") == 4


# ------------------------------------------------------------------ runtime.decide with the stack

def test_runtime_decide_records_the_stack_and_puts_the_overlay_path(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "jittor_home", lambda: tmp_path)
    seen = {}

    def materialise(stack, f, env, home):
        seen["stack"] = stack
        env["nvcc_path"] = stack.nvcc
        return ["/overlay"]
    env = {}
    info = runtime.decide(env, gpu=lambda: facts(toolkit=(13, 0)), onednn=lambda: (True, "ready"),
                          cpu=lambda: runtime.X86_64_V3_FLAGS, materialise=materialise)
    assert info.cuda and info.gpu_route == "system" and info.jittor_overlay == "/overlay"
    assert info.numerics == "native (CUDA machine)" and "cc_flags" not in env
    assert info.facts["system_nvcc"] == "/usr/local/cuda/bin/nvcc (CUDA 13.0)"
    assert info.facts["cudnn"].endswith("(8.9.7, headers /usr/local/cuda/include)")
    assert env["FIX_TORCH_ERROR"] == "0"


def test_a_failed_set_up_falls_back_to_the_cpu_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "jittor_home", lambda: tmp_path)

    def materialise(stack, f, env, home):
        if stack.cuda:
            raise gs.OverlayError("compiler.py: the patch does not apply")
        env["nvcc_path"] = ""
        return []
    env = {}
    info = runtime.decide(env, gpu=lambda: facts(toolkit=(13, 0)), onednn=lambda: (True, "ready"),
                          cpu=lambda: runtime.X86_64_V3_FLAGS, materialise=materialise)
    assert not info.cuda and env["nvcc_path"] == ""
    assert "set-up failed: compiler.py: the patch does not apply" in info.gpu_error


def test_jittor_home_follows_jittors_own_record(tmp_path, monkeypatch):
    """Jittor records the last JITTOR_HOME any process used in ~/.cache/jittor/config.json and
    uses it when the variable is unset; oneDNN and the overlay must go where Jittor looks."""
    monkeypatch.delenv("JITTOR_HOME", raising=False)
    assert runtime.jittor_home(tmp_path) == tmp_path
    touch(tmp_path / ".cache" / "jittor" / "config.json", '{"JITTOR_HOME": "/elsewhere"}')
    assert runtime.jittor_home(tmp_path) == Path("/elsewhere")
    monkeypatch.setenv("JITTOR_HOME", str(tmp_path / "mine"))
    assert runtime.jittor_home(tmp_path) == tmp_path / "mine"


def test_the_installed_jittor_is_never_the_patched_copy(tmp_path):
    """A second set-up in one process (doctor --install) has the copy first on sys.path:
    patching the copy again would fail or stack the patches."""
    parent = gs.build_overlay(fake_jittor(tmp_path), tmp_path / "cache", cudnn9=True)
    site = tmp_path / "site"
    touch(site / "jittor" / "__init__.py")
    assert gs.installed_jittor([str(parent), str(site)]) == site / "jittor"
    with pytest.raises(gs.OverlayError, match="jittor is not installed"):
        gs.installed_jittor([str(parent)])
