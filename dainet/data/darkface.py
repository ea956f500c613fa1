"""DARK FACE labels (spec §11): ``<root>/image/<n>.png`` with ``<root>/label/<n>.txt``::

    <count>
    x1 y1 x2 y2        (count lines, xyxy pixels)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dainet.errors import UserError
from dainet.utils.fileio import write_text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")   # preferred first: DARK FACE ships png


@dataclass
class DarkFaceItem:
    image: Path                # image file path (may not exist: reported as missing)
    label: Path                # its label file
    boxes_xyxy: np.ndarray     # [n, 4] float64 pixels


def parse_darkface_label(text: str, source: str = "<text>") -> np.ndarray:
    """Parse one label file; returns [n, 4] float64 xyxy pixels.

    Errors (a non-integer count, a line that is not four numbers, a count that does
    not match the number of box lines) name ``source`` and the 1-based line.
    """
    rows = [(i, s) for i, s in enumerate((ln.strip() for ln in text.splitlines()), 1) if s]
    if not rows:
        raise UserError(f"{source}:1: empty label file (expected a face count)")
    count_line, count_text = rows[0]
    try:
        n = int(count_text)
    except ValueError:
        raise UserError(f"{source}:{count_line}: face count is not an integer: {count_text!r}") from None
    body = rows[1:]
    if n < 0 or len(body) != n:
        where = body[n][0] if 0 <= n < len(body) else (body[-1][0] if body else count_line)
        raise UserError(f"{source}:{where}: count {n} on line {count_line} does not match "
                        f"the {len(body)} box lines that follow")
    boxes = np.zeros((n, 4))
    for k, (i, s) in enumerate(body):
        tok = s.split()
        try:
            if len(tok) != 4:
                raise ValueError
            boxes[k] = [float(t) for t in tok]
        except ValueError:
            raise UserError(f"{source}:{i}: expected 'x1 y1 x2 y2', got {s!r}") from None
    if not np.isfinite(boxes).all():
        raise UserError(f"{source}: box coordinates must be finite")
    return boxes


def format_darkface_label(boxes_xyxy: np.ndarray) -> str:
    rows = [" ".join(str(int(v)) if float(v).is_integer() else repr(float(v)) for v in b)
            for b in np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)]
    return "".join(f"{line}\n" for line in [str(len(rows))] + rows)


def write_darkface_label(path: str | Path, boxes_xyxy: np.ndarray) -> None:
    write_text(path, format_darkface_label(boxes_xyxy))


def _natural_key(path: Path):
    """``2.txt`` before ``10.txt``: numeric stems by value, the rest by name after them."""
    return (0, int(path.stem), "") if re.fullmatch(r"\d+", path.stem) else (1, 0, path.stem)


def read_darkface(root: str | Path) -> list[DarkFaceItem]:
    """Every label file under ``<root>/label`` (natural order) with its image under
    ``<root>/image`` (same stem; png preferred). Images without a label file are not
    listed (the unlabelled part of DARK FACE); a label without its image keeps the
    ``.png`` path so the caller can report it as missing."""
    root = Path(root)
    label_dir, image_dir = root / "label", root / "image"
    if not label_dir.is_dir():
        raise UserError(f"{label_dir}: DARK FACE label folder not found")
    files = [p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES] \
        if image_dir.is_dir() else []
    images: dict[str, Path] = {}
    for p in sorted(files, key=lambda p: (IMAGE_SUFFIXES.index(p.suffix.lower()), p.name)):
        images.setdefault(p.stem, p)
    items = []
    for label in sorted(label_dir.glob("*.txt"), key=_natural_key):
        try:
            text = label.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{label}: cannot read label file ({exc})") from None
        items.append(DarkFaceItem(images.get(label.stem, image_dir / f"{label.stem}.png"), label,
                                  parse_darkface_label(text, str(label))))
    return items
