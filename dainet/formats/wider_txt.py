"""WIDER FACE annotation text, ``wider_face_{split}_bbx_gt.txt`` (spec §11), one block
per image::

    <event>/<file>.jpg
    <n>
    x1 y1 w h blur expression illumination invalid occlusion pose     (n lines)

A count of 0 is followed by one placeholder line of ten zeros. Boxes are xywh pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dainet.errors import UserError
from dainet.formats.text import format_number, numbered_lines, read_text
from dainet.utils.fileio import write_text

ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
N_FIELDS = 4 + len(ATTRIBUTES)          # x1 y1 w h + attributes


@dataclass
class WiderRecord:
    """One image of a WIDER FACE annotation file (or of the ``.mat`` ground truth)."""
    name: str                  # "<event>/<file>.jpg", as written in the annotation file
    boxes_xywh: np.ndarray     # [n, 4] float64, pixels (x1, y1, w, h)
    attributes: np.ndarray     # [n, 6] int64, columns in ATTRIBUTES order
    line: int = 0              # 1-based line of the name in its file (0: not read from a text file)

    @property
    def event(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def stem(self) -> str:
        """The file name without folder and extension, as ``file_list`` holds it."""
        return Path(self.name).stem


def _numbers(text: str, where: str) -> np.ndarray:
    """The whitespace-separated numbers of one box line, [N_FIELDS] float64."""
    tok = text.split()
    if len(tok) != N_FIELDS:
        raise UserError(f"{where}: expected {N_FIELDS} fields 'x1 y1 w h "
                        f"{' '.join(ATTRIBUTES)}', found {len(tok)}: {text!r}")
    try:
        vals = np.array(tok, dtype=np.float64)
    except ValueError:
        raise UserError(f"{where}: box fields must be numbers: {text!r}") from None
    if not np.isfinite(vals).all():
        raise UserError(f"{where}: box fields must be finite: {text!r}")
    if (vals[4:] != np.round(vals[4:])).any():
        raise UserError(f"{where}: attribute labels must be integers: {text!r}")
    return vals


def parse_wider_annotations(text: str, source: str = "<text>") -> list[WiderRecord]:
    """Parse the text of a ``wider_face_*_bbx_gt.txt`` file (``\\n`` or ``\\r\\n``).

    Every malformed line raises :class:`UserError` naming ``source`` and the 1-based
    line; so does an image listed twice (both lines named). The placeholder line
    after a count of 0 is consumed when present and tolerated when absent.
    """
    # (line number, stripped text) of the non-blank lines
    rows = numbered_lines(text)
    records: list[WiderRecord] = []
    first_seen: dict[str, int] = {}
    k = 0
    while k < len(rows):
        name_line, name = rows[k]
        if len(name.split()) != 1:
            hint = " (is the count of the previous image too small?)" if records else ""
            raise UserError(f"{source}:{name_line}: expected an image path "
                            f"'<event>/<file>.jpg', got {name!r}{hint}")
        if name in first_seen:
            raise UserError(f"{source}:{name_line}: image {name!r} is listed twice "
                            f"(lines {first_seen[name]} and {name_line})")
        first_seen[name] = name_line
        if k + 1 >= len(rows):
            raise UserError(f"{source}:{name_line}: file ends before the face count of {name!r}")
        count_line, count_text = rows[k + 1]
        try:
            n = int(count_text)
        except ValueError:
            raise UserError(f"{source}:{count_line}: face count of {name!r} is not an "
                            f"integer: {count_text!r}") from None
        if n < 0:
            raise UserError(f"{source}:{count_line}: negative face count {n}")
        body = rows[k + 2:k + 2 + n]
        if len(body) < n:
            last = rows[-1][0]
            raise UserError(f"{source}:{last}: file ends after {len(body)} of the {n} box "
                            f"lines announced on line {count_line}")
        k += 2 + n
        if n == 0 and k < len(rows) and len(rows[k][1].split()) == N_FIELDS:
            if _numbers(rows[k][1], f"{source}:{rows[k][0]}").any():
                raise UserError(f"{source}:{rows[k][0]}: a count of 0 must be followed by a "
                                f"line of {N_FIELDS} zeros, got {rows[k][1]!r}")
            k += 1
        vals = (np.stack([_numbers(s, f"{source}:{i}") for i, s in body]) if body
                else np.zeros((0, N_FIELDS)))
        records.append(WiderRecord(name, vals[:, :4], vals[:, 4:].astype(np.int64), name_line))
    return records


def read_wider_annotations(path: str | Path) -> list[WiderRecord]:
    """Read and parse one ``wider_face_*_bbx_gt.txt`` file."""
    return parse_wider_annotations(read_text(path, "annotation file"), str(path))


def format_wider_annotations(records: list[WiderRecord]) -> str:
    """The official text format; lines end in a space as in the released files."""
    out = []
    for r in records:
        out += [r.name, str(len(r.boxes_xywh))]
        rows = np.concatenate([r.boxes_xywh, r.attributes], axis=1).tolist()
        out += [" ".join(map(format_number, row)) + " " for row in rows] or ["0 " * N_FIELDS]
    return "".join(line + "\n" for line in out)


def write_wider_annotations(path: str | Path, records: list[WiderRecord]) -> None:
    write_text(path, format_wider_annotations(records))
