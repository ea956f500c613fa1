"""DARK FACE labels (spec §11): ``<root>/image/<n>.png`` with ``<root>/label/<n>.txt``::

    <count>
    x1 y1 x2 y2        (count lines, xyxy pixels)

Blank lines are skipped; ``\\r\\n`` line ends and a UTF-8 BOM are accepted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dainet.errors import UserError
from dainet.formats.images import IMAGE_SUFFIXES
from dainet.formats.text import format_number, numbered_lines, parse_number_rows, read_text
from dainet.utils.fileio import write_text


@dataclass
class DarkFaceItem:
    image: Path                # image file path (may not exist: reported as missing)
    label: Path                # its label file
    boxes_xyxy: np.ndarray     # [n, 4] float64 pixels


def parse_darkface_label(text: str, source: str = "<text>") -> np.ndarray:
    """Parse one label file; returns [n, 4] float64 xyxy pixels.

    Errors (a non-integer count, a line that is not four finite numbers, a count that
    does not match the number of box lines) name ``source`` and the 1-based line.
    """
    rows = numbered_lines(text)
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
    for k, (i, s) in enumerate(body):   # one line at a time: the error names its line
        boxes[k] = parse_number_rows([s], 4, source, i)[0]
    return boxes


def read_darkface_label(path: str | Path) -> np.ndarray:
    """``[n, 4]`` float64 xyxy pixels of one label file."""
    return parse_darkface_label(read_text(path, "label file"), str(path))


def format_darkface_label(boxes_xyxy: np.ndarray) -> str:
    rows = [" ".join(map(format_number, b)) for b in np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)]
    return "".join(f"{line}\n" for line in [str(len(rows))] + rows)


def write_darkface_label(path: str | Path, boxes_xyxy: np.ndarray) -> None:
    write_text(path, format_darkface_label(boxes_xyxy))


def _natural_key(path: Path):
    """``2.txt`` before ``10.txt``: numeric stems by value, the rest by name after them."""
    return (0, int(path.stem), "") if re.fullmatch(r"\d+", path.stem) else (1, 0, path.stem)


def _label_files(label_dir: Path) -> list[Path]:
    if not label_dir.is_dir():
        raise UserError(f"{label_dir}: DARK FACE label folder not found")
    return sorted(label_dir.glob("*.txt"), key=_natural_key)


def read_darkface_labels(label_dir: str | Path) -> dict[str, np.ndarray]:
    """{image stem: ``[G, 4]`` x1 y1 x2 y2} for every ``*.txt`` in ``label_dir`` (the
    evaluated images: the label folder defines them)."""
    label_dir = Path(label_dir)
    labels = {p.stem: read_darkface_label(p) for p in _label_files(label_dir)}
    if not labels:
        raise UserError(f"{label_dir}: no label files (*.txt)")
    return labels


def _image_files(image_dir: Path) -> dict[str, Path]:
    """{stem: image file} of ``image_dir`` (the first of ``IMAGE_SUFFIXES`` when one stem
    has several); empty when the folder does not exist."""
    files = [p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES] \
        if image_dir.is_dir() else []
    images: dict[str, Path] = {}
    for p in sorted(files, key=lambda p: (IMAGE_SUFFIXES.index(p.suffix.lower()), p.name)):
        images.setdefault(p.stem, p)
    return images


def read_darkface(root: str | Path) -> list[DarkFaceItem]:
    """Every label file under ``<root>/label`` (natural order) with its image under
    ``<root>/image`` (same stem; the first of ``IMAGE_SUFFIXES`` when several exist).
    Images without a label file are not listed (the unlabelled part of DARK FACE:
    :func:`unlabelled_darkface_images`); a label without its image keeps the ``.png``
    path so the caller can report it as missing."""
    root = Path(root)
    label_dir, image_dir = root / "label", root / "image"
    labels = _label_files(label_dir)
    images = _image_files(image_dir)
    return [DarkFaceItem(images.get(label.stem, image_dir / f"{label.stem}.png"), label,
                         read_darkface_label(label)) for label in labels]


def unlabelled_darkface_images(root: str | Path) -> list[Path]:
    """The images under ``<root>/image`` without a label file of their stem under
    ``<root>/label`` (natural order; one per stem), which :func:`read_darkface` leaves out."""
    root = Path(root)
    labelled = {p.stem for p in _label_files(root / "label")}
    images = _image_files(root / "image")
    return sorted((p for stem, p in images.items() if stem not in labelled),
                  key=_natural_key)
