"""Stage ``prepare``: annotations -> list files, statistics, missing images (dainet.data.prepare)."""
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dainet.data import prepare
from dainet.formats import darkface, wider_mat, wider_txt
from dainet.formats.lists import read_list
from dainet.errors import UserError
from helpers import REAL_GT

REPO = Path(__file__).resolve().parents[1]

TRAIN_GT = """\
0--Parade/a.jpg
3
10 10 20 20 0 0 0 0 0 0 
5 5 0 9 0 0 0 0 0 0 
5 5 9 -1 0 0 0 0 0 0 
0--Parade/b.jpg
0
0 0 0 0 0 0 0 0 0 0 
1--Riot/c.jpg
1
1 1 0 0 0 0 0 0 0 0 
1--Riot/d.jpg
2
1 2 3 4 0 0 0 0 0 0 
4 3 2 1 0 0 0 0 0 0 
"""

VAL_GT = "1--Riot/v.jpg\n1\n3 3 8 9 0 0 0 0 0 0\n"


def image_bytes(ext: str, hw=(12, 16)) -> bytes:
    """A small real image file's bytes (``.jpg`` or ``.png``)."""
    pixels = np.random.default_rng(0).integers(0, 255, hw + (3,), np.uint8)
    return cv2.imencode(ext, pixels)[1].tobytes()


JPG, PNG = image_bytes(".jpg", (64, 64)), image_bytes(".png", (64, 64))   # every fixture box fits


def make_wider(root: Path, text: str = TRAIN_GT, split: str = "train", images=None) -> Path:
    """A WIDER release tree holding ``text`` as the split's annotations, with a file
    for every listed image (or only for ``images``)."""
    ann, image_dir = prepare.wider_paths(root, split)
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_bytes(text.encode())
    names = images if images is not None else [r.name for r in wider_txt.parse_wider_annotations(text)]
    for name in names:
        (image_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (image_dir / name).write_bytes(JPG)
    return root


def make_darkface(root: Path, labels: dict[str, str], images=None) -> Path:
    (root / "label").mkdir(parents=True, exist_ok=True)
    (root / "image").mkdir(parents=True, exist_ok=True)
    for stem, text in labels.items():
        (root / "label" / f"{stem}.txt").write_text(text)
    for stem in labels if images is None else images:
        (root / "image" / f"{stem}.png").write_bytes(PNG)
    return root


def test_degenerate_boxes_and_empty_images_are_dropped(tmp_path):
    split = prepare.prepare_wider_split(make_wider(tmp_path / "w"), "train")
    assert [Path(e.image).name for e in split.entries] == ["a.jpg", "d.jpg"]
    np.testing.assert_array_equal(split.entries[0].boxes_xywh, [[10, 10, 20, 20]])
    assert split.entries[0].image == str(tmp_path / "w" / "WIDER_train" / "images" / "0--Parade" / "a.jpg")
    assert vars(split.stats) == dict(images=2, faces=3, zero_face_images=1, dropped_degenerate_boxes=3,
                                     dropped_outside_boxes=0, partly_outside_boxes=0, dropped_empty_images=2,
                                     missing_images=0, bad_images=0, unlabelled_images=0)


def test_missing_images_are_reported_and_limited(tmp_path):
    root = make_wider(tmp_path / "w", images=["0--Parade/a.jpg"])    # d.jpg missing
    make_wider(root, VAL_GT, "val")
    out = tmp_path / "lists"
    with pytest.raises(UserError, match=r"1 image file missing .*at most 0 allowed"):
        prepare.prepare_lists(root, None, out, max_missing_images=0)
    missing = (out / "missing_images.txt").read_text().splitlines()
    assert missing == [str(root / "WIDER_train" / "images" / "1--Riot" / "d.jpg")]
    assert not (out / "train.txt").exists()

    splits = prepare.prepare_lists(root, None, out, max_missing_images=1)
    assert [Path(e.image).name for e in read_list(out / "train.txt")] == ["a.jpg"]
    assert prepare.metrics(splits)["train_missing_images"] == 1


def test_duplicate_wider_image_names_both_lines(tmp_path):
    text = "0--P/a.jpg\n1\n1 1 5 5 0 0 0 0 0 0\n0--P/a.jpg\n1\n2 2 5 5 0 0 0 0 0 0\n"
    with pytest.raises(UserError, match=r"wider_face_train_bbx_gt.txt:4: .*lines 1 and 4"):
        prepare.prepare_wider_split(make_wider(tmp_path / "w", text, images=["0--P/a.jpg"]), "train")


def test_lists_metrics_and_splits(tmp_path):
    root = make_wider(tmp_path / "w")
    make_wider(root, VAL_GT, "val")
    dark = make_darkface(tmp_path / "d", {"1": "1\n10 20 30 60\n", "2": "0\n", "10": "2\n0 0 5 5\n1 1 1 9\n"})
    out = tmp_path / "lists"
    m = prepare.metrics(prepare.prepare_lists(root, dark, out))
    assert m["images"] == 2 + 1 + 2 and m["faces"] == 3 + 1 + 2
    assert m["val_images"] == 1 and m["dark_zero_face_images"] == 1
    assert m["dark_dropped_degenerate_boxes"] == 1 and m["dropped_degenerate_boxes"] == 4
    assert (out / "missing_images.txt").read_text() == ""
    d = read_list(out / "dark.txt")
    assert [Path(e.image).name for e in d] == ["1.png", "10.png"]               # natural order
    np.testing.assert_array_equal(d[0].boxes_xywh, [[10, 20, 20, 40]])       # xyxy -> xywh
    np.testing.assert_array_equal(d[0].boxes_xyxy, [[10, 20, 30, 60]])


def test_relative_root_gives_relative_paths(tmp_path, monkeypatch):
    make_wider(tmp_path / "w")
    monkeypatch.chdir(tmp_path)
    split = prepare.prepare_wider_split("w", "train")
    assert split.entries[0].image == str(Path("w/WIDER_train/images/0--Parade/a.jpg"))


def test_no_annotations_is_user_error(tmp_path):
    with pytest.raises(UserError, match="wider_face_train_bbx_gt.txt: WIDER FACE annotation file not found"):
        prepare.prepare_lists(tmp_path, None, tmp_path / "out")


def test_missing_train_annotations_fail_naming_the_file(tmp_path):
    """Only the val annotations: prepare used to succeed without train.txt (train failed next)."""
    root = make_wider(tmp_path / "w", VAL_GT, "val")
    out = tmp_path / "lists"
    expected = prepare.wider_paths(root, "train")[0]
    with pytest.raises(UserError) as err:
        prepare.prepare_lists(root, None, out)
    assert str(err.value).startswith(f"{expected}: WIDER FACE annotation file not found; train.txt is made")
    assert "data.train_list" in str(err.value) and not out.exists()
    # a ready-made train list stands in for it
    (tmp_path / "x.jpg").write_bytes(JPG)
    (tmp_path / "hla.txt").write_text(f"{tmp_path / 'x.jpg'} 1 1 2 3 4 1\n")
    assert sorted(prepare.prepare_lists(root, None, out, train_list=tmp_path / "hla.txt")) == ["train", "val"]
    # the val annotations are as necessary (train and predict read val.txt)
    prepare.wider_paths(root, "val")[0].unlink()
    with pytest.raises(UserError, match=r"wider_face_val_bbx_gt.txt: WIDER FACE annotation file not found; "
                                        r"val.txt is made from it$"):
        prepare.prepare_lists(root, None, out, train_list=tmp_path / "hla.txt")


def test_undecodable_images_are_reported_and_limited(tmp_path):
    """Zero bytes, text named .jpg, truncated JPEG / PNG: found but not decodable. prepare
    used to list them (training then read grey pixels or died hours later)."""
    text = "".join(f"0--P/{n}\n1\n1 1 5 5 0 0 0 0 0 0\n" for n in ("a.jpg", "zero.jpg", "text.jpg", "cut.jpg"))
    root = make_wider(tmp_path / "w", text)
    image_dir = prepare.wider_paths(root, "train")[1] / "0--P"
    (image_dir / "zero.jpg").write_bytes(b"")
    (image_dir / "text.jpg").write_text("<html>404 not found</html>\n")
    big = image_bytes(".jpg", (64, 64))
    (image_dir / "cut.jpg").write_bytes(big[: len(big) // 2])
    make_wider(root, "1--R/v.jpg\n1\n3 3 8 9 0 0 0 0 0 0\n", "val")
    dark = make_darkface(tmp_path / "d", {"1": "1\n1 1 9 9\n", "2": "1\n1 1 9 9\n"})
    png = image_bytes(".png", (64, 64))
    (dark / "image" / "2.png").write_bytes(png[: len(png) - 12])      # no IEND: cut short
    out = tmp_path / "lists"

    with pytest.raises(UserError) as err:
        prepare.prepare_lists(root, dark, out, max_bad_images=3)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("4 image files cannot be decoded (3 in ")
    assert f", 1 in {dark}), the first: {image_dir / 'zero.jpg'}: cannot read image (empty file (0 bytes))" in msg
    assert msg.endswith(f"at most 3 allowed (data.max_bad_images); see {out / 'bad_images.txt'}")
    assert not (out / "train.txt").exists()
    rows = [line.split("\t") for line in (out / "bad_images.txt").read_text().splitlines()]
    assert [Path(p).name for p, _ in rows] == ["zero.jpg", "text.jpg", "cut.jpg", "2.png"]
    assert "not an image" in rows[1][1] and "truncated" in rows[2][1] and "truncated PNG" in rows[3][1]

    seen = []
    splits = prepare.prepare_lists(root, dark, out, max_bad_images=4,
                                   progress=lambda it, split, total: seen.append((split, total)) or it)
    assert seen == [("train", 4), ("val", 1), ("dark", 2)]
    assert [Path(e.image).name for e in read_list(out / "train.txt")] == ["a.jpg"]
    assert [Path(e.image).name for e in read_list(out / "dark.txt")] == ["1.png"]
    m = prepare.metrics(splits)
    assert (m["bad_images"], m["train_bad_images"], m["val_bad_images"], m["dark_bad_images"]) == (4, 3, 0, 1)
    assert (m["train_images"], m["missing_images"]) == (1, 0)


def test_boxes_outside_the_image_are_dropped_and_partly_outside_counted(tmp_path):
    """A face box entirely outside its image used to be listed as a face (training then
    labelled padding as a face). Sizes come from the image check (64 x 48 here)."""
    text = ("0--P/a.jpg\n6\n"
            "1 1 5 5 0 0 0 0 0 0\n"          # inside: kept as is
            "70 2 5 5 0 0 0 0 0 0\n"         # right of the image: dropped
            "-10 1 5 5 0 0 0 0 0 0\n"        # left of it (x2 = -5): dropped
            "64 1 3 3 0 0 0 0 0 0\n"         # starts at x = W: no overlap with [0, W), dropped
            "60 40 10 10 0 0 0 0 0 0\n"      # partly outside: counted, kept as annotated
            "-2 -3 5 6.5 0 0 0 0 0 0\n"      # partly outside: counted, kept as annotated
            "0--P/b.jpg\n1\n10 48 5 5 0 0 0 0 0 0\n")   # below the image: the image goes too
    root = make_wider(tmp_path / "w", text)
    for name in ("a.jpg", "b.jpg"):
        (prepare.wider_paths(root, "train")[1] / "0--P" / name).write_bytes(image_bytes(".jpg", (48, 64)))
    make_wider(root, VAL_GT, "val")
    dark = make_darkface(tmp_path / "d", {"1": "2\n10 20 30 60\n100 0 120 9\n", "2": "1\n-5 60 10 70\n"})
    out = tmp_path / "lists"
    splits = prepare.prepare_lists(root, dark, out)

    train = read_list(out / "train.txt")
    assert [Path(e.image).name for e in train] == ["a.jpg"]
    np.testing.assert_array_equal(train[0].boxes_xywh, [[1, 1, 5, 5], [60, 40, 10, 10], [-2, -3, 5, 6.5]])
    s = splits["train"].stats
    assert (s.dropped_outside_boxes, s.partly_outside_boxes, s.dropped_empty_images) == (4, 2, 1)
    assert (s.images, s.faces) == (1, 3)
    dark_list = read_list(out / "dark.txt")                            # 64 x 64 images
    assert [Path(e.image).name for e in dark_list] == ["1.png", "2.png"]
    np.testing.assert_array_equal(dark_list[0].boxes_xywh, [[10, 20, 20, 40]])
    np.testing.assert_array_equal(dark_list[1].boxes_xywh, [[-5, 60, 15, 10]])
    m = prepare.metrics(splits)
    assert (m["dropped_outside_boxes"], m["partly_outside_boxes"]) == (5, 3)
    assert (m["train_dropped_outside_boxes"], m["train_partly_outside_boxes"], m["val_dropped_outside_boxes"],
            m["dark_dropped_outside_boxes"], m["dark_partly_outside_boxes"]) == (4, 2, 0, 1, 1)
    assert (m["train_faces"], m["dark_faces"], m["faces"]) == (3, 2, 6)


def test_darkface_images_without_labels_are_counted(tmp_path):
    """An image without its label file is not listed (it has no boxes): it used to go
    uncounted, with the summary saying "0 missing"."""
    dark = make_darkface(tmp_path / "d", {"1": "1\n1 1 9 9\n"}, images=["1", "2", "10"])
    (dark / "image" / "10.jpg").write_bytes(JPG)                     # one stem, two files: one image
    split = prepare.prepare_darkface(dark)
    assert [Path(e.image).name for e in split.entries] == ["1.png"]
    assert split.stats.unlabelled_images == 2
    assert split.unlabelled == [str(dark / "image" / "2.png"), str(dark / "image" / "10.png")]
    assert darkface.unlabelled_darkface_images(dark) == [dark / "image" / "2.png", dark / "image" / "10.png"]
    root = make_wider(tmp_path / "w")
    make_wider(root, VAL_GT, "val")
    m = prepare.metrics(prepare.prepare_lists(root, dark, tmp_path / "lists"))
    assert (m["unlabelled_images"], m["dark_unlabelled_images"], m["train_unlabelled_images"]) == (2, 2, 0)


@pytest.mark.parametrize("text, line, words", [
    ("2\n1 2 3 4\n", 2, "does not match the 1 box lines"),
    ("1\n1 2 3 4\n5 6 7 8\n", 3, "does not match the 2 box lines"),
    ("x\n", 1, "not an integer"),
    ("1\n1 2 3\n", 2, "expected 4 finite numbers, got '1 2 3'"),
    ("1\r\n1 2 a 4\r\n", 2, "expected 4 finite numbers, got '1 2 a 4'"),
    ("1\n1 2 inf 4\n", 2, "expected 4 finite numbers"),
    ("", 1, "empty label file"),
])
def test_darkface_label_errors(text, line, words):
    with pytest.raises(UserError) as err:
        darkface.parse_darkface_label(text, "lab.txt")
    assert f"lab.txt:{line}:" in str(err.value) and words in str(err.value)


def test_darkface_label_round_trip_crlf():
    boxes = np.array([[1, 2, 30, 40], [5.5, 6, 7, 8]])
    text = darkface.format_darkface_label(boxes)
    assert text.splitlines()[0] == "2"
    np.testing.assert_array_equal(darkface.parse_darkface_label(text.replace("\n", "\r\n")), boxes)


def test_darkface_missing_image_counted(tmp_path):
    dark = make_darkface(tmp_path / "d", {"1": "1\n1 1 9 9\n", "2": "1\n1 1 9 9\n"}, images=["1"])
    split = prepare.prepare_darkface(dark)
    assert split.stats.missing_images == 1 and split.missing == [str(dark / "image" / "2.png")]


def test_train_list_override(tmp_path):
    root = make_wider(tmp_path / "w")
    make_wider(root, VAL_GT, "val")
    img = tmp_path / "x.jpg"
    img.write_bytes(JPG)
    lst = tmp_path / "hla.txt"
    lst.write_text(f"{img} 2 1 2 3 4 1 5 5 0 3 1\r\n\r\n{img.with_name('y.jpg')} 0\r\n")
    (tmp_path / "y.jpg").write_bytes(JPG)
    out = tmp_path / "lists"
    splits = prepare.prepare_lists(root, None, out, train_list=lst)
    entries = read_list(out / "train.txt")
    assert [e.image for e in entries] == [str(img)]
    np.testing.assert_array_equal(entries[0].boxes_xywh, [[1, 2, 3, 4]])
    assert splits["train"].stats.dropped_degenerate_boxes == 1 and splits["train"].stats.zero_face_images == 1

    lst.write_text(f"{img} 1 1 2 3 4 1\n\n{img} 1 1 2 3 4 1\n")
    with pytest.raises(UserError, match=r"hla.txt:3: .*lines 1 and 3"):
        prepare.prepare_lists(root, None, out, train_list=lst)
    lst.write_text(f"{img} 2 1 2 3 4 1\n")
    with pytest.raises(UserError, match=r"hla.txt:1: count 2 needs 10 numbers"):
        prepare.prepare_lists(root, None, out, train_list=lst)


def _stage(name):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stage_cli(tmp_path, capsys):
    root = make_wider(tmp_path / "w")
    make_wider(root, VAL_GT, "val")
    dark = make_darkface(tmp_path / "d", {"1": "1\n10 20 30 60\n"})
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  wider_root: {root}\n  darkface_root: {dark}\n  train_list: ''\n"
                      f"  max_missing_images: 0\n  max_bad_images: 0\n")
    stage = _stage("prepare")
    args = ["--out", str(tmp_path / "l"), "--metrics", str(tmp_path / "m.json"), "--params", str(params)]
    assert stage.main(args) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert (m["train_images"], m["val_images"], m["dark_images"], m["images"]) == (2, 1, 1, 4)
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == \
        ["bad_images.txt", "dark.txt", "missing_images.txt", "train.txt", "val.txt"]
    assert (m["bad_images"], m["train_bad_images"]) == (0, 0)
    assert (m["dropped_outside_boxes"], m["partly_outside_boxes"], m["dark_unlabelled_images"]) == (0, 0, 0)
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.endswith("; dropped 3 degenerate boxes, 0 boxes outside their image, 2 empty images; "
                            "kept 0 boxes partly outside their image; 0 missing, 0 undecodable, "
                            "0 unlabelled DARK FACE images (not listed)")

    (dark / "label" / "1.txt").write_text("2\n10 20 30 60\n70 0 80 9\n")   # the second right of the image
    (dark / "image" / "2.png").write_bytes(PNG)                              # no label file
    assert stage.main(args) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert (m["dark_dropped_outside_boxes"], m["dark_unlabelled_images"], m["dark_faces"]) == (1, 1, 1)
    assert "dropped 3 degenerate boxes, 1 boxes outside their image, 2 empty images; kept 0 boxes partly " \
        "outside their image; 0 missing, 0 undecodable, 1 unlabelled DARK FACE images (not listed)" \
        in capsys.readouterr().out

    from dainet import cli
    bad = root / "WIDER_train" / "images" / "0--Parade" / "a.jpg"
    bad.write_bytes(JPG[:-40])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.run(stage.main, args)
    assert exc.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "prepare: check" not in ln]
    assert len(err) == 1 and err[0].startswith("error: 1 image file cannot be decoded")
    assert f"the first: {bad}: cannot read image (image file is truncated" in err[0]

    bad.unlink()
    with pytest.raises(SystemExit) as exc:
        cli.run(stage.main, args)
    assert exc.value.code == 2


@pytest.mark.skipif(not (REAL_GT / "wider_face_val.mat").is_file(), reason="real WIDER val ground truth not available")
def test_real_wider_val_counts(tmp_path):
    """The real val annotations (here rebuilt as bbx_gt.txt from wider_face_val.mat, which
    holds the same boxes): 3226 images, 4 without faces, 7 boxes with w or h <= 0."""
    records = wider_mat.read_wider_mat(REAL_GT / "wider_face_val.mat")
    ann, _ = prepare.wider_paths(tmp_path, "val")
    wider_txt.write_wider_annotations(ann, records)
    assert len(ann.read_text().splitlines()) == 3226 * 2 + 39704 + 4
    split = prepare.prepare_wider_split(tmp_path, "val", check_images=False)
    assert vars(split.stats) == dict(images=3222, faces=39697, zero_face_images=4, dropped_degenerate_boxes=7,
                                     dropped_outside_boxes=0, partly_outside_boxes=0, dropped_empty_images=4,
                                     missing_images=0, bad_images=0, unlabelled_images=0)
