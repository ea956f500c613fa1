"""WIDER FACE evaluation ground truth, the ``.mat`` files of ``eval_tools/ground_truth``
(spec §11). Variables of shape [E, 1] (one row per event, E = 61 for the real val
split), each a cell array:

- ``event_list{e}``: char, the event folder name (``0--Parade``);
- ``file_list{e}{i}``: char, the image name without ``.jpg``;
- ``face_bbx_list{e}{i}``: int32 [n, 4] boxes, xywh pixels; an image without faces
  holds one row of zeros (the placeholder);
- ``<attr>_label_list{e}{i}``: uint8 [n, 1] for the six WIDER attributes;
- ``gt_list{e}{i}`` (easy / medium / hard files only): double [m, 1], the 1-based
  indices of the faces that count at that difficulty; an empty list is [0, 0] for an
  image with at most one face, [0, 1] otherwise (the shapes MATLAB's ``find`` gave).

Read with ``scipy.io.loadmat``, written with ``scipy.io.savemat`` (MAT v5, compressed).
The real files were saved by MATLAB, which stores integer-valued doubles compactly
(``loadmat`` returns ``gt_list`` as uint8 / uint16 for them, float64 for ours): the
readers convert, so both read the same.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from dainet.errors import UserError
from dainet.formats.wider_txt import ATTRIBUTES, WiderRecord
from dainet.utils.fileio import write_bytes

GT_LEVELS = ("easy", "medium", "hard")
FACE_VARIABLES = ("event_list", "file_list", "face_bbx_list")
# savemat writes the creation time into the 116-byte description; a fixed one keeps
# equal variables byte-identical (DVC caches the sample by content).
_HEADER = b"MATLAB 5.0 MAT-file, written by dainet.formats.wider_mat".ljust(116, b" ")


# ---------------------------------------------------------------------------- writing

def _cell(values: list) -> np.ndarray:
    """A MATLAB ``{n x 1}`` cell array of ``values`` (str -> char row, list -> cell, array)."""
    out = np.empty((len(values), 1), dtype=object)
    for k, v in enumerate(values):
        out[k, 0] = _cell(v) if isinstance(v, list) else v
    return out


def mat_bytes(variables: dict) -> bytes:
    """A MAT v5 file holding ``variables``: ``str`` (char row), ``list`` (cell column,
    nested freely) or 2-D numpy arrays (their class is their dtype)."""
    buf = io.BytesIO()
    import scipy.io

    scipy.io.savemat(buf, {k: _cell(v) if isinstance(v, list) else v for k, v in sorted(variables.items())},
                     do_compression=True, oned_as="column")
    return _HEADER + buf.getvalue()[len(_HEADER):]


def write_mat(path: str | Path, variables: dict) -> None:
    write_bytes(path, mat_bytes(variables))


def _events(records: Sequence[WiderRecord]) -> tuple[list[str], list[list[int]]]:
    """Event names in order of first appearance and, per event, its record indices."""
    order: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        order.setdefault(r.event, []).append(i)
    return list(order), list(order.values())


def wider_gt_variables(records: Sequence[WiderRecord]) -> dict:
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


def gt_list_variable(records: Sequence[WiderRecord], keep: Sequence[np.ndarray]) -> list:
    """``gt_list``: per image, the 1-based indices (float64 [m, 1]) of ``keep[i]`` (bool [n_i]).

    Empty lists take the shapes of the real files: [0, 0] for an image with at most
    one face, [0, 1] otherwise.
    """
    _, groups = _events(records)
    idx = [(np.flatnonzero(k) + 1.0)[:, None] if k.any() else np.zeros((0, int(len(k) > 1)))
           for k in keep]
    return [[idx[i] for i in g] for g in groups]


def write_wider_gt(gt_dir: str | Path, records: Sequence[WiderRecord],
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


# ---------------------------------------------------------------------------- reading

def load_mat(path: str | Path, keys: Sequence[str]) -> dict:
    """``scipy.io.loadmat`` of a WIDER ground-truth file that must hold ``keys``."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: WIDER FACE ground-truth file not found")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a bad .mat
        raise UserError(f"{path}: cannot read as a MATLAB .mat file ({exc})") from None
    missing = [k for k in keys if k not in mat]
    if missing:
        raise UserError(f"{path}: not a WIDER FACE ground-truth file (missing {', '.join(missing)})")
    return mat


def _cell_column(mat: dict, key: str, path: Path) -> list:
    """A MATLAB ``{n x 1}`` cell array as a list of its n entries."""
    cells = mat[key]
    if cells.dtype != object or cells.ndim != 2 or cells.shape[1] != 1:
        raise UserError(f"{path}: {key}: expected a column cell array, got shape {cells.shape}")
    return [c for c in cells[:, 0]]


def _nested(mat: dict, key: str, path: Path) -> list[list]:
    """``{E x 1}`` cell of ``{n_e x 1}`` cells -> per event the list of its n_e entries."""
    return [list(_cell_column({key: c}, key, path)) if c.size else []
            for c in _cell_column(mat, key, path)]


def _cell_str(cell, key: str, path: Path) -> str:
    flat = np.asarray(cell).ravel()
    if flat.size == 0:
        raise UserError(f"{path}: {key}: empty name")
    return str(flat[0])


def read_wider_mat(path: str | Path, keep_placeholder: bool = False) -> list[WiderRecord]:
    """The images of a ``wider_face_<split>.mat`` file (or of a level file: it holds the
    same variables), in file order, as records with xywh float64 boxes.

    The one all-zero box of an image without faces is read as zero boxes, unless
    ``keep_placeholder`` (the evaluation keeps it, as the official tool does: it is an
    "ignore" face of that image). Attribute labels are optional (zeros when absent).
    """
    path = Path(path)
    mat = load_mat(path, FACE_VARIABLES)
    events = [_cell_str(e, "event_list", path) for e in _cell_column(mat, "event_list", path)]
    files = _nested(mat, "file_list", path)
    boxes = _nested(mat, "face_bbx_list", path)
    if not len(events) == len(files) == len(boxes):
        raise UserError(f"{path}: event_list, file_list and face_bbx_list differ in length")
    labels = [_nested(mat, f"{a}_label_list", path) if f"{a}_label_list" in mat else None
              for a in ATTRIBUTES]
    for event, f, *per_image in zip(events, files, boxes, *[lab for lab in labels if lab is not None]):
        if any(len(v) != len(f) for v in per_image):
            raise UserError(f"{path}: event {event}: file_list and face_bbx_list (or a label "
                            f"list) differ in length")
    records = []
    for e, event in enumerate(events):
        for i, stem in enumerate(files[e]):
            name = f"{event}/{_cell_str(stem, 'file_list', path)}"
            b = np.asarray(boxes[e][i], np.float64).reshape(-1, 4)
            cols = [np.zeros((len(b), 1)) if lab is None else np.asarray(lab[e][i]).reshape(-1, 1)
                    for lab in labels]
            if any(len(c) != len(b) for c in cols):
                raise UserError(f"{path}: {name}: {len(b)} boxes but attribute labels of another count")
            attrs = np.concatenate(cols, 1)
            if not keep_placeholder and len(b) == 1 and not b.any():
                b, attrs = b[:0], attrs[:0]
            records.append(WiderRecord(f"{name}.jpg", b, attrs.astype(np.int64)))
    return records


def read_gt_list(path: str | Path) -> list[list[np.ndarray]]:
    """``gt_list`` of a ``wider_<level>_<split>.mat`` file: per event, per image, the
    1-based face indices as int64 [m]."""
    path = Path(path)
    return [[np.asarray(c, np.float64).reshape(-1).astype(np.int64) for c in ev]
            for ev in _nested(load_mat(path, ("gt_list",)), "gt_list", path)]
