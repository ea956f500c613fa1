"""Jittor runtime set-up: the one place that decides CUDA and oneDNN before Jittor loads,
and the one device picker (:func:`use_device`).

:mod:`dainet.jt`, the one place ``dainet`` imports Jittor from, calls :func:`configure`
first; importing any other module changes nothing. Jittor reads its settings from
environment variables at import time, so they must be in place first:

* The CUDA stack (:mod:`dainet.gpu_stack`): with a GPU, a system toolkit with cuDNN, else
  Jittor's CUDA bundle, else Jittor's own convolutions, else the CPU with an error naming
  what to install; CUDA 13 / cuDNN 9 load through a patched copy of Jittor. Without a GPU
  ``nvcc_path=""``: Jittor otherwise finds ``nvcc`` on machines without a CUDA driver and
  crashes, or tries to download its own CUDA. NCCL, cutt and cutlass, which Jittor
  downloads at import, are used where present and switched off where not.
* oneDNN: Jittor downloads ``dnnl_lnx_2.2.0_cpu_gomp`` from the internet at first
  import. We put Debian's ``libdnnl`` (package ``libdnnl-dev``) where Jittor keeps
  that copy, so no download happens; without it, ``use_mkl=0`` (slow single-threaded
  convolutions) and one warning line when a stage picks the CPU (:func:`use_device`).
* Jittor's CPU kernels compiled for x86-64-v3 (AVX2 + FMA) on CPUs that have it, oneDNN left
  at its best instruction set, see :func:`pin_jittor_kernels`: with ``-march=native`` on an
  AVX-512 CPU Jittor's vectorised sums depend on buffer alignment, so a resumed run no
  longer repeats the uninterrupted one bit for bit (tests/test_resume.py, measured). Digits
  still differ between CPU models (docs/numerics.md).
* glibc's allocator told to keep freed memory (:func:`keep_freed_memory`): oneDNN allocates
  a fresh buffer for every layout reorder around every convolution, and by default each
  large buffer is new memory from the kernel, zeroed page by page (measured: the paper
  network's CPU step took 1.5x as long, docs/speed.md).

``python -m dainet doctor`` prints what was detected and decided (``--install`` also tries to
install ``libdnnl-dev`` and ``openmpi`` with apt when running as root, and Jittor's CUDA
bundle on a GPU machine without a usable system toolkit).
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, asdict, field
from pathlib import Path

from dainet import gpu_stack

ONEDNN_DIRNAME = "dnnl_lnx_2.2.0_cpu_gomp"  # the folder name Jittor 1.3.x looks for
SYSTEM_DNNL_LIBS = ("/usr/lib/x86_64-linux-gnu/libdnnl.so", "/usr/lib/aarch64-linux-gnu/libdnnl.so",
                    "/usr/lib/libdnnl.so", "/usr/local/lib/libdnnl.so")
SYSTEM_DNNL_HEADER_DIRS = ("/usr/include", "/usr/local/include")
APT_PACKAGES = ("libdnnl-dev", "openmpi-bin", "libopenmpi-dev")
NUMERICS_VARS = ("cc_flags", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA")
# x86-64-v3 = AVX2, FMA, BMI1/2, F16C, LZCNT ("abm"), MOVBE, XSAVE (/proc/cpuinfo names)
X86_64_V3_FLAGS = frozenset({"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "abm", "movbe", "xsave"})
PINNED_CC_FLAGS = "-march=x86-64-v3 -mtune=generic"   # appended after Jittor's -march=native: wins
PINNED_CACHE_NAME = "dainet_x86-64-v3"   # kernels built with other flags live in another cache
# glibc's malloc settings; a user who set any of these keeps the allocator as set
MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30   # blocks below 1 GiB come from the heap, and are reused when freed
TRIM_THRESHOLD = (1 << 31) - 1   # freed heap memory is not given back to the kernel


@dataclass
class RuntimeInfo:
    cuda: bool
    cuda_reason: str
    gpu_route: str        # system | bundle | jittor-conv | cpu | user (nvcc_path set by the user)
    onednn: bool
    onednn_reason: str
    jittor_home: str
    onednn_dir: str
    mpi: bool
    numerics: str
    malloc: str = ""      # what keep_freed_memory did (configure only; decide is pure)
    gpu_error: str = ""   # a GPU that cannot be used: what to install
    gpu_notes: tuple = ()
    jittor_overlay: str = ""   # the patched Jittor copy first on sys.path, if any
    facts: dict = field(default_factory=dict)   # what gpu_stack.probe found (doctor)


def jittor_home(user_home: Path | None = None) -> Path:
    """Where Jittor keeps ``.cache/jittor``, by Jittor's own rule: ``JITTOR_HOME``, else the
    ``JITTOR_HOME`` recorded in ``~/.cache/jittor/config.json`` (Jittor records there the
    last one any process ran with), else the user's home."""
    if os.environ.get("JITTOR_HOME"):
        return Path(os.environ["JITTOR_HOME"]).absolute()
    user_home = user_home or Path.home()
    try:
        recorded = json.loads((user_home / ".cache" / "jittor" / "config.json").read_text()).get("JITTOR_HOME")
    except (OSError, ValueError, AttributeError):
        recorded = None
    return Path(recorded) if recorded else user_home


def onednn_dir(home: Path | None = None) -> Path:
    return (home or jittor_home()) / ".cache" / "jittor" / "mkl" / ONEDNN_DIRNAME


def find_system_dnnl() -> tuple[Path, Path] | None:
    """(library, header dir) of a system oneDNN install, or None."""
    for lib in SYSTEM_DNNL_LIBS:
        if Path(lib).exists():
            for inc in SYSTEM_DNNL_HEADER_DIRS:
                if (Path(inc) / "dnnl.hpp").exists():
                    return Path(lib), Path(inc)
    return None


def prepare_onednn(target: Path | None = None, system=find_system_dnnl) -> tuple[bool, str]:
    """Make ``target`` look like Jittor's own oneDNN download, pointing at the system copy."""
    target = target or onednn_dir()
    lib = target / "lib" / "libmkldnn.so"
    if lib.exists() and (target / "include" / "dnnl.hpp").exists():
        return True, f"ready at {target}"
    found = system()
    if found is None:
        return False, "no oneDNN: install Debian's libdnnl-dev (python -m dainet doctor --install)"
    sys_lib, sys_inc = found
    (target / "lib").mkdir(parents=True, exist_ok=True)
    inc = target / "include"
    if not inc.exists():
        inc.mkdir()
        for hdr in list(sys_inc.glob("dnnl*.h*")) + [sys_inc / "oneapi"]:
            if hdr.exists():
                (inc / hdr.name).symlink_to(hdr)
    tmp = lib.with_suffix(".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(sys_lib)
    os.replace(tmp, lib)
    return True, f"linked {sys_lib} into {target}"


def install_system_packages(packages=APT_PACKAGES) -> str:
    """apt-get install the packages when root with apt; returns what happened."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "skipped (not root or no apt-get)"
    missing = [p for p in packages
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return "already installed"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    ok = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env,
                        capture_output=True).returncode == 0
    if not ok:  # package lists may be missing on a fresh machine
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        ok = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env,
                            capture_output=True).returncode == 0
    return ("installed " if ok else "failed to install ") + " ".join(missing)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset:
    """The instruction-set flags of the first CPU in ``cpuinfo`` (empty when unreadable)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def pin_jittor_kernels(env: dict, flags: frozenset, cuda: bool = False) -> str:
    """Compile Jittor's CPU kernels for x86-64-v3 (in a kernel cache of their own); returns
    the numerics in effect, as doctor prints them.

    Only on a CPU with every x86-64-v3 feature, only without CUDA (nvcc takes the same
    ``cc_flags`` and rejects ``-mtune``), and only when the user set none of
    :data:`NUMERICS_VARS`. oneDNN is not capped: its AVX-512 kernels keep resumed runs
    bit-identical (measured), and capping it at AVX2 cost 20 % of the paper step on a Xeon.
    """
    user = [v for v in NUMERICS_VARS if v in env]
    if user:
        return "set by user (" + ", ".join(user) + ")"
    if cuda:
        return "native (CUDA machine)"
    if not X86_64_V3_FLAGS <= flags:
        return "native (not an x86-64-v3 CPU)"
    env["cc_flags"] = PINNED_CC_FLAGS
    env.setdefault("cache_name", PINNED_CACHE_NAME)
    return f"Jittor kernels x86-64-v3 (cc_flags {PINNED_CC_FLAGS!r}), oneDNN native"


def glibc_mallopt():
    """glibc's ``mallopt`` through ctypes, or None where the C library has none (musl, macOS)."""
    try:
        fn = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def keep_freed_memory(env: dict, mallopt=glibc_mallopt) -> str:
    """Make glibc serve blocks below :data:`MMAP_THRESHOLD` from its heap and keep freed heap
    memory (up to :data:`TRIM_THRESHOLD`), for the rest of this process; returns what was
    done, as doctor prints it.

    Jittor keeps its own tensors in a caching allocator, but oneDNN reorders every
    convolution's input, output and gradients into a buffer it mallocs and frees on each
    call. glibc's default maps blocks of a few MiB and more afresh each time and unmaps them
    on free, so every call pays a page fault per 4 KiB: the paper network's 320² step took
    1.5x as long, the sample's 1.47x (bench/versus.py, bench/train_step.py, docs/speed.md).
    Memory use is the process's peak, which a training loop reaches every step anyway.
    Digits are unchanged: only where buffers live changes. Left alone when the user set one
    of :data:`MALLOC_VARS`.
    """
    user = [v for v in MALLOC_VARS if v in env]
    if user:
        return "set by user (" + ", ".join(user) + ")"
    fn = mallopt()
    if fn is None:
        return "system default (no glibc mallopt)"
    settings = {"mmap threshold": (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                "trim threshold": (M_TRIM_THRESHOLD, TRIM_THRESHOLD)}
    refused = [name for name, (param, value) in settings.items() if not fn(param, value)]
    if refused:
        return "partly system default (mallopt refused the " + ", ".join(refused) + ")"
    return (f"freed memory kept (glibc mmap threshold {MMAP_THRESHOLD >> 20} MiB, "
            f"trim threshold {(TRIM_THRESHOLD + 1) >> 30} GiB)")


def probe_gpu() -> gpu_stack.CudaFacts:
    return gpu_stack.probe(jittor_home())


def decide(env: dict, gpu=probe_gpu, onednn=prepare_onednn, cpu=cpu_flags,
           materialise=gpu_stack.materialise) -> RuntimeInfo:
    """Fill ``env`` with Jittor's variables; pure apart from the injected probes and
    ``materialise`` (which builds the CUDA view and the Jittor overlay in Jittor's cache),
    and, for ``os.environ`` only, noting which variables it set, for ``doctor --install``.

    Settings the user made explicitly (``nvcc_path``, ``use_mkl``, the numerics
    variables :data:`NUMERICS_VARS`) are respected.
    """
    before = set(env)
    facts, overlay = None, []
    if "nvcc_path" in env:
        stack = gpu_stack.GpuStack("user" if env["nvcc_path"] else "cpu", "nvcc_path set by user",
                                   nvcc=env["nvcc_path"])
    else:
        facts = gpu()
        stack = gpu_stack.decide(facts)
        try:
            overlay = materialise(stack, facts, env, jittor_home())
        except (gpu_stack.OverlayError, OSError) as exc:
            error = f"{stack.reason}, but its set-up failed: {exc}"
            stack = gpu_stack.GpuStack("cpu", error, error=error)
            overlay = materialise(stack, facts, env, jittor_home())
    if env.get("use_mkl") == "0":
        has_dnnl, dnnl_reason = False, "use_mkl=0 set by user"
    else:
        has_dnnl, dnnl_reason = onednn()
        if not has_dnnl:
            env["use_mkl"] = "0"
    numerics = pin_jittor_kernels(env, cpu(), stack.cuda)
    env.setdefault("log_silent", "1")  # Jittor's [i] lines drown progress bars
    env.setdefault("FIX_TORCH_ERROR", "0")   # else Jittor imports PyTorch when it is installed
    if env is os.environ:   # what doctor --install may undo before it detects again
        _INFO_SET_BY_US.update(dict.fromkeys(set(env) - before, True))
    return RuntimeInfo(cuda=stack.cuda, cuda_reason=stack.reason, gpu_route=stack.route, onednn=has_dnnl,
                       onednn_reason=dnnl_reason, jittor_home=str(jittor_home()),
                       onednn_dir=str(onednn_dir()), mpi=shutil.which("mpicc") is not None,
                       numerics=numerics, gpu_error=stack.error, gpu_notes=stack.notes,
                       jittor_overlay=overlay[0] if overlay else "",
                       facts=describe(facts) if facts is not None else {})


def describe(facts: gpu_stack.CudaFacts) -> dict:
    """The probed facts as doctor prints them."""
    def v(t):
        return ".".join(map(str, t)) if t else "none"
    out = {"gpus": facts.gpus, "driver_cuda": v(facts.driver)}
    if facts.gpus:
        out["system_nvcc"] = f"{facts.nvcc} (CUDA {v(facts.toolkit)})" if facts.nvcc else "none"
        for name in (*gpu_stack.CUDA_LIBS, "cudnn", "nccl"):
            lib = facts.libs.get(name)
            out[name] = (f"{lib.lib}/{lib.soname}" + (f" ({v(lib.version)}, headers {lib.include})"
                                                      if lib.version else "")) if lib else "none"
        out["jittor_bundle"] = f"{facts.bundle_nvcc} (CUDA {v(facts.bundle)})" if facts.bundle_nvcc else "none"
    return out


_INFO: RuntimeInfo | None = None
_INFO_SET_BY_US: dict = {}


def configure() -> RuntimeInfo:
    """Set Jittor's environment once per process, before Jittor is imported."""
    global _INFO
    if _INFO is None:
        if "jittor" in sys.modules:
            print("dainet.runtime: warning: jittor was imported before dainet; "
                  "CUDA/oneDNN settings may not apply", file=sys.stderr)
        _INFO = decide(os.environ)
        _INFO.malloc = keep_freed_memory(os.environ)
        if _INFO.jittor_overlay and _INFO.jittor_overlay not in sys.path:
            sys.path.insert(0, _INFO.jittor_overlay)   # the patched Jittor copy (gpu_stack)
    return _INFO


_WARNED: list = []


def warn_if_slow() -> None:
    """One stderr line each, once per process: oneDNN not found (not when the user set
    ``use_mkl=0``); a GPU that cannot be used (what to install); Jittor's own convolutions
    (no cuDNN, with their measured cost). Said where Jittor is about to work
    (:func:`use_device`), not at import: ``python -m dainet doctor --install`` imports
    dainet before it installs what is missing."""
    info = configure()
    lines = []
    if not info.onednn and _INFO_SET_BY_US.get("use_mkl"):
        lines.append(f"{info.onednn_reason}; CPU convolutions will be slow")
    if info.gpu_error:
        lines.append(f"{info.gpu_error}; using the CPU")
    if info.gpu_route == "jittor-conv":
        lines.append(info.cuda_reason)
    for line in lines:
        if line not in _WARNED:
            _WARNED.append(line)
            print(f"dainet: warning: {line}", file=sys.stderr)


DEVICES = ("auto", "cpu", "cuda")   # params train.device


def use_device(device: str = "auto") -> str:
    """Point Jittor at CUDA or the CPU and return which: ``cuda`` when asked for (a
    UserError when no usable GPU was found), ``auto`` when Jittor found one, else ``cpu``.

    The one device picker of every stage; call it after :func:`configure` (import
    :mod:`dainet` first), it imports Jittor.
    """
    from dainet.jt import jt

    from dainet.errors import UserError

    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda" and not jt.has_cuda:
        info = configure()
        raise UserError("params train.device is 'cuda' but no usable GPU was found: "
                        f"{info.gpu_error or info.cuda_reason} (python -m dainet doctor)")
    jt.flags.use_cuda = int(device == "cuda" or (device == "auto" and bool(jt.has_cuda)))
    warn_if_slow()
    return "cuda" if jt.flags.use_cuda else "cpu"


def install_jittor_cuda(run=subprocess.run) -> str:
    """Jittor's CUDA 12.2 + cuDNN 8 bundle (``python -m jittor_utils.install_cuda``; it needs
    the network and a driver for CUDA >= 12.2 to be of use here)."""
    env = {k: v for k, v in os.environ.items() if k != "nvcc_path"}   # "" would make it do nothing
    r = run([sys.executable, "-m", "jittor_utils.install_cuda"], env=env, capture_output=True, text=True)
    tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]
    return ("installed" if r.returncode == 0 else "failed") + f" ({tail[0][-200:]})"


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m dainet doctor", description=__doc__.split("\n")[0])
    ap.add_argument("--install", action="store_true",
                    help="apt-get install libdnnl-dev and openmpi (root only), then prepare oneDNN; "
                         "on a GPU machine without a usable system CUDA, install Jittor's CUDA bundle")
    ap.add_argument("--no-jittor", action="store_true", help="do not import Jittor (skip compile)")
    args = ap.parse_args(argv)
    global _INFO
    if args.install:
        print("system packages:", install_system_packages())
        if configure().gpu_route not in ("system", "user", "cpu") or configure().gpu_error:
            print("Jittor CUDA bundle:", install_jittor_cuda())
        _INFO = None  # re-detect: oneDNN or CUDA may have just been installed
        for var in list(_INFO_SET_BY_US):   # what we set is not "set by user" the second time
            os.environ.pop(var, None)
        _INFO_SET_BY_US.clear()
    info = configure()
    for key, val in asdict(info).items():
        if key == "facts":
            for fact, found in val.items():
                print(f"  {fact:12s} {found}")
        elif key == "gpu_notes":
            for note in val:
                print(f"{'note':14s} {note}")
        else:
            print(f"{key:14s} {val}")
    if not args.no_jittor:
        from dainet.jt import jt
        print(f"{'jittor':14s} {jt.__version__} ({Path(jt.__file__).parent})")
        print(f"{'cache_path':14s} {jt.compiler.cache_path}")
        print(f"{'use_cuda':14s} {bool(jt.has_cuda)}")
        print(f"{'cudnn_ops':14s} {jt.compile_extern.cudnn_ops is not None}")
        print(f"{'mkl_ops':14s} {jt.compile_extern.mkl_ops is not None}")
        print(f"{'mpi_ops':14s} {jt.compile_extern.mpi_ops is not None}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
