"""TEST-ONLY: write PyTorch ``torch.save`` files from numpy arrays, without PyTorch.

The tests need published-format weights of any size (a full-size DAI-Net checkpoint,
vgg16_reducedfc.pth, decomp.pth) but the project never depends on PyTorch. This module
writes the two container formats that :mod:`dainet.weights.pth` reads, structured like
the real torch-written fixtures in ``tests/fixtures`` (see ``make_pth_fixtures.py``):

* :func:`save_zip` -- torch >= 1.6: a stored (uncompressed) zip archive of
  ``<record>/data.pkl``, ``.format_version``, ``.storage_alignment``, ``byteorder``,
  ``data/<key>`` (one member per storage, its bytes 64-byte aligned in the file by an
  ``FB`` padding extra field, as torch does), ``version`` and
  ``.data/serialization_id``, in that order. ``<record>`` is the file's stem.
* :func:`save_legacy` -- torch < 1.6 (e.g. vgg16_reducedfc.pth): the pickles magic
  number, protocol version 1001, sys-info, the object and the sorted storage keys,
  then per key the element count (int64) and the raw bytes, little endian.

``obj`` is a state dict (``dict`` / ``OrderedDict`` of name -> ndarray), possibly
wrapped (``{'epoch': 3, 'weight': sd}``), or any nesting of dicts, lists, tuples and
plain scalars; every ndarray becomes a tensor with its own C-contiguous storage.
An ``OrderedDict`` carrying a ``_metadata`` attribute (as ``nn.Module.state_dict()``
returns) is written with it, through a BUILD opcode, as torch does.

How the pickle names torch without torch: tensors and storage types are stand-ins
whose ``__module__`` / ``__qualname__`` are torch's names (``torch._utils``
``_rebuild_tensor_v2``, ``torch`` ``FloatStorage``, ...). The stock pickler would
import ``torch`` to check that the name resolves to the same object, so
:class:`_TorchPickler` (a protocol-2 pure-Python pickler, like torch's) writes the
GLOBAL opcode for these stand-ins directly. Every other opcode -- memo puts and gets,
persistent ids, REDUCE, the empty ``OrderedDict()`` backward-hooks argument -- comes
from the stock pickler exactly as in a torch-written file.
"""
from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
LEGACY_SYS_INFO = {"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                   "type_sizes": {"short": 2, "int": 4, "long": 4}}   # as in vgg16_tiny_legacy.pt
ZIP_ALIGNMENT = 64        # torch aligns each storage's bytes to this many bytes
ZIP_VERSION = b"3\n"
LOCATION = "cpu"
STORAGE_TAG = "storage"
LEGACY_KEY_BASE = 94_000_000_000_000   # legacy keys are storage addresses; same digit count


def _torch_global(module: str, qualname: str) -> type:
    """A class that the pickler below writes as the global ``module.qualname``."""
    return type(qualname, (), {"__module__": module, "__qualname__": qualname,
                               "_torch_global": True})


REBUILD_TENSOR_V2 = _torch_global("torch._utils", "_rebuild_tensor_v2")
STORAGE_TYPES = {np.dtype(k): _torch_global("torch", v) for k, v in {
    "float64": "DoubleStorage", "float32": "FloatStorage", "float16": "HalfStorage",
    "int64": "LongStorage", "int32": "IntStorage", "int16": "ShortStorage",
    "int8": "CharStorage", "uint8": "ByteStorage", "bool": "BoolStorage",
    "complex64": "ComplexFloatStorage", "complex128": "ComplexDoubleStorage"}.items()}


class _Storage:
    """One storage: its key, torch storage type and little-endian bytes."""

    def __init__(self, key: str, array: np.ndarray):
        dtype = array.dtype.newbyteorder("=")
        if dtype not in STORAGE_TYPES:
            raise TypeError(f"no torch storage type for dtype {array.dtype}")
        self.key, self.storage_type, self.numel = key, STORAGE_TYPES[dtype], array.size
        self.data = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()


class _Tensor:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())``."""

    def __init__(self, storage: _Storage, shape: tuple[int, ...]):
        self.storage, self.shape = storage, shape
        self.stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))   # C order, elements

    def __reduce_ex__(self, protocol):
        return REBUILD_TENSOR_V2, (self.storage, 0, self.shape, self.stride, False, OrderedDict())


class _TorchPickler(pickle._Pickler):
    """Protocol-2 pickler: storages as persistent ids, torch stand-ins as bare GLOBALs."""

    def __init__(self, file, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            pid = (STORAGE_TAG, obj.storage_type, obj.key, LOCATION, obj.numel)
            return pid + (None,) if self.legacy else pid   # legacy: no storage view
        return None

    def save_global(self, obj, name=None):
        if getattr(obj, "_torch_global", False):
            self.write(pickle.GLOBAL + f"{obj.__module__}\n{obj.__qualname__}\n".encode("utf-8"))
            self.memoize(obj)
        else:
            super().save_global(obj, name)


class _Tensors:
    """Replaces every ndarray in a nested object by a :class:`_Tensor`, numbering storages."""

    def __init__(self, key_of):
        self.key_of, self.storages = key_of, []

    def convert(self, obj):
        if isinstance(obj, np.ndarray):
            storage = _Storage(self.key_of(len(self.storages)), obj)
            self.storages.append(storage)
            return _Tensor(storage, tuple(int(n) for n in obj.shape))
        if isinstance(obj, dict):
            out = type(obj)((k, self.convert(v)) for k, v in obj.items())
            if hasattr(obj, "_metadata"):
                out._metadata = obj._metadata
            return out
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.convert(v) for v in obj)
        return obj


def _pickle(obj, tensors: _Tensors, legacy: bool) -> bytes:
    buf = io.BytesIO()
    _TorchPickler(buf, legacy).dump(tensors.convert(obj))
    return buf.getvalue()


def _write_aligned(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    """A stored member whose data starts at a multiple of ZIP_ALIGNMENT (padding extra 'FB')."""
    info = zipfile.ZipInfo(name, date_time=(1980, 0, 0, 0, 0, 0))
    start = zf.fp.tell() + 30 + len(name.encode("utf-8"))   # 30: fixed local header size
    pad = -(start + 4) % ZIP_ALIGNMENT                       # 4: the extra field's own header
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    zf.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def save_zip(obj: Any, path: str | Path, record: str | None = None) -> None:
    """Write ``obj`` as torch >= 1.6 ``torch.save(obj, path)`` would (zip format)."""
    path = Path(path)
    record = record or path.stem
    tensors = _Tensors(str)                                 # storage keys "0", "1", ...
    pkl = _pickle(obj, tensors, legacy=False)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        _write_aligned(zf, f"{record}/data.pkl", pkl)
        _write_aligned(zf, f"{record}/.format_version", b"1")
        _write_aligned(zf, f"{record}/.storage_alignment", str(ZIP_ALIGNMENT).encode())
        _write_aligned(zf, f"{record}/byteorder", b"little")
        for storage in tensors.storages:
            _write_aligned(zf, f"{record}/data/{storage.key}", storage.data)
        _write_aligned(zf, f"{record}/version", ZIP_VERSION)
        _write_aligned(zf, f"{record}/.data/serialization_id", b"0" * 40)


def save_legacy(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as ``torch.save(obj, path, _use_new_zipfile_serialization=False)`` would."""
    tensors = _Tensors(lambda i: str(LEGACY_KEY_BASE + 64 * i))
    pkl = _pickle(obj, tensors, legacy=True)
    by_key = {s.key: s for s in tensors.storages}
    with open(path, "wb") as f:
        for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, LEGACY_SYS_INFO):
            pickle.dump(header, f, protocol=2)
        f.write(pkl)
        keys = sorted(by_key)                               # torch writes the keys sorted as strings
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            f.write(struct.pack("<q", by_key[key].numel))
            f.write(by_key[key].data)
