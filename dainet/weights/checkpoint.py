"""Our own checkpoints (weights, optimiser state, counters), and loading weights into a module.

Public API
----------
``save_checkpoint(path, state: Mapping) -> None``
    ``state`` holds numpy arrays, Jittor Vars (stored as arrays), numpy scalars and
    plain data -- ``None``, bool, int, float, str, lists, tuples, dicts (any plain
    keys) -- nested freely, e.g. ``{"model": model.state_dict(), "optimizer":
    opt.state_dict(), "epoch": 3, "iteration": 5000}``. Written atomically: a failure
    part-way leaves an existing checkpoint at ``path`` untouched and no temp file.
``load_checkpoint(path) -> dict``
    The same structure, every array or Var as a numpy array. ``WeightError`` naming the
    file if it is missing, truncated, corrupt or not ours.
``load_into(module, state, source) -> None``
    Put ``{name: array}`` into a Jittor module after checking names and shapes.

File format, and why not pickle
-------------------------------
A checkpoint is a zip archive (members stored, not compressed: weights do not
compress) of::

    checkpoint.json   {"format": "dainet-checkpoint", "version": 1, "tree": <state>}
    arrays/<n>.npy    one array each (numpy's .npy format), n in order of appearance

Byte-reproducible: every member carries the same fixed timestamp (1980-01-01, the zip
epoch), mode 0644 and host system, in order of appearance, so the same state written
twice -- a second later or a year later -- gives the same bytes (and the same DVC hash).

``jt.save`` writes a pickle, and loading any pickle runs what it names; making that
safe needs an allowlist tied to numpy internals (``numpy.core.multiarray._reconstruct``
moved to ``numpy._core`` in numpy 2). Here arrays are read by
``np.lib.format.read_array(..., allow_pickle=False)`` -- header plus raw bytes, object
arrays refused -- and everything else by ``json``: no code path from the file to a
call. The result is readable with ``zipfile`` + ``np.load`` alone.

In the JSON tree, str / int / float / bool / None and str-keyed dicts are themselves
(NaN and infinities as Python's ``json`` writes them); other values are tagged
objects: ``{"__ndarray__": member}``, ``{"__scalar__": member}`` (a numpy scalar, kept
with its dtype), ``{"__tuple__": [...]}``, ``{"__items__": [[key, value], ...]}`` (a
dict with non-str keys, such as int-keyed optimiser state; also a dict whose only key
happens to be one of these tags, so that it is not mistaken for one).
"""
from __future__ import annotations

import json
import os
import sys
import zipfile
from typing import Any, Mapping

import numpy as np

from dainet.utils.fileio import atomic_path
from dainet.weights import WeightError
from dainet.weights.names import check_state_dict

FORMAT_NAME = "dainet-checkpoint"
FORMAT_VERSION = 1
META_MEMBER = "checkpoint.json"
ARRAY_DIR = "arrays/"
TAGS = ("__ndarray__", "__scalar__", "__tuple__", "__items__")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # not the clock: equal states give equal files


def _member(name: str) -> zipfile.ZipInfo:
    """A zip entry with fixed metadata (time, permissions, host) and no compression."""
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3               # Unix, whatever the writing host
    info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
    return info


def _as_array(value) -> np.ndarray | None:
    """An ndarray, or a Jittor Var's values; None for anything else (Jittor not imported here)."""
    if isinstance(value, np.ndarray):
        return value
    jittor = sys.modules.get("jittor")
    if jittor is not None and isinstance(value, jittor.Var):
        return value.numpy()
    return None


class _Writer:
    """Encodes a state tree to JSON, streaming each array into the zip as it is met."""

    def __init__(self, zf: zipfile.ZipFile):
        self.zf, self.count = zf, 0

    def array(self, arr: np.ndarray, where: str) -> str:
        if arr.dtype.hasobject:
            raise TypeError(f"checkpoint value {where}: object arrays cannot be stored")
        member = f"{ARRAY_DIR}{self.count:06d}.npy"
        self.count += 1
        with self.zf.open(_member(member), "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, arr, allow_pickle=False)
        return member

    def encode(self, value, where: str):
        arr = _as_array(value)
        if arr is not None:
            return {"__ndarray__": self.array(arr, where)}
        if isinstance(value, np.generic):
            return {"__scalar__": self.array(np.asarray(value), where)}
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value          # json writes NaN / Infinity, which json.loads reads back
        if isinstance(value, (list, tuple)):
            items = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return items if isinstance(value, list) else {"__tuple__": items}
        if isinstance(value, Mapping):
            if all(isinstance(k, str) for k in value) and not (len(value) == 1 and next(iter(value)) in TAGS):
                return {k: self.encode(v, f"{where}[{k!r}]") for k, v in value.items()}
            return {"__items__": [[self.key(k, where), self.encode(v, f"{where}[{k!r}]")]
                                  for k, v in value.items()]}
        raise TypeError(f"checkpoint value {where} of type {type(value).__name__} cannot be "
                        "stored (arrays, Vars, numbers, strings, None, lists, tuples, dicts only)")

    def key(self, key, where: str):
        if key is None or isinstance(key, (bool, int, float, str)):
            return key
        if isinstance(key, tuple):
            return {"__tuple__": [self.key(k, where) for k in key]}
        raise TypeError(f"checkpoint dict key {key!r} in {where} cannot be stored")


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (see the module docstring for what it may hold).

    Raises ``TypeError`` naming the offending entry (e.g. ``state['opt'][0]``) for a
    value that cannot be stored; ``path`` is then left as it was.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"a checkpoint is a dict, got {type(state).__name__}")
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            tree = _Writer(zf).encode(state, "state")
            meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "tree": tree}
            zf.writestr(_member(META_MEMBER), json.dumps(meta, allow_nan=True))


class _Reader:
    def __init__(self, zf: zipfile.ZipFile):
        self.zf = zf
        self.members = set(zf.namelist())

    def array(self, member) -> np.ndarray:
        if not isinstance(member, str) or not member.startswith(ARRAY_DIR) or member not in self.members:
            raise ValueError(f"array member {member!r:.80} is missing")
        with self.zf.open(member) as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)

    def decode(self, node):
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (tag, body), = node.items()
            if tag == "__ndarray__":
                return self.array(body)
            if tag == "__scalar__":
                return self.array(body)[()]
            if tag == "__tuple__":
                return tuple(self.decode(v) for v in body)
            if tag == "__items__":
                return {self.hashable(self.decode(k)): self.decode(v) for k, v in body}
        return {k: self.decode(v) for k, v in node.items()}

    @staticmethod
    def hashable(key):
        hash(key)   # a JSON list decoded as a key would be a corrupt file
        return key


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; arrays and Vars come back as ndarrays."""
    source = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            if META_MEMBER not in zf.namelist():
                raise WeightError(f"{source}: not a DAI-Net checkpoint (no {META_MEMBER}); "
                                  "for a PyTorch file use dainet.weights.read_pth")
            meta = json.loads(zf.read(META_MEMBER))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
                raise WeightError(f"{source}: {META_MEMBER} does not describe a {FORMAT_NAME}")
            if meta.get("version") != FORMAT_VERSION:
                raise WeightError(f"{source}: checkpoint format version {meta.get('version')!r}, "
                                  f"this code reads version {FORMAT_VERSION}")
            state = _Reader(zf).decode(meta.get("tree"))
    except WeightError:
        raise
    except FileNotFoundError:
        raise WeightError(f"{source}: no such file") from None
    except zipfile.BadZipFile as exc:
        raise WeightError(f"{source}: not a checkpoint, or truncated (not a complete zip archive: {exc})") from exc
    except OSError as exc:
        raise WeightError(f"{source}: cannot read: {exc}") from exc
    except Exception as exc:   # malformed JSON or arrays: the file's fault
        raise WeightError(f"{source}: corrupt checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise WeightError(f"{source}: corrupt checkpoint (top level is {type(state).__name__})")
    return state


def load_into(module, state: Mapping[str, np.ndarray], source: str) -> None:
    """Load ``{name: array}`` into a Jittor module, all or nothing, and verify it took.

    Names and shapes are checked against ``module.state_dict()`` first, because
    Jittor's ``load_state_dict`` only logs names it cannot place and then skips them.
    Values are cast to each parameter's dtype when numpy's ``same_kind`` rule allows
    (float64 -> float32 yes, float -> int no). Afterwards every parameter is read back
    and compared. Any misfit raises one ``WeightError`` naming ``source``; nothing is
    loaded when the check fails.
    """
    params = module.state_dict()
    check_state_dict({k: tuple(v.shape) for k, v in params.items()}, state, source)
    arrays, mistyped = {}, []
    for name, var in params.items():
        dtype = np.dtype(str(var.dtype))
        value = np.asarray(state[name])
        if np.can_cast(value.dtype, dtype, casting="same_kind"):
            arrays[name] = np.ascontiguousarray(value, dtype=dtype)
        else:
            mistyped.append(f"{name}: file {value.dtype}, model {dtype}")
    if mistyped:
        raise WeightError(f"{source} does not fit the model: {len(mistyped)} with an "
                          f"incompatible dtype ({', '.join(mistyped)})")
    module.load_state_dict(arrays)
    not_loaded = [k for k, v in module.state_dict().items()
                  if not np.array_equal(v.numpy(), arrays[k],
                                        equal_nan=bool(np.issubdtype(arrays[k].dtype, np.inexact)))]
    if not_loaded:
        raise WeightError(f"{source}: {len(not_loaded)} parameters did not take the loaded "
                          f"values: {', '.join(not_loaded[:12])}")
