"""The training list format of spec §11, one image a line::

    <image path> <n> x y w h c  x y w h c ...   (n times; xywh pixels, c = 1 for a face)

This is the format of the DSFD / PyramidBox / HLA-Face ``*.txt`` lists, so a
ready-made list from those projects is read unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dainet.errors import UserError
from dainet.utils.fileio import write_text


@dataclass
class ListEntry:
    image: str                 # path as written in the list (absolute or relative to cwd)
    boxes_xywh: np.ndarray     # [n, 4] float32, pixels
    labels: np.ndarray         # [n] int64, 1 = face

    @property
    def boxes_xyxy(self) -> np.ndarray:
        """[n, 4] float32 pixels, x2 = x + w, y2 = y + h."""
        b = self.boxes_xywh
        return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def format_entry(e: ListEntry) -> str:
    if " " in e.image:
        raise UserError(f"image path contains a space, which the list format cannot hold: {e.image!r}")
    parts = [e.image, str(len(e.boxes_xywh))]
    for (x, y, w, h), c in zip(e.boxes_xywh.tolist(), e.labels.tolist()):
        parts += [f"{x:g}", f"{y:g}", f"{w:g}", f"{h:g}", str(int(c))]
    return " ".join(parts)


def write_list(path: str | Path, entries: list[ListEntry]) -> None:
    write_text(path, "".join(format_entry(e) + "\n" for e in entries))


def parse_line(line: str, where: str) -> ListEntry:
    """Parse one list line; ``where`` ("file:line") goes into every error message."""
    tok = line.split()
    if len(tok) < 2:
        raise UserError(f"{where}: expected '<image> <n> x y w h c ...', got {line.strip()!r}")
    try:
        n = int(tok[1])
    except ValueError:
        raise UserError(f"{where}: face count {tok[1]!r} is not an integer") from None
    if n < 0 or len(tok) != 2 + 5 * n:
        raise UserError(f"{where}: count {n} needs {5 * n} numbers after it, found {len(tok) - 2}")
    try:
        vals = np.array(tok[2:], dtype=np.float64).reshape(n, 5)
    except ValueError:
        raise UserError(f"{where}: box values must be numbers: {' '.join(tok[2:])!r}") from None
    if not np.isfinite(vals).all():
        raise UserError(f"{where}: box values must be finite")
    return ListEntry(tok[0], vals[:, :4].astype(np.float32), vals[:, 4].astype(np.int64))


def read_list(path: str | Path) -> list[ListEntry]:
    """Read a list file; errors name the file and the 1-based line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"{path}: cannot read list file ({exc.strerror})") from None
    entries = [parse_line(line, f"{path}:{i}") for i, line in enumerate(text.splitlines(), 1)
               if line.strip()]
    if not entries:
        raise UserError(f"{path}: list file holds no images")
    return entries
