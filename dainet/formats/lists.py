"""The training list format of spec §11, one image a line::

    <image path> <n> x y w h c  x y w h c ...   (n times; xywh pixels, c = 1 for a face)

This is the format of the DSFD / PyramidBox / HLA-Face ``*.txt`` lists, so a
ready-made list from those projects is read unchanged. Blank lines are skipped; the
reader keeps each entry's 1-based line for later messages.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dainet.boxes.convert import xywh_to_xyxy
from dainet.errors import UserError
from dainet.formats.text import read_text
from dainet.utils.fileio import write_text


@dataclass
class ListEntry:
    image: str                 # path as written in the list (absolute or relative to cwd)
    boxes_xywh: np.ndarray     # [n, 4] float32, pixels
    labels: np.ndarray         # [n] int64, 1 = face
    line: int = 0              # 1-based line in its list file (0: not read from a file)

    @property
    def boxes_xyxy(self) -> np.ndarray:
        """[n, 4] float32 pixels, x2 = x + w, y2 = y + h."""
        return xywh_to_xyxy(self.boxes_xywh)


def format_entry(e: ListEntry) -> str:
    if " " in e.image:
        raise UserError(f"image path contains a space, which the list format cannot hold: {e.image!r}")
    parts = [e.image, str(len(e.boxes_xywh))]
    for (x, y, w, h), c in zip(e.boxes_xywh.tolist(), e.labels.tolist()):
        parts += [f"{x:g}", f"{y:g}", f"{w:g}", f"{h:g}", str(int(c))]
    return " ".join(parts)


def write_list(path: str | Path, entries: list[ListEntry]) -> None:
    write_text(path, "".join(format_entry(e) + "\n" for e in entries))


def parse_line(line: str, where: str, lineno: int = 0) -> ListEntry:
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
    return ListEntry(tok[0], vals[:, :4].astype(np.float32), vals[:, 4].astype(np.int64), lineno)


def read_list(path: str | Path, unique: bool = False) -> list[ListEntry]:
    """Read a list file; errors name the file and the 1-based line. ``unique``: an
    image listed twice is an error naming both lines."""
    path = Path(path)
    text = read_text(path, "list file")
    entries = [parse_line(line, f"{path}:{i}", i) for i, line in enumerate(text.splitlines(), 1)
               if line.strip()]
    if not entries:
        raise UserError(f"{path}: list file holds no images")
    if unique:
        first: dict[str, int] = {}
        for e in entries:
            if e.image in first:
                raise UserError(f"{path}:{e.line}: image {e.image!r} is listed twice "
                                f"(lines {first[e.image]} and {e.line})")
            first[e.image] = e.line
    return entries
