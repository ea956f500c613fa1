"""Atomic file writes: a temp file in the same folder, then ``os.replace``.

An interrupted run never leaves a half-written checkpoint, metric or list file. A
kill between the two steps can leave the temp file itself behind; its name follows
:data:`TEMP_NAME` (``.<target name>.<8 random characters>.tmp``), so a later run can
remove what an earlier one left (:func:`remove_stale_temps`).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from pathlib import Path

# The names mkstemp gives our temp files: prefix ".<name>.", 8 characters, suffix ".tmp".
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temp files :func:`atomic_path` left below ``folder`` (a killed writer's); returns them.

    Only for folders no other process is writing into at the moment (e.g. at the start
    of the run that owns them).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in sorted(folder.rglob(".*.tmp")):
        if TEMP_NAME.match(p.name) and p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` and flush it to the OS (not atomic: a log's next line; its readers cope with a torn tail)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(text)
        f.flush()


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def finite_or_none(obj):
    """``obj`` with every NaN or infinite float (nested in dicts, lists, tuples) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json(path: str | Path, obj) -> None:
    """Strict JSON (RFC 8259): a non-finite float -- e.g. a best validation loss when no
    validation ran -- is written as ``null``, never as the ``NaN`` / ``Infinity`` that
    Python's json would emit and other readers (jq, JavaScript, DVC Studio) reject."""
    write_text(path, json.dumps(finite_or_none(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_image(path: str | Path, rgb) -> None:
    """Write a uint8 [H, W, 3] RGB array as PNG/JPEG (by the suffix), atomically."""
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(Path(path).suffix or ".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError(f"{path}: cannot encode image")
    write_bytes(path, buf.tobytes())
