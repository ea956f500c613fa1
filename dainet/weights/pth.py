"""Read PyTorch ``torch.save`` files (``.pth``, ``.pt``) with numpy, zipfile and pickle only.

Spec §13: published checkpoints must load "with neither PyTorch nor pickle code
execution". This module needs neither PyTorch nor Jittor.

Public API
----------
``load_torch_file(path) -> object``
    The saved object with every tensor as a numpy array and every container as a
    plain ``dict`` / ``list`` / ``tuple`` (``OrderedDict`` -> ``dict``, order kept).
``read_pth(path) -> dict[str, np.ndarray]``
    The state dict in file order; accepts a bare state dict, ``{'epoch': ...,
    'weight': sd}`` and ``{'state_dict': sd, ...}``
    (see :func:`dainet.weights.names.unwrap_state_dict`). Names are returned as
    stored (a DataParallel ``module.`` prefix is kept; see ``names.strip_prefix``).

Both raise :class:`dainet.weights.WeightError` (a ``UserError``) naming the file for a
missing, truncated, corrupt or unsafe file.

The two formats
---------------
*Zip* (torch >= 1.6): ``<name>/data.pkl`` is a protocol-2 pickle of the object in
which every storage appears as a persistent id ``('storage', <torch.XStorage>, key,
location, numel)``; its bytes are the member ``<name>/data/<key>``; ``<name>/byteorder``
says ``little`` or ``big`` (absent: little, as torch assumes).

*Legacy* (torch < 1.6, or ``_use_new_zipfile_serialization=False``; e.g.
``vgg16_reducedfc.pth``): one file of consecutive pickles -- the magic number
``0x1950a86a20f9469cfc6c``, the protocol version 1001, a sys-info dict, the object
(persistent ids ``('storage', type, key, location, numel, view_metadata)``), the sorted
list of storage keys -- followed, for each key in that order, by the storage's
element count (int64) and its raw bytes. Sizes and bytes are little endian: torch
writes and reads them so regardless of the ``little_endian`` sys-info flag.

A tensor is rebuilt from ``(storage, storage_offset, size, stride)``, all in
elements: ``torch._utils._rebuild_tensor_v2`` (torch >= 0.4), ``_rebuild_tensor``
(older), ``_rebuild_tensor_v3`` (uint16/32/64: an untyped byte storage plus a
``torch.<dtype>``), wrapped by ``_rebuild_parameter[_with_state]`` for
``nn.Parameter``. The result is ``as_strided`` over the storage, copied: tensors that
shared a storage in the file come back as independent arrays (except the very same
tensor saved twice, which comes back as one array).

Safety
------
Unpickling runs code only through globals: GLOBAL / STACK_GLOBAL / INST / OBJ / EXT
opcodes ask ``find_class`` for an object, which REDUCE / NEWOBJ / BUILD then call. Our
``find_class`` answers only from :data:`ALLOWED_GLOBALS`, whose values are our own
numpy rebuilders and dtype markers (``_Sealed``: no ``__dict__``, BUILD refused, so a
pickle cannot alter them either) and ``collections.OrderedDict``. Any other global
-- ``posix.system``, ``builtins.eval``, a model class -- raises ``WeightError`` naming it
before anything from the file is called. Every pickle in the file (legacy header
pickles included) goes through it. Persistent ids are validated by us, and each
tensor view is bounds-checked against its storage before ``as_strided`` (which does
not check and would otherwise read outside the buffer).

Deliberately refused: ``torch.storage._load_from_bytes`` (written only by a plain
``pickle.dump`` of tensors, never by ``torch.save``), TorchScript archives
(``torch.jit.save``), whole pickled ``nn.Module`` objects, sparse / quantized / tensor
subclasses, float8 dtypes (no numpy equivalent).
"""
from __future__ import annotations

import _compat_pickle
import collections
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dainet.weights import WeightError
from dainet.weights.names import unwrap_state_dict

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C   # first pickle of a legacy torch.save file
LEGACY_PROTOCOL_VERSION = 1001          # second pickle of a legacy torch.save file
ZIP_MAGIC = b"PK\x03\x04"


# ----------------------------------------------------------------------------------
# What the pickle may name: sealed markers and callables
# ----------------------------------------------------------------------------------

class _Sealed:
    """Base of everything ``find_class`` hands out: no ``__dict__``, BUILD refused."""

    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"the pickle tries to modify {self!r}")


class _Element(_Sealed):
    """A tensor element type: torch dtype name and the numpy dtype of its stored bytes.

    bfloat16 has no numpy dtype: its bytes are read as uint16 and widened to float32
    (the upper half of a float32), which represents every bfloat16 value exactly.
    """

    __slots__ = ("torch_name", "raw")

    def __init__(self, torch_name: str, raw: str):
        self.torch_name = torch_name
        self.raw = np.dtype(raw)

    @property
    def itemsize(self) -> int:
        return self.raw.itemsize

    def __repr__(self) -> str:
        return f"torch.{self.torch_name}"


class _Call(_Sealed):
    """An allowlisted global: calls our replacement function."""

    __slots__ = ("qualname", "func")

    def __init__(self, qualname: str, func: Callable):
        self.qualname, self.func = qualname, func

    def __call__(self, *args):
        return self.func(*args)

    def __repr__(self) -> str:
        return self.qualname


# torch dtype name -> (storage class name or None, numpy dtype of the stored bytes)
_ELEMENT_TABLE = {
    "float64": ("DoubleStorage", "f8"),
    "float32": ("FloatStorage", "f4"),
    "float16": ("HalfStorage", "f2"),
    "bfloat16": ("BFloat16Storage", "u2"),
    "int64": ("LongStorage", "i8"),
    "int32": ("IntStorage", "i4"),
    "int16": ("ShortStorage", "i2"),
    "int8": ("CharStorage", "i1"),
    "uint8": ("ByteStorage", "u1"),
    "bool": ("BoolStorage", "?"),
    "complex64": ("ComplexFloatStorage", "c8"),
    "complex128": ("ComplexDoubleStorage", "c16"),
    "uint16": (None, "u2"),   # these three only reach files through _rebuild_tensor_v3
    "uint32": (None, "u4"),
    "uint64": (None, "u8"),
}
_ELEMENTS = {name: _Element(name, raw) for name, (_, raw) in _ELEMENT_TABLE.items()}


class _Storage(_Sealed):
    """A storage named by a persistent id; ``data`` (raw bytes) may arrive later (legacy).

    A legacy storage *view* (``root`` set) is the byte range
    ``[byte_offset, byte_offset + nbytes)`` of its root storage.
    """

    __slots__ = ("key", "element", "numel", "root", "byte_offset", "_data")

    def __init__(self, key: str, element: _Element, numel: int,
                 root: "_Storage | None" = None, byte_offset: int = 0):
        self.key, self.element, self.numel = key, element, numel
        self.root, self.byte_offset = root, byte_offset
        self._data = None   # bytes once read

    @property
    def nbytes(self) -> int:
        return self.numel * self.element.itemsize

    @property
    def data(self) -> bytes:
        if self.root is not None:
            return self.root.data[self.byte_offset:self.byte_offset + self.nbytes]
        if self._data is None:
            raise pickle.UnpicklingError(f"storage {self.key!r} is referenced but not in the file")
        return self._data

    def fill(self, data: bytes) -> None:
        if len(data) != self.nbytes:
            raise pickle.UnpicklingError(
                f"storage {self.key!r}: expected {self.nbytes} bytes, found {len(data)}")
        self._data = data


def _index_tuple(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise pickle.UnpicklingError(f"tensor {what} must be non-negative integers, got {value!r:.80}")
    return tuple(value)


class _TensorRef(_Sealed):
    """A tensor as the pickle describes it; turned into an array once storages are read.

    Sealed like the globals: a BUILD opcode could otherwise rewrite ``size`` after the
    bounds check and make ``as_strided`` read outside the storage.
    """

    __slots__ = ("storage", "element", "offset", "size", "stride", "conj", "neg")

    def __init__(self, storage, element, offset, size, stride, metadata=None):
        if not isinstance(storage, _Storage) or not isinstance(element, _Element):
            raise pickle.UnpicklingError("tensor without a valid storage / dtype")
        self.storage, self.element = storage, element
        (self.offset,) = _index_tuple((offset,), "storage offset")
        self.size = _index_tuple(size, "size")
        self.stride = _index_tuple(stride, "stride")
        if len(self.size) != len(self.stride):
            raise pickle.UnpicklingError(f"size {self.size} and stride {self.stride} differ in length")
        # conj / neg bits (torch >= 1.10 metadata): the stored data is not the value yet
        meta = metadata if isinstance(metadata, dict) else {}
        self.conj, self.neg = bool(meta.get("conj")), bool(meta.get("neg"))
        self._check_bounds(storage.nbytes // element.itemsize)   # early, with the pickle's context

    def _check_bounds(self, available: int) -> None:
        """as_strided reads memory unchecked: refuse any view reaching past the storage."""
        if all(self.size):
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if last >= available:
                raise pickle.UnpicklingError(
                    f"tensor of size {self.size}, stride {self.stride}, offset {self.offset} "
                    f"reaches element {last} of a storage of {available}")

    def to_numpy(self, byteorder: str) -> np.ndarray:
        el = self.element
        native = el.raw.newbyteorder("=")
        if not all(self.size):
            out = np.empty(self.size, dtype=native)
        else:
            flat = np.frombuffer(self.storage.data, dtype=el.raw.newbyteorder(byteorder),
                                 count=len(self.storage.data) // el.itemsize)
            self._check_bounds(len(flat))   # again, against the bytes actually read
            view = np.lib.stride_tricks.as_strided(
                flat[self.offset:], shape=self.size,
                strides=tuple(s * el.itemsize for s in self.stride), writeable=False)
            out = view.astype(native, order="C")   # a copy: C-contiguous, native byte order
        if el.torch_name == "bfloat16":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        if self.neg:
            out = np.negative(out)
        if self.conj:
            out = np.conj(out)
        return out


# Replacements for torch's rebuild functions; arguments exactly as torch pickles them.

def _rebuild_tensor(storage, storage_offset, size, stride):
    element = storage.element if isinstance(storage, _Storage) else None
    return _TensorRef(storage, element, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    element = storage.element if isinstance(storage, _Storage) else None
    return _TensorRef(storage, element, storage_offset, size, stride, metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    return _TensorRef(storage, dtype, storage_offset, size, stride, metadata)


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None, state=None):
    return data   # a Parameter is its tensor; grad flags and hooks mean nothing here


def _size(dims=()):
    return _index_tuple(tuple(dims), "torch.Size")


def _latin1_bytes(text, encoding="latin1"):
    """``_codecs.encode``: how protocol-2 pickles store ``bytes``; only that use is allowed."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin1 byte strings")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {("collections", "OrderedDict"): collections.OrderedDict}
    for func in (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3):
        allowed["torch._utils", func.__name__] = _Call(f"torch._utils.{func.__name__}", func)
    for name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
        allowed["torch._utils", name] = _Call(f"torch._utils.{name}", _rebuild_parameter)
    allowed["torch", "Size"] = _Call("torch.Size", _size)
    allowed["_codecs", "encode"] = _Call("_codecs.encode", _latin1_bytes)
    for name, (storage_name, _) in _ELEMENT_TABLE.items():
        allowed["torch", name] = _ELEMENTS[name]                  # dtype (v3 argument)
        if storage_name:                                          # storage type (persistent id);
            for module in ("torch", "torch.cuda"):                # torch.cuda.* in legacy GPU saves
                allowed[module, storage_name] = _ELEMENTS[name]
    for module in ("torch", "torch.storage"):
        allowed[module, "UntypedStorage"] = _ELEMENTS["uint8"]    # bytes
    return allowed


ALLOWED_GLOBALS = _allowed_globals()


def _describe_global(module, name) -> str:
    """``'module.name'``, plus the Python 3 spelling when the pickle uses Python 2's."""
    text = f"'{module}.{name}'"[:200]
    py3 = _compat_pickle.NAME_MAPPING.get((module, name)) or (
        _compat_pickle.IMPORT_MAPPING.get(module), name)
    if isinstance(module, str) and py3[0] and py3 != (module, name):
        text += f" (Python 3: {py3[0]}.{py3[1]})"
    return text


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only from :data:`ALLOWED_GLOBALS`.

    ``load_storage`` turns a persistent id into a :class:`_Storage`; ``None`` refuses
    persistent ids (header pickles have none).
    """

    def __init__(self, file, source: str, load_storage: Callable[[Any], _Storage] | None = None):
        super().__init__(file, encoding="utf-8")   # Python-2 era str -> str, as torch does
        self.source = source
        self.load_storage = load_storage

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[module, name]
        except (KeyError, TypeError):
            raise WeightError(
                f"{self.source}: refused to load: its pickle asks for the global "
                f"{_describe_global(module, name)}, which a weights file does not need "
                "(nothing from the file was run)") from None

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and pid[:1] == ("module",):
            raise WeightError(f"{self.source}: holds a pickled nn.Module, not a state dict; "
                              "save model.state_dict() instead")
        if self.load_storage is None:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        return self.load_storage(pid)


def _storage_fields(pid, length: int) -> tuple[_Element, str, int, Any]:
    """Validate ``('storage', type, key, location, numel[, view_metadata])``."""
    if not (isinstance(pid, tuple) and len(pid) == length and pid[0] == "storage"):
        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
    element, key, _location, numel = pid[1:5]
    if not isinstance(element, _Element) or not isinstance(key, str) \
            or not isinstance(numel, int) or numel < 0:
        raise pickle.UnpicklingError(f"malformed storage id {pid!r:.80}")
    return element, key, numel, pid[5] if length == 6 else None


# ----------------------------------------------------------------------------------
# The two container formats
# ----------------------------------------------------------------------------------

def _zip_record_prefix(zf: zipfile.ZipFile, source: str) -> str:
    """``'<name>/'``: the folder holding data.pkl (torch names it after the file)."""
    names = zf.namelist()
    prefixes = [n[:-len("data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if not prefixes:
        raise WeightError(f"{source}: a zip archive without <name>/data.pkl: not a torch.save file")
    prefix = prefixes[0]
    if any(n.startswith(prefix + "code/") for n in names):
        raise WeightError(f"{source}: a TorchScript archive (torch.jit.save), not a torch.save "
                          "state dict; save model.state_dict() with torch.save instead")
    return prefix


def _load_zip(path: Path, source: str) -> tuple[Any, str]:
    with zipfile.ZipFile(path) as zf:
        prefix = _zip_record_prefix(zf, source)
        byteorder = "<"
        if prefix + "byteorder" in zf.namelist():
            mark = zf.read(prefix + "byteorder")
            if mark not in (b"little", b"big"):
                raise WeightError(f"{source}: unknown byteorder record {mark[:20]!r}")
            byteorder = "<" if mark == b"little" else ">"
        storages: dict[str, _Storage] = {}

        def load_storage(pid) -> _Storage:
            element, key, numel, _ = _storage_fields(pid, 5)
            if key not in storages:     # shared storages: one read, one object
                storage = _Storage(key, element, numel)
                member = f"{prefix}data/{key}"
                try:
                    info = zf.getinfo(member)
                except KeyError:
                    raise pickle.UnpicklingError(f"storage member {member} is missing") from None
                if info.file_size < storage.nbytes:
                    raise pickle.UnpicklingError(
                        f"storage member {member} holds {info.file_size} bytes, needs {storage.nbytes}")
                with zf.open(info) as fh:
                    storage.fill(fh.read(storage.nbytes))
                storages[key] = storage
            return storages[key]

        with zf.open(prefix + "data.pkl") as fh:
            obj = _RestrictedUnpickler(fh, source, load_storage).load()
    return obj, byteorder


def _load_legacy(path: Path, source: str) -> tuple[Any, str]:
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size

        def header():
            return _RestrictedUnpickler(f, source).load()

        try:
            magic = header()
        except WeightError:
            raise
        except Exception:
            magic = None
        if magic != MAGIC_NUMBER:
            raise WeightError(f"{source}: not a PyTorch file (neither a torch.save zip archive "
                              "nor the legacy format's magic number)")
        version = header()
        if version != LEGACY_PROTOCOL_VERSION:
            raise WeightError(f"{source}: unsupported legacy protocol version {version!r:.40}")
        header()   # sys-info: endianness and C type sizes, not needed (see module docstring)

        storages: dict[str, _Storage] = {}

        def load_storage(pid) -> _Storage:
            element, key, numel, view = _storage_fields(pid, 6)
            root = storages.setdefault(key, _Storage(key, element, numel))
            if view is None:
                return root
            # very old torch: a storage view (view_key, offset, size), in root elements
            view_key, offset, view_size = view
            if view_key not in storages:
                if offset < 0 or view_size < 0 or offset + view_size > root.numel:
                    raise pickle.UnpicklingError(f"storage view {view!r:.80} outside its root")
                storages[view_key] = _Storage(view_key, root.element, view_size, root,
                                              offset * root.element.itemsize)
            return storages[view_key]

        obj = _RestrictedUnpickler(f, source, load_storage).load()
        keys = header()
        if not isinstance(keys, list):
            raise pickle.UnpicklingError("storage key list missing")
        for key in keys:
            storage = storages.get(key) if isinstance(key, str) else None
            if storage is None or storage.root is not None:
                raise pickle.UnpicklingError(f"storage key {key!r:.40} is not referenced")
            count_bytes = f.read(8)
            if len(count_bytes) != 8:
                raise pickle.UnpicklingError(f"storage {key!r}: file ends before its size")
            (count,) = struct.unpack("<q", count_bytes)
            if count != storage.numel:
                raise pickle.UnpicklingError(
                    f"storage {key!r}: {count} elements on disk, {storage.numel} referenced")
            if storage.nbytes > file_size - f.tell():
                raise pickle.UnpicklingError(f"storage {key!r}: file ends inside its data")
            storage.fill(f.read(storage.nbytes))
    return obj, "<"


# ----------------------------------------------------------------------------------
# Plain Python result
# ----------------------------------------------------------------------------------

_PLAIN_SCALARS = (str, bytes, int, float, complex, bool, type(None))


def _to_plain(obj, byteorder: str, source: str, memo: dict[int, np.ndarray]):
    """Arrays for tensors, plain containers for the rest; anything else is refused."""
    if isinstance(obj, _TensorRef):
        if id(obj) not in memo:
            memo[id(obj)] = obj.to_numpy(byteorder)
        return memo[id(obj)]
    if isinstance(obj, dict):   # OrderedDict included; attributes such as _metadata dropped
        out = {}
        for k, v in obj.items():
            if not isinstance(k, _PLAIN_SCALARS + (tuple,)):
                raise WeightError(f"{source}: unexpected dictionary key of type {type(k).__name__}")
            out[k] = _to_plain(v, byteorder, source, memo)
        return out
    if isinstance(obj, list):
        return [_to_plain(v, byteorder, source, memo) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_plain(v, byteorder, source, memo) for v in obj)
    if isinstance(obj, _Storage):   # a bare storage: its elements, flat
        return _TensorRef(obj, obj.element, 0, (obj.numel,), (1,)).to_numpy(byteorder)
    if isinstance(obj, _Element):
        return repr(obj)            # a dtype stored as a value, e.g. 'torch.float32'
    if isinstance(obj, _PLAIN_SCALARS):
        return obj
    raise WeightError(f"{source}: unexpected object {obj!r:.80} in the file")


def load_torch_file(path: str | os.PathLike) -> Any:
    """Load any ``torch.save`` file of tensors and plain data, without running its code.

    Returns the saved object: tensors as numpy arrays (dtype as saved, bfloat16 as
    float32; C-contiguous copies in native byte order), ``OrderedDict`` / ``dict`` as
    ``dict`` (order kept), lists, tuples, numbers, strings, bytes as such.

    Raises ``WeightError`` naming the file when it is missing, truncated, corrupt, in
    neither format, or names any global outside the allowlist.
    """
    path = Path(path)
    source = str(path)
    try:
        with open(path, "rb") as f:
            start = f.read(len(ZIP_MAGIC))
        obj, byteorder = (_load_zip if start == ZIP_MAGIC else _load_legacy)(path, source)
        return _to_plain(obj, byteorder, source, {})
    except WeightError:
        raise
    except FileNotFoundError:
        raise WeightError(f"{source}: no such file") from None
    except OSError as exc:
        raise WeightError(f"{source}: cannot read: {exc}") from exc
    except Exception as exc:   # any parse failure of an untrusted file is the file's fault
        raise WeightError(f"{source}: corrupt or truncated PyTorch file "
                          f"({type(exc).__name__}: {exc})") from exc


def read_pth(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict of a PyTorch weights file: ``{name: array}`` in file order.

    Accepts a bare state dict, ``{'epoch': ..., 'weight': sd}`` and
    ``{'state_dict': sd, ...}``. Names are as stored (see ``names.strip_prefix`` for a
    DataParallel ``module.`` prefix, ``names.backbone_to_model`` for the VGG file).
    """
    return unwrap_state_dict(load_torch_file(path), str(path))
