"""WIDER FACE annotation text and ground-truth .mat files (dainet.formats.wider_txt, wider_mat)."""
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from dainet.formats import wider_mat, wider_txt
from dainet.formats.wider_txt import WiderRecord
from dainet.errors import UserError
from helpers import REAL_GT

needs_real_gt = pytest.mark.skipif(not (REAL_GT / "wider_face_val.mat").is_file(),
                                   reason="real WIDER val ground truth not available")

GOOD = """\
0--Parade/0_Parade_a_1.jpg
2
10 20 30 40 0 0 0 0 0 0 
5 6 0 8 2 1 0 1 2 1 
1--Handshaking/1_Handshaking_b_2.jpg
0
0 0 0 0 0 0 0 0 0 0 
1--Handshaking/1_Handshaking_b_3.jpg
1
7 8 9 10 1 0 0 0 1 0 
"""


def parse(text):
    return wider_txt.parse_wider_annotations(text, "gt.txt")


def test_parse_records_zero_face_and_attributes():
    recs = parse(GOOD)
    assert [r.name for r in recs] == ["0--Parade/0_Parade_a_1.jpg", "1--Handshaking/1_Handshaking_b_2.jpg",
                                      "1--Handshaking/1_Handshaking_b_3.jpg"]
    assert [r.line for r in recs] == [1, 5, 8]
    np.testing.assert_array_equal(recs[0].boxes_xywh, [[10, 20, 30, 40], [5, 6, 0, 8]])
    np.testing.assert_array_equal(recs[0].attributes[1], [2, 1, 0, 1, 2, 1])
    assert recs[1].boxes_xywh.shape == (0, 4) and recs[1].attributes.shape == (0, 6)
    assert recs[1].event == "1--Handshaking" and recs[1].stem == "1_Handshaking_b_2"


def test_crlf_parses_like_lf():
    a, b = parse(GOOD), parse(GOOD.replace("\n", "\r\n"))
    assert [r.name for r in a] == [r.name for r in b]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.boxes_xywh, y.boxes_xywh)


def test_zero_face_placeholder_may_be_absent():
    recs = parse("a/x.jpg\n0\nb/y.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n")
    assert [len(r.boxes_xywh) for r in recs] == [0, 1]


def test_format_then_parse_round_trip():
    recs = parse(GOOD)
    text = wider_txt.format_wider_annotations(recs)
    assert text.splitlines()[6] == "0 0 0 0 0 0 0 0 0 0 "       # zero-face placeholder line
    again = parse(text)
    for x, y in zip(recs, again):
        assert x.name == y.name
        np.testing.assert_array_equal(x.boxes_xywh, y.boxes_xywh)
        np.testing.assert_array_equal(x.attributes, y.attributes)


@pytest.mark.parametrize("text, line, words", [
    ("a/x.jpg\ntwo\n1 2 3 4 0 0 0 0 0 0\n", 2, "not an integer"),
    ("a/x.jpg\n1\n1 2 3 4\n", 3, "expected 10 fields"),
    ("a/x.jpg\n1\n1 2 3 x 0 0 0 0 0 0\n", 3, "must be numbers"),
    ("a/x.jpg\n1\n1 2 3 4 0.5 0 0 0 0 0\n", 3, "integers"),
    ("a/x.jpg\n3\n1 2 3 4 0 0 0 0 0 0\n1 2 3 4 0 0 0 0 0 0\n", 4, "file ends after 2 of the 3"),
    ("a/x.jpg\n", 1, "file ends before the face count"),
    ("a/x.jpg\n-1\n", 2, "negative"),
    ("a/x.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n1 2 3 4 0 0 0 0 0 0\nb/y.jpg\n0\n", 4, "count of the previous image too small"),
    ("a/x.jpg\n0\n0 0 0 1 0 0 0 0 0 0\n", 3, "line of 10 zeros"),
    ("a/x.jpg\n0\na/x.jpg\n0\n", 3, "lines 1 and 3"),
])
def test_malformed_input_names_file_and_line(text, line, words):
    for t in (text, text.replace("\n", "\r\n")):
        with pytest.raises(UserError) as err:
            parse(t)
        assert f"gt.txt:{line}:" in str(err.value) and words in str(err.value)


def test_read_missing_file_is_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        wider_txt.read_wider_annotations(tmp_path / "nope.txt")


# ---------------------------------------------------------------- .mat files

def _records():
    return [WiderRecord("0--A/a1.jpg", np.array([[1, 2, 3, 4], [5, 6, 7, 8.0]]),
                        np.array([[0, 0, 0, 0, 0, 0], [2, 1, 0, 0, 1, 0]])),
            WiderRecord("0--A/a2.jpg", np.zeros((0, 4)), np.zeros((0, 6), np.int64)),
            WiderRecord("1--B/b1.jpg", np.tile([[9, 9, 20, 30.0]], (300, 1)), np.zeros((300, 6), np.int64))]


def test_mat_written_with_matlab_classes_and_read_back(tmp_path):
    recs = _records()
    keep = [np.array([True, False]), np.zeros(0, bool), np.arange(300) % 2 == 1]
    wider_mat.write_mat(tmp_path / "g.mat", {**wider_mat.wider_gt_variables(recs),
                                             "gt_list": wider_mat.gt_list_variable(recs, keep)})
    m = scipy.io.loadmat(str(tmp_path / "g.mat"))
    assert m["event_list"].shape == (2, 1) and m["event_list"][1, 0][0] == "1--B"
    assert m["file_list"][0, 0].shape == (2, 1) and m["file_list"][0, 0][1, 0][0] == "a2"
    bbx = m["face_bbx_list"][0, 0]
    assert bbx[0, 0].dtype == np.int32 and bbx[0, 0].shape == (2, 4)
    np.testing.assert_array_equal(bbx[1, 0], [[0, 0, 0, 0]])          # zero-face image: one zero row
    assert m["blur_label_list"][0, 0][0, 0].dtype == np.uint8
    gt = m["gt_list"]
    assert gt[0, 0][0, 0].tolist() == [[1]] and gt[0, 0][1, 0].shape == (0, 0)
    assert gt[1, 0][0, 0].dtype == np.float64 and gt[1, 0][0, 0][-1, 0] == 300   # MATLAB class double
    back = wider_mat.read_wider_mat(tmp_path / "g.mat")
    assert [r.name for r in back] == [r.name for r in recs]
    for x, y in zip(back, recs):
        np.testing.assert_array_equal(x.boxes_xywh, y.boxes_xywh)
        np.testing.assert_array_equal(x.attributes, y.attributes)
    kept = wider_mat.read_wider_mat(tmp_path / "g.mat", keep_placeholder=True)
    np.testing.assert_array_equal(kept[1].boxes_xywh, [[0, 0, 0, 0]])   # what the official tool sees
    gt_lists = wider_mat.read_gt_list(tmp_path / "g.mat")
    assert [len(ev) for ev in gt_lists] == [2, 1]                       # per event, per image
    assert [g.tolist() for g in gt_lists[0]] == [[1], []]
    assert gt_lists[1][0].tolist() == list(range(2, 301, 2))


def test_mat_bytes_are_deterministic():
    """savemat dates its header; ours is fixed, so equal variables give equal files (DVC)."""
    v = wider_mat.wider_gt_variables(_records())
    data = wider_mat.mat_bytes(v)
    assert data == wider_mat.mat_bytes(v)
    assert data.startswith(b"MATLAB 5.0 MAT-file, written by dainet.formats.wider_mat")


def _contents(path: Path) -> dict:
    """Every variable of a ground-truth file as nested lists of (MATLAB class dtype, shape, values)."""
    def leaf(x):
        if x.dtype == object:
            return [leaf(c) for c in x[:, 0]]
        return (x.dtype.str, x.shape, x.tolist())
    m = scipy.io.loadmat(str(path), mat_dtype=True)
    return {k: leaf(v) for k, v in m.items() if not k.startswith("__")}


@needs_real_gt
@pytest.mark.parametrize("level", [None, "hard"])
def test_writer_reproduces_the_real_files(tmp_path, level):
    """Read a real ground-truth file, write it back: every variable holds the same MATLAB
    classes, shapes (empty ones included) and values."""
    path = REAL_GT / ("wider_face_val.mat" if level is None else f"wider_{level}_val.mat")
    recs = wider_mat.read_wider_mat(path)
    variables = wider_mat.wider_gt_variables(recs)
    if level:
        keep = []
        for r, idx in zip(recs, [i for ev in wider_mat.read_gt_list(path) for i in ev]):
            k = np.zeros(len(r.boxes_xywh), bool)
            k[idx - 1] = True
            keep.append(k)
        variables["gt_list"] = wider_mat.gt_list_variable(recs, keep)
    wider_mat.write_mat(tmp_path / "back.mat", variables)
    assert _contents(tmp_path / "back.mat") == _contents(path)


@pytest.mark.parametrize("variables, words", [
    ({"file_list": [["a"]], "face_bbx_list": [[np.zeros((1, 4), np.int32)]]}, "missing event_list"),
    ({"event_list": ["0--A", "1--B"], "file_list": [["a"]], "face_bbx_list": [[np.zeros((1, 4), np.int32)]]},
     "event_list, file_list and face_bbx_list differ in length"),
    ({"event_list": ["0--A"], "file_list": [["a", "b"]], "face_bbx_list": [[np.zeros((1, 4), np.int32)]]},
     "event 0--A: file_list and face_bbx_list"),
    ({"event_list": np.zeros((2, 2)), "file_list": [["a"]], "face_bbx_list": [[np.zeros((1, 4), np.int32)]]},
     "event_list: expected a column cell array"),
    ({"event_list": ["0--A"], "file_list": [["a"]], "face_bbx_list": [[np.zeros((2, 4), np.int32)]],
      "blur_label_list": [[np.zeros((3, 1), np.uint8)]]}, "0--A/a: 2 boxes but attribute labels of another count"),
])
def test_mat_reader_errors_name_the_file(tmp_path, variables, words):
    path = tmp_path / "wider_face_val.mat"
    wider_mat.write_mat(path, variables)
    with pytest.raises(UserError) as err:
        wider_mat.read_wider_mat(path)
    assert str(err.value).startswith(f"{path}: ") and words in str(err.value)


def test_mat_reader_missing_and_garbage_files(tmp_path):
    with pytest.raises(UserError, match="wider_face_val.mat: WIDER FACE ground-truth file not found"):
        wider_mat.read_wider_mat(tmp_path / "wider_face_val.mat")
    (tmp_path / "bad.mat").write_text("not a mat file")
    with pytest.raises(UserError, match=r"bad.mat: cannot read as a MATLAB .mat file"):
        wider_mat.read_gt_list(tmp_path / "bad.mat")


def test_read_file_with_bom_and_crlf(tmp_path):
    path = tmp_path / "wider_face_val_bbx_gt.txt"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())
    assert [r.name for r in wider_txt.read_wider_annotations(path)] == [r.name for r in parse(GOOD)]
