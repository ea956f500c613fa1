"""WIDER FACE annotations: the ``wider_face_{split}_bbx_gt.txt`` text and the
evaluation ground truth ``.mat`` files (spec §11).

Text format, one block per image::

    <event>/<file>.jpg
    <n>
    x1 y1 w h blur expression illumination invalid occlusion pose     (n lines)

A count of 0 is followed by one placeholder line of ten zeros.

``.mat`` format (MATLAB v5, as in ``eval_tools/ground_truth``), variables of shape
[E, 1] (one row per event, E = 61 for the real val split), each a cell array:

- ``event_list{e}``: char, the event folder name (``0--Parade``);
- ``file_list{e}{i}``: char, the image name without ``.jpg``;
- ``face_bbx_list{e}{i}``: int32 [n, 4] boxes, xywh pixels; an image without faces
  holds one row of zeros;
- ``<attr>_label_list{e}{i}``: uint8 [n, 1] for the six attributes below;
- ``gt_list{e}{i}`` (easy / medium / hard files only): double [m, 1], the 1-based
  indices of the faces that count at that difficulty.

The real files were saved by MATLAB, which stores an integer-valued double array
compactly as uint8 / uint16 (``scipy.io.loadmat`` then returns that storage type
unless ``mat_dtype=True``). :func:`write_mat` does the same, so our files load with
exactly the classes and dtypes of the real ones.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dainet.errors import UserError
from dainet.utils.fileio import write_bytes, write_text

ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
N_FIELDS = 4 + len(ATTRIBUTES)          # x1 y1 w h + attributes
GT_LEVELS = ("easy", "medium", "hard")


@dataclass
class WiderRecord:
    """One image of a WIDER FACE annotation file."""
    name: str                  # "<event>/<file>.jpg", as written in the annotation file
    boxes_xywh: np.ndarray     # [n, 4] float64, pixels (x1, y1, w, h)
    attributes: np.ndarray     # [n, 6] int64, columns in ATTRIBUTES order
    line: int = 0              # 1-based line of the name in its file (0: not read from a file)

    @property
    def event(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def stem(self) -> str:
        """The file name without folder and extension, as ``file_list`` holds it."""
        return Path(self.name).stem


# ---------------------------------------------------------------- text format

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
    rows = [(i, s) for i, s in enumerate((ln.strip() for ln in text.splitlines()), 1) if s]
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
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise UserError(f"{path}: cannot read annotation file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    return parse_wider_annotations(text, str(path))


def _fmt(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def format_wider_annotations(records: list[WiderRecord]) -> str:
    """The official text format; lines end in a space as in the released files."""
    out = []
    for r in records:
        out += [r.name, str(len(r.boxes_xywh))]
        rows = np.concatenate([r.boxes_xywh, r.attributes], axis=1).tolist()
        out += [" ".join(map(_fmt, row)) + " " for row in rows] or ["0 " * N_FIELDS]
    return "".join(line + "\n" for line in out)


def write_wider_annotations(path: str | Path, records: list[WiderRecord]) -> None:
    write_text(path, format_wider_annotations(records))


# ---------------------------------------------------------------- MAT-file v5

# data types and array classes of the MAT-file v5 format
_MI_INT8, _MI_UINT8, _MI_INT16, _MI_UINT16, _MI_INT32, _MI_UINT32 = 1, 2, 3, 4, 5, 6
_MI_DOUBLE, _MI_MATRIX, _MI_COMPRESSED, _MI_UTF8 = 9, 14, 15, 16
_MX_CELL, _MX_CHAR, _MX_DOUBLE = 1, 4, 6
_NUMERIC = {  # numpy dtype -> (array class, data type)
    np.dtype(np.float64): (_MX_DOUBLE, _MI_DOUBLE),
    np.dtype(np.int32): (12, _MI_INT32),
    np.dtype(np.uint8): (9, _MI_UINT8),
    np.dtype(np.uint16): (11, _MI_UINT16),
    np.dtype(np.int16): (10, _MI_INT16),
    np.dtype(np.int8): (8, _MI_INT8),
    np.dtype(np.uint32): (13, _MI_UINT32),
}
_COMPACT = [(np.uint8, _MI_UINT8), (np.int8, _MI_INT8), (np.uint16, _MI_UINT16),
            (np.int16, _MI_INT16), (np.uint32, _MI_UINT32), (np.int32, _MI_INT32)]


def _element(dtype: int, payload: bytes) -> bytes:
    """A data element; payloads of up to 4 bytes use the small-element form."""
    if len(payload) <= 4:
        return struct.pack("<HH", dtype, len(payload)) + payload.ljust(4, b"\0")
    return struct.pack("<II", dtype, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _double_storage(arr: np.ndarray) -> tuple[int, bytes]:
    """Store integer-valued doubles in the smallest integer type, as MATLAB does."""
    if arr.size == 0:
        return _MI_UINT8, b""
    if np.isfinite(arr).all() and (arr == np.round(arr)).all():
        lo, hi = arr.min(), arr.max()
        for dt, code in _COMPACT:
            info = np.iinfo(dt)
            if info.min <= lo and hi <= info.max:
                return code, arr.astype(dt).tobytes(order="F")
    return _MI_DOUBLE, arr.tobytes(order="F")


def _matrix(value, name: str = "") -> bytes:
    """One miMATRIX element: str -> char row, list -> [n, 1] cell, ndarray -> numeric."""
    if isinstance(value, str):
        if not value.isascii():
            raise ValueError(f"MAT writer: only ASCII strings are supported, got {value!r}")
        cls, dims, data = _MX_CHAR, (1, len(value)), _element(_MI_UTF8, value.encode())
    elif isinstance(value, list):
        cls, dims, data = _MX_CELL, (len(value), 1), b"".join(_matrix(v) for v in value)
    else:
        arr = np.asarray(value)
        if arr.ndim != 2 or arr.dtype not in _NUMERIC:
            raise ValueError(f"MAT writer: need a 2-D array of {sorted(map(str, _NUMERIC))}, "
                             f"got {arr.dtype} {arr.shape}")
        cls, code = _NUMERIC[arr.dtype]
        if cls == _MX_DOUBLE:
            code, raw = _double_storage(arr)
        else:
            raw = arr.tobytes(order="F")
        dims, data = arr.shape, _element(code, raw)
    body = (_element(_MI_UINT32, struct.pack("<II", cls, 0))
            + _element(_MI_INT32, struct.pack(f"<{len(dims)}i", *dims))
            + _element(_MI_INT8, name.encode()) + data)
    return struct.pack("<II", _MI_MATRIX, len(body)) + body


def mat_bytes(variables: dict) -> bytes:
    """A MAT-file v5 holding ``variables`` in name order, each zlib-compressed.

    Values: ``str`` (char row), ``list`` (cell column, nested freely) or a 2-D numpy
    array (float64, int32, uint8, ...). The header carries no date, so equal
    variables give byte-identical files.
    """
    header = b"MATLAB 5.0 MAT-file, written by dainet.data.wider".ljust(116, b" ")
    out = [header, b"\0" * 8, struct.pack("<H", 0x0100), b"IM"]
    for name in sorted(variables):
        packed = zlib.compress(_matrix(variables[name], name), 6)
        out.append(struct.pack("<II", _MI_COMPRESSED, len(packed)) + packed)
    return b"".join(out)


def write_mat(path: str | Path, variables: dict) -> None:
    write_bytes(path, mat_bytes(variables))


# ---------------------------------------------------------------- WIDER ground truth

def _events(records: list[WiderRecord]) -> tuple[list[str], list[list[int]]]:
    """Event names in order of first appearance and, per event, its record indices."""
    order: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        order.setdefault(r.event, []).append(i)
    return list(order), list(order.values())


def wider_gt_variables(records: list[WiderRecord]) -> dict:
    """The variables of ``wider_face_val.mat`` for ``records`` (grouped by event).

    Images without faces get one all-zero box and zero labels, as in the real file.
    """
    events, groups = _events(records)

    def box_rows(r: WiderRecord) -> tuple[np.ndarray, np.ndarray]:
        if len(r.boxes_xywh) == 0:
            return np.zeros((1, 4), np.int32), np.zeros((1, len(ATTRIBUTES)), np.uint8)
        return np.round(r.boxes_xywh).astype(np.int32), r.attributes.astype(np.uint8)

    rows = [box_rows(r) for r in records]
    out = {
        "event_list": events,
        "file_list": [[records[i].stem for i in g] for g in groups],
        "face_bbx_list": [[rows[i][0] for i in g] for g in groups],
    }
    for a, attr in enumerate(ATTRIBUTES):
        out[f"{attr}_label_list"] = [[rows[i][1][:, a:a + 1] for i in g] for g in groups]
    return out


def gt_list_variable(records: list[WiderRecord], keep: list[np.ndarray]) -> list:
    """``gt_list``: per image, the 1-based indices (float64 [m, 1]) of ``keep[i]`` (bool [n_i]).

    Empty lists take the shapes MATLAB's ``find`` gave them in the real files: [0, 0]
    for an image with at most one face, [0, 1] otherwise.
    """
    _, groups = _events(records)
    idx = [(np.flatnonzero(k) + 1.0)[:, None] if k.any() else np.zeros((0, int(len(k) > 1)))
           for k in keep]
    return [[idx[i] for i in g] for g in groups]


def write_wider_gt(gt_dir: str | Path, records: list[WiderRecord],
                   keep: dict[str, list[np.ndarray]], split: str = "val") -> list[Path]:
    """Write ``wider_face_<split>.mat`` and ``wider_<level>_<split>.mat`` for each level.

    ``keep[level][i]`` is a bool [n_i] mask of the faces of ``records[i]`` that count
    at that level. Returns the written paths.
    """
    gt_dir = Path(gt_dir)
    base = wider_gt_variables(records)
    paths = [gt_dir / f"wider_face_{split}.mat"]
    write_mat(paths[0], base)
    for level, masks in keep.items():
        paths.append(gt_dir / f"wider_{level}_{split}.mat")
        write_mat(paths[-1], {**base, "gt_list": gt_list_variable(records, masks)})
    return paths


def _loadmat(path: str | Path) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read MAT file ({exc})") from None


def _cells(mat: dict, key: str, path) -> list[list]:
    """The [E, 1] cell of [n_e, 1] cells under ``key``, as nested Python lists."""
    if key not in mat:
        raise UserError(f"{path}: MAT file has no variable '{key}'")
    return [list(ev[0][:, 0]) if ev[0].size else [] for ev in mat[key]]


def read_wider_mat(path: str | Path) -> list[WiderRecord]:
    """The records of a ``wider_face_<split>.mat`` file, in file order.

    A single all-zero box is MATLAB's way to store an image without faces and is
    read back as zero boxes.
    """
    mat = _loadmat(path)
    if "event_list" not in mat:
        raise UserError(f"{path}: MAT file has no variable 'event_list'")
    events = [str(ev[0][0]) for ev in mat["event_list"]]
    files, boxes = _cells(mat, "file_list", path), _cells(mat, "face_bbx_list", path)
    # the attribute labels are optional: files that lack them read as zeros
    labels = [_cells(mat, f"{a}_label_list", path) if f"{a}_label_list" in mat else None
              for a in ATTRIBUTES]
    records = []
    for e, event in enumerate(events):
        for i, stem in enumerate(files[e]):
            b = np.asarray(boxes[e][i], np.float64).reshape(-1, 4)
            attrs = np.concatenate([np.zeros((len(b), 1)) if lab is None
                                    else np.asarray(lab[e][i]).reshape(-1, 1) for lab in labels], 1)
            if len(b) == 1 and not b.any():
                b, attrs = b[:0], attrs[:0]
            records.append(WiderRecord(f"{event}/{stem[0]}.jpg", b, attrs.astype(np.int64)))
    return records


def read_gt_list(path: str | Path) -> list[np.ndarray]:
    """``gt_list`` of a ``wider_<level>_<split>.mat`` file: per image (file order), the
    1-based face indices as int64 [m]."""
    return [np.asarray(c, np.float64).reshape(-1).astype(np.int64)
            for ev in _cells(_loadmat(path), "gt_list", path) for c in ev]
