"""Stage ``prepare``: annotations -> list files, statistics, missing images (dainet.data.prepare)."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from dainet.data import darkface, prepare, wider
from dainet.data.lists import read_list
from dainet.errors import UserError

REPO = Path(__file__).resolve().parents[1]
REAL_GT = REPO.parent / "shared" / "data" / "widerface_val_gt"

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


def make_wider(root: Path, text: str = TRAIN_GT, split: str = "train", images=None) -> Path:
    """A WIDER release tree holding ``text`` as the split's annotations, with a file
    for every listed image (or only for ``images``)."""
    ann, image_dir = prepare.wider_paths(root, split)
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_bytes(text.encode())
    names = images if images is not None else [r.name for r in wider.parse_wider_annotations(text)]
    for name in names:
        (image_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (image_dir / name).write_bytes(b"jpg")
    return root


def make_darkface(root: Path, labels: dict[str, str], images=None) -> Path:
    (root / "label").mkdir(parents=True, exist_ok=True)
    (root / "image").mkdir(parents=True, exist_ok=True)
    for stem, text in labels.items():
        (root / "label" / f"{stem}.txt").write_text(text)
    for stem in labels if images is None else images:
        (root / "image" / f"{stem}.png").write_bytes(b"png")
    return root


def test_degenerate_boxes_and_empty_images_are_dropped(tmp_path):
    split = prepare.prepare_wider_split(make_wider(tmp_path / "w"), "train")
    assert [Path(e.image).name for e in split.entries] == ["a.jpg", "d.jpg"]
    np.testing.assert_array_equal(split.entries[0].boxes_xywh, [[10, 10, 20, 20]])
    assert split.entries[0].image == str(tmp_path / "w" / "WIDER_train" / "images" / "0--Parade" / "a.jpg")
    assert vars(split.stats) == dict(images=2, faces=3, zero_face_images=1, dropped_degenerate_boxes=3,
                                     dropped_empty_images=2, missing_images=0)


def test_missing_images_are_reported_and_limited(tmp_path):
    root = make_wider(tmp_path / "w", images=["0--Parade/a.jpg"])    # d.jpg missing
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
    make_wider(root, "1--Riot/v.jpg\n1\n3 3 8 9 0 0 0 0 0 0\n", "val")
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
    with pytest.raises(UserError, match="no WIDER FACE annotation file"):
        prepare.prepare_lists(tmp_path, None, tmp_path / "out")


@pytest.mark.parametrize("text, line, words", [
    ("2\n1 2 3 4\n", 2, "does not match the 1 box lines"),
    ("1\n1 2 3 4\n5 6 7 8\n", 3, "does not match the 2 box lines"),
    ("x\n", 1, "not an integer"),
    ("1\n1 2 3\n", 2, "expected 'x1 y1 x2 y2'"),
    ("1\r\n1 2 a 4\r\n", 2, "expected 'x1 y1 x2 y2'"),
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
    img = tmp_path / "x.jpg"
    img.write_bytes(b"jpg")
    lst = tmp_path / "hla.txt"
    lst.write_text(f"{img} 2 1 2 3 4 1 5 5 0 3 1\r\n\r\n{img.with_name('y.jpg')} 0\r\n")
    (tmp_path / "y.jpg").write_bytes(b"jpg")
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


def test_stage_cli(tmp_path):
    root = make_wider(tmp_path / "w")
    dark = make_darkface(tmp_path / "d", {"1": "1\n10 20 30 60\n"})
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  wider_root: {root}\n  darkface_root: {dark}\n  train_list: ''\n"
                      f"  max_missing_images: 0\n")
    stage = _stage("prepare")
    args = ["--out", str(tmp_path / "l"), "--metrics", str(tmp_path / "m.json"), "--params", str(params)]
    assert stage.main(args) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert (m["train_images"], m["dark_images"], m["images"]) == (2, 1, 3)
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == ["dark.txt", "missing_images.txt", "train.txt"]

    (root / "WIDER_train" / "images" / "0--Parade" / "a.jpg").unlink()
    from dainet import cli
    with pytest.raises(SystemExit) as exc:
        cli.run(stage.main, args)
    assert exc.value.code == 2


@pytest.mark.skipif(not (REAL_GT / "wider_face_val.mat").is_file(), reason="real WIDER val ground truth not available")
def test_real_wider_val_counts(tmp_path):
    """The real val annotations (here rebuilt as bbx_gt.txt from wider_face_val.mat, which
    holds the same boxes): 3226 images, 4 without faces, 7 boxes with w or h <= 0."""
    records = wider.read_wider_mat(REAL_GT / "wider_face_val.mat")
    ann, _ = prepare.wider_paths(tmp_path, "val")
    wider.write_wider_annotations(ann, records)
    assert len(ann.read_text().splitlines()) == 3226 * 2 + 39704 + 4
    split = prepare.prepare_wider_split(tmp_path, "val", check_images=False)
    assert vars(split.stats) == dict(images=3222, faces=39697, zero_face_images=4, dropped_degenerate_boxes=7,
                                     dropped_empty_images=4, missing_images=0)
