"""Which CUDA stack Jittor 1.3.11 loads, decided from the machine before Jittor imports.

Part of :mod:`dainet.runtime` (the one place Jittor's environment is set). Three jobs, each
testable on a fake machine:

* :func:`probe` reads the facts (:class:`CudaFacts`): the driver's CUDA version and GPU
  count (``libcuda.so.1``), a system ``nvcc`` and its version, cuDNN (version from
  ``cudnn_version.h``, headers and ``libcudnn.so.<major>``), the CUDA libraries Jittor links
  (cuBLAS, cuRAND, cuFFT, cuSPARSE) and NCCL, wherever they are: the toolkit, the system
  library folders, or NVIDIA's pip wheels (``site-packages/nvidia/...``, what a PyTorch
  install brings), and Jittor's own CUDA bundle in its cache (``jtcuda``).
* :func:`decide` picks, in this order: a usable system toolkit with cuDNN; Jittor's bundle;
  a system toolkit without cuDNN (Jittor's own convolutions, ``conv_opt=1``, much slower);
  else the CPU, with :attr:`GpuStack.error` naming what to install.
* :func:`materialise` makes the pick loadable: a *CUDA view* (a folder laid out like a CUDA
  install, symlinks to the toolkit and to the libraries found elsewhere, with a one-line
  ``nvcc`` that runs the real one: Jittor derives every include and library path from
  ``nvcc``'s folder) and, for CUDA >= 13 or cuDNN >= 9, which stock Jittor 1.3.11 cannot build,
  a patched *copy* of the installed Jittor (:data:`OVERLAY_PATCHES`). The installed Jittor
  is never modified; both folders live in Jittor's cache (``dainet/``) and deleting them
  undoes everything.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import os
import re
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Jittor 1.3.11 builds with CUDA toolkits up to 12.x as shipped, and 13.x with the overlay.
NEWEST_TOOLKIT = (13, 99)
OVERLAY_FROM_TOOLKIT = (13, 0)
OVERLAY_FROM_CUDNN = 9
CUDA_LIBS = ("cublas", "curand", "cufft", "cusparse")   # what Jittor's setup_cuda_extern links
REQUIRED_LIBS = ("cublas", "curand")                    # enough for Jittor's own convolutions
LIB_HEADERS = {"cublas": "cublas_v2.h", "curand": "curand.h", "cufft": "cufft.h",
               "cusparse": "cusparse.h", "cudnn": "cudnn.h", "nccl": "nccl.h"}
SYSTEM_INCLUDE_DIRS = ("/usr/include", "/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu")
SYSTEM_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
# Measured (issue 22, H200, CUDA 13, Jittor without cuDNN): the paper network's forward alone at
# 640x640, batch 4 took 3.1 s (1.3 images/s) against 0.21 s for the reference's whole cuDNN step.
CONV_OPT_COST = ("Jittor's own convolutions are about 15x slower than cuDNN (measured: the "
                 "paper network's forward alone 1.3 images/s, the reference's whole step 18.9)")


@dataclass(frozen=True)
class Library:
    """One CUDA library found on the machine: its header and library folders, the library
    file found, and (cuDNN only) the version its headers state."""
    name: str
    include: str
    lib: str
    soname: str          # the file name found, e.g. libcublas.so.13
    version: tuple = ()  # cuDNN only: (major, minor, patch)


@dataclass(frozen=True)
class CudaFacts:
    """What :func:`probe` found; every field can be faked in tests."""
    gpus: int = 0
    driver: tuple | None = None        # the CUDA version the driver runs, e.g. (13, 0)
    driver_note: str = "no CUDA driver (libcuda.so.1)"
    nvcc: str | None = None            # the system nvcc
    toolkit: tuple | None = None       # its release, e.g. (13, 0)
    toolkit_home: str | None = None    # the folder holding bin/nvcc, include/, lib64/
    libs: dict = field(default_factory=dict)   # name -> Library (cublas ... cudnn, nccl)
    bundle_nvcc: str | None = None     # Jittor's jtcuda bundle, if installed
    bundle: tuple | None = None        # its CUDA release


@dataclass(frozen=True)
class GpuStack:
    """The decision. ``route``: ``system`` | ``bundle`` | ``jittor-conv`` | ``cpu``."""
    route: str
    reason: str
    nvcc: str = ""                     # what Jittor's nvcc_path becomes ("" = CPU)
    overlay: bool = False              # load the patched Jittor copy (CUDA >= 13 or cuDNN >= 9)
    view: bool = False                 # Jittor needs a CUDA view (libraries outside the toolkit)
    conv_opt: bool = False             # no cuDNN: Jittor's own convolutions
    error: str = ""                    # for a GPU that cannot be used: what to install
    notes: tuple = ()                  # optional parts skipped (NCCL, cutt, cutlass)

    @property
    def cuda(self) -> bool:
        return self.route != "cpu"


# ---------------------------------------------------------------------------- probes

def probe_driver(loader=ctypes.CDLL) -> tuple[int, tuple | None, str]:
    """``(GPU count, driver CUDA version, note)`` from ``libcuda.so.1``."""
    try:
        lib = loader("libcuda.so.1")
    except OSError:
        return 0, None, "no CUDA driver (libcuda.so.1)"
    try:
        if lib.cuInit(0) != 0:
            return 0, None, "CUDA driver present but cuInit failed"
        count, version = ctypes.c_int(0), ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
            return 0, None, "CUDA driver present but no GPU"
        lib.cuDriverGetVersion(ctypes.byref(version))
    except (AttributeError, OSError) as exc:  # a fake or broken driver
        return 0, None, f"CUDA driver unusable: {exc}"
    v = version.value
    return count.value, (v // 1000, v % 1000 // 10), f"{count.value} GPU(s), driver CUDA {v // 1000}.{v % 1000 // 10}"


def nvcc_release(nvcc: str, run=subprocess.run) -> tuple | None:
    """``(major, minor)`` from ``nvcc --version`` ("release 13.0, V13.0.88"), None if it fails."""
    try:
        out = run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def find_nvcc(which=shutil.which) -> str | None:
    found = which("nvcc")
    if found:
        return found
    return "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None


def toolkit_home(nvcc: str) -> Path:
    """The CUDA install an nvcc belongs to (symlinks such as /usr/local/bin/nvcc resolved)."""
    return Path(os.path.realpath(nvcc)).parent.parent


def pip_nvidia_dirs(paths=None) -> list[Path]:
    """The ``nvidia/<package>`` folders of NVIDIA's pip wheels on this Python's path."""
    roots = list(paths) if paths is not None else [*sys.path, *site.getsitepackages()]
    seen, out = set(), []
    for root in roots:
        base = Path(root) / "nvidia"
        if base.is_dir() and base.resolve() not in seen:
            seen.add(base.resolve())
            out.extend(sorted(p for p in base.iterdir() if p.is_dir()))
    return out


def _first_lib(name: str, dirs) -> tuple[str, str] | None:
    """``(folder, file)`` of the newest ``lib<name>.so[.N]`` in the first folder holding one."""
    pattern = re.compile(rf"^lib{name}\.so(\.\d+)*$")
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        files = sorted((f.name for f in d.iterdir() if pattern.match(f.name)),
                       key=lambda n: [int(x) for x in n.split(".so")[1].split(".") if x])
        if files:
            return str(d), files[-1]
    return None


def cudnn_version(include: Path) -> tuple | None:
    """(major, minor, patch) from ``cudnn_version.h`` (cuDNN >= 8) or ``cudnn.h``."""
    for name in ("cudnn_version.h", "cudnn.h"):
        f = include / name
        if f.is_file():
            text = f.read_text(errors="replace")
            nums = [re.search(rf"#define\s+CUDNN_{k}\s+(\d+)", text) for k in ("MAJOR", "MINOR", "PATCHLEVEL")]
            if all(nums):
                return tuple(int(m.group(1)) for m in nums)
    return None


def find_library(name: str, home: Path | None, pip_dirs: list[Path]) -> Library | None:
    """A library with its header beside it: the toolkit first, then the system folders, then
    pip wheels. For cuDNN the library must be the headers' major version (``libcudnn.so.9``)."""
    places = []
    if home is not None:
        places.append((home / "include", [home / "lib64", home / "lib"]))
    places += [(Path(i), [Path(d) for d in SYSTEM_LIB_DIRS]) for i in SYSTEM_INCLUDE_DIRS]
    places += [(p / "include", [p / "lib"]) for p in pip_dirs]
    for include, lib_dirs in places:
        if not (include / LIB_HEADERS[name]).is_file():
            continue
        version = cudnn_version(include) if name == "cudnn" else ()
        if name == "cudnn":
            if not version:
                continue
            lib_dirs = [d for d in lib_dirs if (d / f"libcudnn.so.{version[0]}").exists()]
        found = _first_lib(name, lib_dirs)
        if found is not None:
            return Library(name, str(include), found[0], found[1], version)
    return None


def find_bundle(home: Path) -> tuple[str, tuple] | None:
    """Jittor's CUDA bundle (``python -m jittor_utils.install_cuda``): (nvcc, release)."""
    root = home / ".cache" / "jittor" / "jtcuda"
    if not root.is_dir():
        return None
    for folder in sorted(root.iterdir(), reverse=True):
        m = re.match(r"^cuda(\d+)\.(\d+)_cudnn\d+_linux$", folder.name)
        if m and (folder / "bin" / "nvcc").is_file():
            return str(folder / "bin" / "nvcc"), (int(m.group(1)), int(m.group(2)))
    return None


def probe(home: Path, loader=ctypes.CDLL, which=shutil.which, run=subprocess.run,
          pip_paths=None) -> CudaFacts:
    """Read the machine. Cheap without a GPU: nothing past the driver is probed then."""
    gpus, driver, note = probe_driver(loader)
    if not gpus:
        return CudaFacts(gpus=0, driver=None, driver_note=note)
    nvcc = find_nvcc(which)
    release = nvcc_release(nvcc, run) if nvcc else None
    home_dir = toolkit_home(nvcc) if nvcc else None
    pip_dirs = pip_nvidia_dirs(pip_paths)
    libs = {}
    for name in (*CUDA_LIBS, "cudnn", "nccl"):
        found = find_library(name, home_dir, pip_dirs)
        if found is not None:
            libs[name] = found
    bundle = find_bundle(home)
    return CudaFacts(gpus=gpus, driver=driver, driver_note=note, nvcc=nvcc, toolkit=release,
                     toolkit_home=str(home_dir) if home_dir else None, libs=libs,
                     bundle_nvcc=bundle[0] if bundle else None, bundle=bundle[1] if bundle else None)


# ---------------------------------------------------------------------------- the decision

def _v(t) -> str:
    return ".".join(map(str, t))


def decide(facts: CudaFacts) -> GpuStack:
    """The stack for these facts, in the order: system toolkit with cuDNN, Jittor's bundle,
    system toolkit without cuDNN (Jittor's own convolutions), CPU with an error."""
    if not facts.gpus:
        return GpuStack("cpu", facts.driver_note)
    problems = []
    system_ok = False
    if facts.nvcc is None:
        problems.append("no system nvcc")
    elif facts.toolkit is None:
        problems.append(f"{facts.nvcc} does not report its release")
    elif facts.toolkit > NEWEST_TOOLKIT:
        problems.append(f"system CUDA {_v(facts.toolkit)} is newer than Jittor 1.3.11 builds with (<= 13.x)")
    elif facts.driver < facts.toolkit:
        problems.append(f"system CUDA {_v(facts.toolkit)} needs a newer driver (it runs CUDA {_v(facts.driver)})")
    else:
        missing = [n for n in REQUIRED_LIBS if n not in facts.libs]
        if missing:
            problems.append(f"system CUDA {_v(facts.toolkit)} without {', '.join(missing)}")
        else:
            system_ok = True
    home = Path(facts.toolkit_home) if facts.toolkit_home else None
    cudnn = facts.libs.get("cudnn")
    if system_ok and cudnn is not None:
        overlay = facts.toolkit >= OVERLAY_FROM_TOOLKIT or (cudnn.version or (0,))[0] >= OVERLAY_FROM_CUDNN
        view = _needs_view(facts, home)
        how = " (Jittor patched copy for it)" if overlay else ""
        return GpuStack("system", f"system CUDA {_v(facts.toolkit)} + cuDNN {_v(cudnn.version)}{how}; "
                        f"driver CUDA {_v(facts.driver)}, {facts.gpus} GPU(s)", nvcc=facts.nvcc,
                        overlay=overlay, view=view, notes=_notes(facts))
    if system_ok:
        problems.append(f"system CUDA {_v(facts.toolkit)} has no cuDNN (headers and libcudnn)")
    if facts.bundle_nvcc is not None:
        if facts.driver >= facts.bundle:
            return GpuStack("bundle", f"Jittor's CUDA {_v(facts.bundle)} bundle (" + "; ".join(problems) + ")",
                            nvcc=facts.bundle_nvcc, notes=_notes(facts))
        problems.append(f"Jittor's CUDA {_v(facts.bundle)} bundle needs a newer driver")
    if system_ok:
        overlay = facts.toolkit >= OVERLAY_FROM_TOOLKIT
        return GpuStack("jittor-conv", f"system CUDA {_v(facts.toolkit)} without cuDNN: {CONV_OPT_COST}; "
                        "install cuDNN (e.g. pip install nvidia-cudnn-cu"
                        f"{facts.toolkit[0]}) or Jittor's bundle (python -m dainet doctor --install)",
                        nvcc=facts.nvcc, overlay=overlay, view=_needs_view(facts, home), conv_opt=True,
                        notes=_notes(facts))
    error = (f"{facts.gpus} GPU(s) found but no CUDA stack Jittor can use (" + "; ".join(problems) + "): "
             "run `python -m dainet doctor --install` (downloads Jittor's CUDA 12.2 + cuDNN 8 bundle) "
             "or install a CUDA 12/13 toolkit with cuBLAS, cuRAND and cuDNN")
    return GpuStack("cpu", error, error=error)


def _needs_view(facts: CudaFacts, home: Path | None) -> bool:
    """True when Jittor would not find a library by itself: it links ``lib<name>.so`` from
    the toolkit's ``lib64`` or the system folders, with headers from the toolkit's ``include``
    or ``/usr/include`` (a pip wheel's ``libcublas.so.13`` is neither)."""
    for lib in facts.libs.values():
        inside = home is not None and Path(lib.include).resolve() == (home / "include").resolve()
        if not (inside or lib.include == "/usr/include"):
            return True
        if not (Path(lib.lib) / f"lib{lib.name}.so").exists():
            return True
    return False


def _notes(facts: CudaFacts) -> tuple:
    return () if "nccl" in facts.libs else ("NCCL not found: multi-GPU all-reduce goes through MPI "
                                            "(pip install nvidia-nccl-cu<N> for NCCL)",)


# ---------------------------------------------------------------------------- materialise

def cache_root(home: Path) -> Path:
    return home / ".cache" / "jittor" / "dainet"


def _digest(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def _link_all(src: Path, dst: Path, *, only=None) -> None:
    """Symlink every entry of ``src`` into ``dst`` that ``dst`` does not have yet."""
    if not src.is_dir():
        return
    for entry in sorted(src.iterdir()):
        if only is not None and not only(entry.name):
            continue
        target = dst / entry.name
        if not target.exists() and not target.is_symlink():
            target.symlink_to(entry.resolve() if entry.is_symlink() else entry)


def build_view(facts: CudaFacts, root: Path) -> Path:
    """A CUDA-install-shaped folder for Jittor: ``bin/nvcc`` runs the system nvcc;
    ``include/`` and ``lib64/`` hold the toolkit's entries and every library found
    elsewhere (with plain ``lib<name>.so`` names, which Jittor links by). Rebuilt
    atomically when the facts change; returns the view's nvcc."""
    libs = sorted((n, lib.include, lib.lib, lib.soname) for n, lib in facts.libs.items())
    view = root / f"cuda-view-{_digest(facts.nvcc, facts.toolkit, libs)}"
    nvcc = view / "bin" / "nvcc"
    if nvcc.is_file():
        return nvcc
    tmp = root / f".{view.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    (tmp / "include").mkdir()
    (tmp / "lib64").mkdir()
    real = os.path.realpath(facts.nvcc)
    (tmp / "bin" / "nvcc").write_text(f'#!/bin/sh\n# dainet CUDA view: the system nvcc\nexec "{real}" "$@"\n')
    (tmp / "bin" / "nvcc").chmod(0o755)
    home = Path(facts.toolkit_home)
    _link_all(home / "include", tmp / "include")
    _link_all(home / "lib64", tmp / "lib64")
    for name, lib in sorted(facts.libs.items()):
        # a system folder is searched by the compiler and Jittor anyway: only this library's
        # files from there; a wheel's folder holds its package alone (cufft.h needs cudalibxt.h)
        system = lib.include in SYSTEM_INCLUDE_DIRS
        _link_all(Path(lib.include), tmp / "include", only=(lambda f, n=name: f.startswith(n)) if system else None)
        _link_all(Path(lib.lib), tmp / "lib64",
                  only=lambda f, n=name, s=lib.lib in SYSTEM_LIB_DIRS: f.startswith(f"lib{n}" if s else "lib"))
        # plain names, which Jittor links by (cuBLAS needs its cublasLt beside it)
        for plain in [name] + (["cublasLt"] if name == "cublas" else []):
            found = _first_lib(plain, [lib.lib])
            target = tmp / "lib64" / f"lib{plain}.so"
            if found and not target.exists():
                target.symlink_to(Path(found[0]) / found[1])
    try:
        os.replace(tmp, view)
    except OSError:           # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)
    return nvcc


# The overlay: a patched copy of the installed Jittor 1.3.11 for CUDA >= 13 / cuDNN >= 9.
# Each patch is (file, what it fixes, old text, new text); a patch whose old text is not
# found exactly once stops the set-up with the file named (another Jittor version).
_CUDNN9_SUBLIBS_OLD = '            if nvcc_version >= (11,0,0):\n                libs = ["libcudnn_ops_infer.so"'
_CUDNN9_SUBLIBS_NEW = ('            # dainet overlay: cuDNN 9 (libcudnn_graph) loads its own sub-libraries\n'
                       '            if nvcc_version >= (11,0,0) and not os.path.exists(os.path.join('
                       'os.path.dirname(culib_path), "libcudnn_graph.so.9")):\n'
                       '                libs = ["libcudnn_ops_infer.so"')
_NPP_OLD = "#include <npp.h>\n"
_NPP_NEW = """#if __has_include(<npp.h>)
#include <npp.h>
#else  // dainet overlay: a toolkit without NPP; its integer limits, as npp.h defines them
#define NPP_MIN_32U ( 0 )
#define NPP_MAX_32U ( 4294967295U )
#define NPP_MIN_32S (-2147483647 - 1 )
#define NPP_MAX_32S ( 2147483647 )
#define NPP_MIN_64U ( 0 )
#define NPP_MAX_64U ( 18446744073709551615ULL )
#define NPP_MIN_64S (-9223372036854775807LL - 1)
#define NPP_MAX_64S ( 9223372036854775807LL )
#endif
"""
_STD_OLD = '        nvcc_flags = nvcc_flags.replace("-Wall", "")\n'
_STD_NEW = ('        nvcc_flags = nvcc_flags.replace("-std=c++14", "-std=c++17")  # dainet overlay: CUDA 13 CCCL\n'
            + _STD_OLD)
_WHERE_OLD = ("    cub::CountingInputIterator<To> counting_itr(0);\n"
              "    cub::TransformInputIterator<bool, NonZeroOp<Ti>, Ti*> itr(cond->ptr<Ti>(), NonZeroOp<Ti>());\n")
_WHERE_NEW = ("    thrust::counting_iterator<To> counting_itr(0);  // dainet overlay: CCCL 3 iterators\n"
              "    thrust::transform_iterator<NonZeroOp<Ti>, Ti*, bool> itr(cond->ptr<Ti>(), NonZeroOp<Ti>());\n")
_WHERE_INC_OLD = "#include <thrust/transform.h>\n"
_WHERE_INC_NEW = ("#include <thrust/transform.h>\n#include <thrust/iterator/counting_iterator.h>\n"
                  "#include <thrust/iterator/transform_iterator.h>\n")
OVERLAY_PATCHES = (
    ("compiler.py", "CUDA 13's CCCL (thrust, cub) needs C++17; Jittor passes -std=c++14 to nvcc",
     _STD_OLD, _STD_NEW),
    ("compile_extern.py", "cuDNN 9 has no libcudnn_{ops,cnn}_{infer,train}.so (Jittor issue #666)",
     _CUDNN9_SUBLIBS_OLD, _CUDNN9_SUBLIBS_NEW),
    ("src/misc/cuda_limits.h", "npp.h is optional in CUDA installs (only its integer limits are used)",
     _NPP_OLD, _NPP_NEW),
    ("other/code_softmax.py", "CCCL 3 removed cub::Max (softmax's block reduction)",
     "Reduce(v1, cub::Max())", "Reduce(v1, [](float a, float b) {{ return (a < b) ? b : a; }})"),
    ("extern/cuda/cub/ops/cub_where_op.cc", "CCCL 3 removed cub::CountingInputIterator and "
     "cub::TransformInputIterator (jt.where, boolean indexing)", _WHERE_OLD, _WHERE_NEW),
    ("extern/cuda/cub/ops/cub_where_op.cc", "the thrust iterators' headers", _WHERE_INC_OLD, _WHERE_INC_NEW),
)
# CUDA 13 removed these cudaDeviceProp fields; helper_cuda.h's device pickers read them
_PROP_FIELDS = {"computeMode": "cudaDevAttrComputeMode", "clockRate": "cudaDevAttrClockRate"}
# cuDNN 9 removed the RNN API these sources call; DAI-Net has no RNN (jt.nn.RNN on CUDA then fails)
CUDNN9_DROPPED = ("extern/cuda/cudnn/ops/cudnn_rnn_op.cc", "extern/cuda/cudnn/ops/cudnn_rnn_op.h",
                  "extern/cuda/cudnn/ops/cudnn_rnn_backward_x_op.cc", "extern/cuda/cudnn/ops/cudnn_rnn_backward_x_op.h",
                  "extern/cuda/cudnn/src/cudnn_rnn_descriptor.cc", "extern/cuda/cudnn/inc/cudnn_rnn_descriptor.h")


OVERLAY_CACHE_NAME = "dainet_cuda_overlay"


class OverlayError(RuntimeError):
    """The installed Jittor is not the one the overlay's patches were written for."""


def patch_helper_cuda(text: str) -> str:
    """Read the removed ``cudaDeviceProp`` fields with ``cudaDeviceGetAttribute`` on the
    device of the nearest ``cudaGetDeviceProperties(&deviceProp, <device>)`` above."""
    def read_attribute(m):
        calls = re.findall(r"cudaGetDeviceProperties\(&deviceProp,\s*(\w+)\)", text[:m.start()])
        if not calls:
            raise OverlayError("helper_cuda.h: deviceProp read before any cudaGetDeviceProperties")
        return (f"([&] {{ int v = 0; cudaDeviceGetAttribute(&v, {_PROP_FIELDS[m.group(1)]}, {calls[-1]}); "
                "return v; }())")
    out, n = re.subn(r"deviceProp\.(" + "|".join(_PROP_FIELDS) + r")\b", read_attribute, text)
    if n == 0:
        raise OverlayError("extern/cuda/inc/helper_cuda.h: no cudaDeviceProp field to replace")
    return out


def installed_jittor(paths=None) -> Path:
    """The installed ``jittor`` package folder, found without importing it; never a patched
    copy (a second set-up in one process, e.g. ``doctor --install``, has one on sys.path)."""
    search = [p for p in (sys.path if paths is None else paths)
              if not (Path(p or ".") / "jittor" / ".dainet-overlay").exists()]
    spec = importlib.machinery.PathFinder.find_spec("jittor", search)
    if spec is None or not spec.submodule_search_locations:
        raise OverlayError("jittor is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def build_overlay(source: Path, root: Path, cudnn9: bool) -> Path:
    """A patched copy of the Jittor package at ``source``; returns the folder to put first
    on ``sys.path`` (it holds ``jittor/``). Its path never changes (Jittor keys its compiled
    core by the source path, and exits asking for a rerun when that core is rebuilt); a
    marker file holds what it was built from, and a change rebuilds it in place."""
    version = (source / "__init__.py").read_text(errors="replace")
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", version)
    key = _digest(str(source), m.group(1) if m else "?", OVERLAY_PATCHES, sorted(_PROP_FIELDS.items()),
                  CUDNN9_DROPPED if cudnn9 else ())
    parent = root / "jittor-overlay"
    marker = parent / "jittor" / ".dainet-overlay"
    if marker.is_file() and marker.read_text().startswith(key):
        return parent
    tmp = root / f".jittor-overlay.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp / "jittor", ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
    pkg = tmp / "jittor"
    done = []
    for rel, why, old, new in OVERLAY_PATCHES:
        f = pkg / rel
        text = f.read_text()
        if text.count(old) != 1:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OverlayError(f"{source / rel}: the CUDA 13 / cuDNN 9 patch ({why}) does not apply; "
                               "dainet's overlay is written for jittor==1.3.11.0")
        f.write_text(text.replace(old, new))
        done.append(f"{rel}: {why}")
    helper = pkg / "extern" / "cuda" / "inc" / "helper_cuda.h"
    helper.write_text(patch_helper_cuda(helper.read_text()))
    done.append("extern/cuda/inc/helper_cuda.h: CUDA 13 removed cudaDeviceProp.clockRate and .computeMode")
    if cudnn9:
        for rel in CUDNN9_DROPPED:
            (pkg / rel).unlink(missing_ok=True)
        done.append("extern/cuda/cudnn: RNN sources left out (cuDNN 9 removed that API)")
    (pkg / ".dainet-overlay").write_text(f"{key}\npatched copy of {source}\n" + "\n".join(done) + "\n")
    old_copy = root / f".jittor-overlay.{os.getpid()}.old"
    if parent.exists():
        os.replace(parent, old_copy)
    try:
        os.replace(tmp, parent)
    except OSError:           # another process put one there first
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old_copy, ignore_errors=True)
    return parent


def materialise(stack: GpuStack, facts: CudaFacts, env: dict, home: Path,
                source=installed_jittor) -> list[str]:
    """Set Jittor's variables in ``env`` for ``stack`` (building the view and the overlay
    when it needs them); returns the folders to put first on ``sys.path``."""
    if not stack.cuda:
        env["nvcc_path"] = ""
        return []
    root = cache_root(home)
    root.mkdir(parents=True, exist_ok=True)
    env["nvcc_path"] = str(build_view(facts, root)) if stack.view else stack.nvcc
    if stack.conv_opt:
        env["conv_opt"] = "1"
    nccl = facts.libs.get("nccl")
    if nccl is not None and stack.route != "bundle":   # pip's or the system's NCCL, for multi-GPU
        view = Path(env["nvcc_path"]).parents[1]
        env.setdefault("nccl_include_path", str(view / "include") if stack.view else nccl.include)
        env.setdefault("nccl_lib_path", str(view / "lib64") if stack.view else nccl.lib)
    elif not _jittor_download_present(home, "nccl"):
        env["use_nccl"] = "0"
    rank = env.get("OMPI_COMM_WORLD_LOCAL_RANK")
    if rank is not None and env.get("use_nccl") == "0" and "CUDA_VISIBLE_DEVICES" not in env and facts.gpus > 1:
        # one GPU per rank: without NCCL, Jittor leaves every MPI rank on GPU 0
        env["CUDA_VISIBLE_DEVICES"] = str(int(rank) % facts.gpus)
    for part in ("cutt", "cutlass"):   # Jittor downloads them at import; used only where already there
        if not _jittor_download_present(home, part):
            env[f"use_{part}"] = "0"
    if not stack.overlay:
        return []
    env.setdefault("cache_name", OVERLAY_CACHE_NAME)   # kernels of the patched copy, apart
    cudnn = facts.libs.get("cudnn")
    return [str(build_overlay(source(), root, cudnn9=bool(cudnn and cudnn.version and cudnn.version[0] >= 9)))]


def _jittor_download_present(home: Path, part: str) -> bool:
    """Whether Jittor's own download of ``part`` (nccl, cutt, cutlass) is in its cache."""
    base = home / ".cache" / "jittor" / part
    return base.is_dir() and any(base.iterdir())
