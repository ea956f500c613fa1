"""dainet.formats: each on-disk format's writer -> reader round trip and its errors
(file and 1-based line). WIDER annotation text and .mat files: tests/test_wider_parse.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dainet.errors import UserError
from dainet.formats import darkface, images, lists, predictions, text


# ------------------------------------------------------------------------- text

def test_read_text_drops_a_bom_and_names_undecodable_files(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"\xef\xbb\xbfhello\r\n")
    assert text.read_text(f, "list file") == "hello\r\n"
    f.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserError, match=r"a.txt: cannot read list file \(not UTF-8 text: .* at byte 0\)"):
        text.read_text(f, "list file")
    with pytest.raises(UserError, match=r"nope.txt: cannot read label file \(No such file"):
        text.read_text(tmp_path / "nope.txt", "label file")


# ---------------------------------------------------------------- DARK FACE labels

def test_darkface_label_file_round_trip(tmp_path):
    boxes = np.array([[1, 2, 30, 40], [5.5, 6, 7.25, 8]])
    path = tmp_path / "label" / "7.txt"
    darkface.write_darkface_label(path, boxes)
    assert path.read_text() == "2\n1 2 30 40\n5.5 6 7.25 8\n"
    np.testing.assert_array_equal(darkface.read_darkface_label(path), boxes)
    darkface.write_darkface_label(path, np.zeros((0, 4)))
    assert darkface.read_darkface_label(path).shape == (0, 4)


@pytest.mark.parametrize("body, line, words", [
    ("2\n1 2 3 4\n", 2, "count 2 on line 1 does not match the 1 box lines"),
    ("1\n\n1 2 nan 4\n", 3, "expected 4 finite numbers, got '1 2 nan 4'"),
    ("one\n", 1, "face count is not an integer"),
])
def test_darkface_label_file_errors_name_file_and_line(tmp_path, body, line, words):
    (tmp_path / "label").mkdir()
    path = tmp_path / "label" / "3.txt"
    path.write_text(body)
    for read in (lambda: darkface.read_darkface_label(path),
                 lambda: darkface.read_darkface_labels(tmp_path / "label"),   # evaluation
                 lambda: darkface.read_darkface(tmp_path)):                   # prepare
        with pytest.raises(UserError) as err:
            read()
        assert str(err.value).startswith(f"{path}:{line}: ") and words in str(err.value)


def test_darkface_images_found_by_the_one_suffix_list(tmp_path):
    root = tmp_path / "dark"
    for stem, suffix in (("1", ".png"), ("2", ".webp"), ("10", ".jpg")):
        darkface.write_darkface_label(root / "label" / f"{stem}.txt", [[1, 1, 5, 5]])
        (root / "image").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(root / "image" / f"{stem}{suffix}")
    Image.new("RGB", (8, 8)).save(root / "image" / "1.jpg")     # png preferred over jpg
    items = darkface.read_darkface(root)
    assert [it.image.name for it in items] == ["1.png", "2.webp", "10.jpg"]   # natural order
    assert set(darkface.read_darkface_labels(root / "label")) == {"1", "2", "10"}
    with pytest.raises(UserError, match="no label files"):
        darkface.read_darkface_labels(tmp_path)
    with pytest.raises(UserError, match="DARK FACE label folder not found"):
        darkface.read_darkface(tmp_path / "nowhere")


# --------------------------------------------------------------------- list files

def test_list_round_trip_keeps_line_numbers(tmp_path):
    entries = [lists.ListEntry("a/x.jpg", np.float32([[1, 2, 3, 4], [5.5, 6, 7, 8]]), np.int64([1, 1])),
               lists.ListEntry("b/y.png", np.zeros((0, 4), np.float32), np.zeros(0, np.int64))]
    path = tmp_path / "l.txt"
    lists.write_list(path, entries)
    assert path.read_text() == "a/x.jpg 2 1 2 3 4 1 5.5 6 7 8 1\nb/y.png 0\n"
    path.write_bytes(b"\xef\xbb\xbf\n" + path.read_bytes().replace(b"\n", b"\r\n\r\n"))
    back = lists.read_list(path)
    assert [e.image for e in back] == ["a/x.jpg", "b/y.png"]      # the BOM is not part of the path
    assert [e.line for e in back] == [2, 4]                         # blank lines counted, not listed
    np.testing.assert_array_equal(back[0].boxes_xywh, entries[0].boxes_xywh)
    np.testing.assert_array_equal(back[0].boxes_xyxy, [[1, 2, 4, 6], [5.5, 6, 12.5, 14]])
    assert back[0].boxes_xyxy.dtype == np.float32


@pytest.mark.parametrize("body, line, words", [
    ("a.jpg 1 1 2 3 4 1\n\nb.jpg 2 1 2 3 4 1\n", 3, "count 2 needs 10 numbers after it, found 5"),
    ("a.jpg x\n", 1, "face count 'x' is not an integer"),
    ("a.jpg 1 1 2 3 y 1\n", 1, "box values must be numbers"),
    ("a.jpg 1 1 2 inf 4 1\n", 1, "box values must be finite"),
    ("a.jpg\n", 1, "expected '<image> <n> x y w h c ...'"),
])
def test_list_errors_name_file_and_line(tmp_path, body, line, words):
    path = tmp_path / "l.txt"
    path.write_text(body)
    with pytest.raises(UserError) as err:
        lists.read_list(path)
    assert str(err.value).startswith(f"{path}:{line}: ") and words in str(err.value)


def test_list_unique_names_both_lines_and_empty_list_fails(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("a.jpg 0\nb.jpg 0\na.jpg 0\n")
    assert len(lists.read_list(path)) == 3
    with pytest.raises(UserError, match=r"l.txt:3: image 'a.jpg' is listed twice \(lines 1 and 3\)"):
        lists.read_list(path, unique=True)
    path.write_text("\n\n")
    with pytest.raises(UserError, match="l.txt: list file holds no images"):
        lists.read_list(path)
    with pytest.raises(UserError, match="space"):
        lists.format_entry(lists.ListEntry("a b.jpg", np.zeros((0, 4), np.float32), np.zeros(0, np.int64)))


# ---------------------------------------------------------------- prediction files

DETS = np.array([[10, 20, 39, 59, 0.9], [1.25, 2.5, 3.75, 5, 0.123456]])


def test_wider_prediction_round_trip_uses_the_plus1_convention(tmp_path):
    path = predictions.write_wider_prediction(tmp_path, "0--Parade", "0_Parade_x_1.jpg", DETS)
    assert path == tmp_path / "0--Parade" / "0_Parade_x_1.txt"
    assert path.read_text().splitlines()[:3] == ["0_Parade_x_1", "2", "10.000 20.000 30.000 40.000 0.900000"]
    back = predictions.read_wider_predictions(tmp_path)
    assert list(back) == [("0--Parade", "0_Parade_x_1")]
    xywh = back[("0--Parade", "0_Parade_x_1")]
    np.testing.assert_allclose(xywh, [[10, 20, 30, 40, 0.9], [1.25, 2.5, 3.5, 3.5, 0.123456]])
    # x2 round-trips: the evaluation's corners (x, y, x + w, y + h) with its +1 IoU
    np.testing.assert_allclose(xywh[:, 2:4] + xywh[:, :2] - 1, DETS[:, 2:4])


def test_darkface_prediction_round_trip(tmp_path):
    predictions.write_darkface_prediction(tmp_path, "my.image.png", DETS)
    predictions.write_darkface_prediction(tmp_path, "2.png", np.zeros((0, 5)))
    back = predictions.read_darkface_predictions(tmp_path)
    assert sorted(back) == ["2", "my.image"]
    np.testing.assert_allclose(back["my.image"], DETS, atol=5e-7)
    assert back["2"].shape == (0, 5)


@pytest.mark.parametrize("fmt, body, line, words", [
    ("wider", "n\n2\n1 2 3 4 0.5\n", 2, "count says 2 boxes but 1 box lines follow"),
    ("wider", "n\n1\n1 2 3 4\n", 3, "expected 5 finite numbers, got '1 2 3 4'"),
    ("wider", "n\n", 2, "expected a box count after the image name"),
    ("darkface", "1 2 3 4 0.5\n1 2 3 4 x\n", 2, "expected 5 finite numbers, got '1 2 3 4 x'"),
    ("darkface", "1 2 3 4 0.5\n\n1 2 3 4 0.1\n", 2, "expected 5 finite numbers, got ''"),   # inner blank line
    # boxes of negative size and scores off [0, 1] (evaluation used to take them; one file's
    # scores times 100 moved every AP through the set-wide normalisation)
    ("wider", "n\n2\n1 2 3 4 0.5\n1 2 -3 4 0.5\n", 4,
     "negative box width or height (x y w h score), got '1 2 -3 4 0.5'"),
    ("wider", "n\n1\n1 2 3 -0.5 0.5\n", 3, "negative box width or height"),
    ("wider", "n\n1\n1 2 3 4 1.5\n", 3, "score 1.5 is outside [0, 1] (scores are probabilities; "
                                          "the evaluation normalises them over the whole set), got '1 2 3 4 1.5'"),
    ("wider", "n\n1\n1 2 3 4 -0.1\n", 3, "score -0.1 is outside [0, 1]"),
    ("darkface", "1 2 3 4 0.5\n5 2 3 4 0.5\n", 2,
     "inverted box, x2 < x1 or y2 < y1 (x1 y1 x2 y2 score), got '5 2 3 4 0.5'"),
    ("darkface", "1 2 3 1.5 0.5\n", 1, "inverted box"),
    ("darkface", "1 2 3 4 0.5\n1 2 3 4 90\n", 2, "score 90 is outside [0, 1]"),
    ("darkface", "1 2 3 4 inf\n", 1, "expected 5 finite numbers"),
])
def test_prediction_errors_name_file_and_line(tmp_path, fmt, body, line, words):
    path = tmp_path / ("0--P/a.txt" if fmt == "wider" else "a.txt")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    read = predictions.read_wider_predictions if fmt == "wider" else predictions.read_darkface_predictions
    with pytest.raises(UserError) as err:
        read(tmp_path)
    assert str(err.value).startswith(f"{path}:{line}: ") and words in str(err.value)


def test_prediction_edge_values_accepted(tmp_path):
    """Zero-size boxes and the scores 0 and 1 are valid; so is whatever the writers write."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("1 2 1 2 0\n-5 -5 3 4 1.000000\n")
    assert predictions.read_darkface_predictions(tmp_path / "d")["a"].shape == (2, 5)
    (tmp_path / "w" / "0--P").mkdir(parents=True)
    (tmp_path / "w" / "0--P" / "a.txt").write_text("a\n2\n1 2 0 0 1\n-3 -4 5 6 0\n")
    assert predictions.read_wider_predictions(tmp_path / "w")[("0--P", "a")].shape == (2, 5)
    dets = np.array([[7.5, 8, 7.5, 8, 1.0], [3.0004, 2, 3.0001, 9, 0.0], [1, 2, 3, 4, 0.9999999]])
    predictions.write_wider_prediction(tmp_path / "w2", "0--P", "a.jpg", dets)
    predictions.write_darkface_prediction(tmp_path / "d2", "a.png", dets[:1])
    assert predictions.read_wider_predictions(tmp_path / "w2")[("0--P", "a")].shape == (3, 5)
    assert predictions.read_darkface_predictions(tmp_path / "d2")["a"].shape == (1, 5)


def test_prediction_folder_missing_and_bad_detections(tmp_path):
    with pytest.raises(UserError, match="nope: prediction folder not found"):
        predictions.read_darkface_predictions(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"\[K, 5\]"):
        predictions.darkface_prediction_text(np.zeros((2, 4)))


# -------------------------------------------------------------------------- images

def test_image_suffixes_defined_once_and_read_back(tmp_path):
    import dainet.inference.predictor as predictor_module  # noqa: F401  (imports Jittor)

    assert predictor_module.IMAGE_SUFFIXES is images.IMAGE_SUFFIXES
    assert images.IMAGE_SUFFIXES[0] == ".png" and len(set(images.IMAGE_SUFFIXES)) == len(images.IMAGE_SUFFIXES)
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(images.read_image(tmp_path / "a.png"), rgb)
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(images.ImageReadError, match=r"b.png: cannot read image \(empty file"):
        images.check_image(tmp_path / "b.png")


@pytest.mark.parametrize("suffix, mode", [(".jpg", "RGB"), (".png", "RGB"), (".png", "I;16"), (".jpg", "L")])
def test_check_image_gives_the_size_read_image_gives(tmp_path, suffix, mode):
    """prepare fits boxes to this size: a JPEG's, decoded at 1/8 scale, is still the stored one."""
    path = tmp_path / f"a{suffix}"
    Image.new(mode, (83, 45)).save(path)
    assert images.check_image(path) == (83, 45)
    assert images.read_image(path).shape == (45, 83, 3)
