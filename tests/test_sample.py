"""The embedded sample generator (dainet.data.synth, dainet.data.sample)."""
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from dainet.data import prepare, sample, synth
from dainet.formats import darkface, wider_mat, wider_txt
from dainet.formats.lists import read_list
from dainet.params import ParamError, load_params
from helpers import REAL_GT

REPO = Path(__file__).resolve().parents[1]


def sample_config(path: Path = REPO / "params.yaml") -> sample.SampleConfig:
    sec = load_params(path).section("sample")
    return sec.load(sample.SampleConfig, scene=sec.load(synth.SceneConfig))


def tiny_config(**over) -> sample.SampleConfig:
    cfg = sample_config()
    scene = dataclasses.replace(cfg.scene, image_side=(96, 160), face_size=(8.0, 64.0),
                                faces_per_image=(1, 4), zero_face_fraction=0.2)
    return dataclasses.replace(cfg, **{"n_train": 6, "n_val": 5, "n_dark": 3, "n_events": 3,
                                       "scene": scene, **over})


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    return sample.write_sample(out, tiny_config()), out


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_official_layout(generated):
    s, out = generated
    w = out / "widerface"
    for rel in ["wider_face_split/wider_face_train_bbx_gt.txt", "wider_face_split/wider_face_val_bbx_gt.txt",
                "wider_face_split/wider_face_val.mat", "eval_tools/ground_truth/wider_face_val.mat",
                "eval_tools/ground_truth/wider_easy_val.mat", "eval_tools/ground_truth/wider_medium_val.mat",
                "eval_tools/ground_truth/wider_hard_val.mat"]:
        assert (w / rel).is_file(), rel
    jpgs = sorted((w / "WIDER_train" / "images").glob("*--*/*.jpg"))
    assert len(jpgs) == 6 and {p.parent.name for p in jpgs} == {"0--Parade", "1--Handshaking", "2--Demonstration"}
    assert cv2.imread(str(jpgs[0])).ndim == 3
    assert sorted(p.name for p in (out / "darkface" / "image").iterdir()) == ["1.png", "2.png", "3.png"]
    assert sorted(p.name for p in (out / "darkface" / "label").iterdir()) == ["1.txt", "2.txt", "3.txt"]
    assert ((w / "wider_face_split" / "wider_face_val.mat").read_bytes()
            == (w / "eval_tools" / "ground_truth" / "wider_face_val.mat").read_bytes())


def test_generator_parser_round_trip(generated):
    s, out = generated
    for split, recs in (("train", s.train), ("val", s.val)):
        ann, image_dir = prepare.wider_paths(out / "widerface", split)
        parsed = wider_txt.read_wider_annotations(ann)
        assert [r.name for r in parsed] == [r.name for r in recs]
        for a, b in zip(parsed, recs):
            np.testing.assert_array_equal(a.boxes_xywh, b.boxes_xywh)
            np.testing.assert_array_equal(a.attributes, b.attributes)
            assert (image_dir / a.name).is_file()
    items = darkface.read_darkface(out / "darkface")
    for a, b in zip(items, s.dark):
        assert a.image == b.image
        np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)

    lists = out / "lists"
    splits = prepare.prepare_lists(out / "widerface", out / "darkface", lists)
    entries = {Path(e.image).name: e for e in read_list(lists / "val.txt")}
    with_faces = [r for r in s.val if len(r.boxes_xywh)]
    assert len(entries) == len(with_faces) == splits["val"].stats.images
    for r in with_faces:
        np.testing.assert_array_equal(entries[Path(r.name).name].boxes_xywh, r.boxes_xywh)
    mat = wider_mat.read_wider_mat(out / "widerface" / "eval_tools" / "ground_truth" / "wider_face_val.mat")
    assert [r.name for r in mat] == [r.name for r in s.val]
    for a, b in zip(mat, s.val):
        np.testing.assert_array_equal(a.boxes_xywh, b.boxes_xywh)


def signature(mat: dict) -> dict:
    """Per variable: (outer cell shape pattern, inner cell pattern, leaf types); leaf
    types are (dtype, ndim, columns), strings as 'U' whatever their length."""
    sig = {}
    for key, outer in mat.items():
        if key.startswith("__"):
            continue
        inner = list(outer[:, 0])
        leaves = [leaf for c in inner if c.dtype == object for leaf in c[:, 0]]
        sig[key] = ((outer.dtype, outer.ndim, outer.shape[1]),
                    {(c.dtype.kind, c.ndim, c.shape[1] if c.dtype == object else None) for c in inner},
                    {("U" if leaf.dtype.kind == "U" else leaf.dtype.str, leaf.ndim,
                      None if leaf.dtype.kind == "U" else leaf.shape[1]) for leaf in leaves})
    return sig


@pytest.mark.skipif(not (REAL_GT / "wider_hard_val.mat").is_file(), reason="real WIDER val ground truth not available")
@pytest.mark.parametrize("name", ["wider_face_val", "wider_easy_val", "wider_medium_val", "wider_hard_val"])
def test_mat_files_match_real_structure(generated, name):
    _, out = generated
    # mat_dtype: the MATLAB classes (the real files store integer doubles compactly, ours as doubles)
    ours = signature(scipy.io.loadmat(str(out / "widerface" / "eval_tools" / "ground_truth" / f"{name}.mat"),
                                      mat_dtype=True))
    real = signature(scipy.io.loadmat(str(REAL_GT / f"{name}.mat"), mat_dtype=True))
    assert ours.keys() == real.keys()
    for key in real:
        assert ours[key][:2] == real[key][:2], key
        # the tiny sample needs no uint16 index (real: > 255 faces) nor every empty shape
        assert ours[key][2] <= real[key][2] and bool(ours[key][2]) == bool(real[key][2]), key


def test_difficulty_levels_nest(generated):
    s, out = generated
    gt = out / "widerface" / "eval_tools" / "ground_truth"
    lists = {lvl: [i for ev in wider_mat.read_gt_list(gt / f"wider_{lvl}_val.mat") for i in ev]
             for lvl in wider_mat.GT_LEVELS}
    total = {lvl: sum(map(len, v)) for lvl, v in lists.items()}
    assert 0 < total["hard"] and total["easy"] <= total["medium"] <= total["hard"]
    for e, m, h, r in zip(lists["easy"], lists["medium"], lists["hard"], s.val):
        assert set(e) <= set(m) <= set(h) <= set(range(1, len(r.boxes_xywh) + 1))
        heights = r.boxes_xywh[:, 3]
        assert (heights[e - 1] >= 50).all() and (heights[m - 1] >= 30).all() and (heights[h - 1] >= 10).all()


def test_difficulty_masks_rule():
    boxes = np.array([[0, 0, 40, 60], [0, 0, 40, 60], [0, 0, 20, 35], [0, 0, 9, 12], [0, 0, 5, 8]], float)
    attrs = np.zeros((5, 6), np.int64)
    attrs[1, 4] = 2                                     # heavy occlusion: not easy
    m = sample.difficulty_masks(boxes, attrs, sample_config().difficulty)   # params.yaml: 50/1/1, 30/2/2, 10/2/2
    assert m["easy"].tolist() == [True, False, False, False, False]
    assert m["medium"].tolist() == [True, True, True, False, False]
    assert m["hard"].tolist() == [True, True, True, True, False]


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    cfg = tiny_config(n_train=3, n_val=2, n_dark=2)
    sample.write_sample(tmp_path / "a", cfg, workers=1)
    sample.write_sample(tmp_path / "b", cfg, workers=2)
    a, b = all_files(tmp_path / "a"), all_files(tmp_path / "b")
    assert len(a) == 3 + 2 + 2 * 2 + 2 + 5 and a == b
    sample.write_sample(tmp_path / "c", dataclasses.replace(cfg, seed=cfg.seed + 1))
    c = all_files(tmp_path / "c")
    assert a.keys() == c.keys() and a["darkface/image/1.png"] != c["darkface/image/1.png"]


def test_child_seeds_keep_other_splits(tmp_path):
    """Adding train images leaves val and dark images unchanged."""
    cfg = tiny_config(n_train=1, n_val=1, n_dark=1)
    sample.write_sample(tmp_path / "a", cfg)
    sample.write_sample(tmp_path / "b", dataclasses.replace(cfg, n_train=2))
    a, b = all_files(tmp_path / "a"), all_files(tmp_path / "b")
    assert {k: v for k, v in a.items() if "WIDER_train" not in k and "train_bbx" not in k} \
        == {k: v for k, v in b.items() if "WIDER_train" not in k and "train_bbx" not in k}


def test_boxes_are_tight_around_the_head_ellipse():
    cx, cy = np.array([50.3, 120.0]), np.array([60.7, 100.2])
    a, b, roll = np.array([12.0, 30.5]), np.array([17.0, 40.0]), np.array([25.0, -60.0])
    boxes = synth.ellipse_boxes_xywh(cx, cy, a, b, roll)
    for i in range(2):
        mask = np.zeros((200, 200), np.uint8)
        cv2.ellipse(mask, ((cx[i], cy[i]), (2 * a[i], 2 * b[i]), roll[i]), 255, -1)
        x, y, w, h = cv2.boundingRect(mask)
        bx, by, bw, bh = boxes[i]
        # cv2's rasteriser may light one extra boundary pixel: edges agree within 1 px
        assert np.abs(np.array([bx, by, bx + bw, by + bh]) - [x, y, x + w, y + h]).max() <= 1


def test_scene_faces_are_not_background():
    """Pixels inside face boxes differ from a face-free render of the same background."""
    cfg = synth.SceneConfig(image_side=(128, 128), faces_per_image=(3, 3), face_size=(24.0, 40.0),
                            zero_face_fraction=0.0, distractors=(0, 0), occlusion_prob=0.0, blur_prob=0.0)
    scene = synth.render_scene(np.random.default_rng(7), cfg)
    assert len(scene.boxes_xywh) >= 2 and (scene.attributes[:, [0, 3, 4]] == 0).all()
    # same seed without faces: the same background, drawn before any face
    empty = synth.render_scene(np.random.default_rng(7), dataclasses.replace(cfg, faces_per_image=(0, 0)))
    assert len(empty.boxes_xywh) == 0
    background = empty.image
    for x, y, w, h in scene.boxes_xywh:
        diff = np.abs(scene.image[y:y + h, x:x + w].astype(int) - background[y:y + h, x:x + w]).mean()
        assert diff > 10
        assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128


def test_low_light_is_dark_noisy_and_seeded():
    img = np.full((64, 64, 3), 180, np.uint8)
    cfg = sample_config().dark
    d1 = synth.render_low_light(img, np.random.default_rng(3), cfg)
    d2 = synth.render_low_light(img, np.random.default_rng(3), cfg)
    assert d1.dtype == np.uint8 and d1.shape == img.shape and np.array_equal(d1, d2)
    assert d1.mean() < 0.6 * img.mean()
    assert d1.astype(float).std(axis=(0, 1)).max() > 0.5                # sensor noise on a flat image


def test_params_are_read_and_checked(tmp_path):
    cfg = sample_config()
    assert cfg.n_train > 0 and cfg.dark.jpeg_quality[0] <= cfg.dark.jpeg_quality[1]
    bad = (REPO / "params.yaml").read_text().replace("blur_prob: 0.3", "blur_prob: 1.5")
    (tmp_path / "p.yaml").write_text(bad)
    with pytest.raises(ParamError, match="sample.blur_prob"):
        sample_config(tmp_path / "p.yaml")
