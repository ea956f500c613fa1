"""Training and validation datasets over a list file of generated images."""
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from dainet.data.augment import AugmentConfig
from dainet.data.dataset import PAD_LABEL, ValDataset, WiderFaceDataset, collate_detection
from dainet.formats.lists import ListEntry, write_list
from dainet.errors import UserError
from dainet.params import load_params

ROOT = Path(__file__).resolve().parents[1]
FACE_RGB = (255, 0, 0)


@pytest.fixture(scope="module")
def cfg() -> AugmentConfig:
    return replace(load_params(ROOT / "params.yaml").section("augment").load(AugmentConfig),
                   image_size=64)


def write_scene(path: Path, h: int, w: int, boxes_xywh) -> ListEntry:
    """A grey image with red filled squares at ``boxes_xywh`` (pixels), saved as PNG."""
    image = np.full((h, w, 3), 128, np.uint8)
    for x, y, bw, bh in boxes_xywh:
        image[y:y + bh, x:x + bw] = FACE_RGB
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return ListEntry(str(path), np.float32(boxes_xywh).reshape(-1, 4), np.ones(len(boxes_xywh), np.int64))


@pytest.fixture()
def list_file(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    entries = []
    for i in range(7):
        n = 1 + i % 3
        boxes = [[10 + 50 * j, int(rng.integers(5, 40)), 24 + 4 * j, 24 + 4 * j] for j in range(n)]
        entries.append(write_scene(tmp_path / f"img{i}.png", 90, 160, boxes))
    write_list(tmp_path / "train.txt", entries)
    return tmp_path / "train.txt"


def batches(ds):
    return [(img.numpy(), tgt.numpy()) for img, tgt in ds]


def test_collate_pads_with_label_minus_one():
    img = np.full((4, 4, 3), 255, np.uint8)
    images, targets = collate_detection([(img, np.float32([[0.1, 0.2, 0.3, 0.4]])),
                                         (img * 0, np.float32([[0, 0, .5, .5], [.5, .5, 1, 1]]))])
    assert images.shape == (2, 3, 4, 4) and images.dtype == np.float32
    assert images[0].min() == 1.0 and images[1].max() == 0.0
    assert targets.shape == (2, 2, 5) and targets.dtype == np.float32
    np.testing.assert_array_equal(targets[0], np.float32([[0.1, 0.2, 0.3, 0.4, 1], [0, 0, 0, 0, PAD_LABEL]]))
    np.testing.assert_array_equal(targets[1, :, 4], [1, 1])


def test_batches_have_the_documented_shapes(list_file, cfg):
    ds = WiderFaceDataset(list_file, cfg, seed=0, batch_size=3)
    out = batches(ds)
    assert len(out) == len(ds) == 2 and ds.num_images == 7  # drop_last; len() counts batches
    for images, targets in out:
        assert images.shape == (3, 3, 64, 64) and images.dtype == np.float32
        assert 0.0 <= images.min() and images.max() <= 1.0
        assert targets.ndim == 3 and targets.shape[0] == 3 and targets.shape[2] == 5
        real = targets[..., 4] == 1
        assert real.any(axis=1).all()  # every image keeps a face
        assert set(np.unique(targets[..., 4])) <= {1.0, float(PAD_LABEL)}
        np.testing.assert_array_equal(targets[~real][:, :4], 0)
        b = targets[real][:, :4]
        assert (b >= 0).all() and (b <= 1).all() and (b[:, 2:] > b[:, :2]).all()
        # the boxes sit on the red faces
        for img, tgt in zip(images, targets):
            for x1, y1, x2, y2, _ in tgt[tgt[:, 4] == 1] * [64, 64, 64, 64, 1]:
                cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
                assert img[0, cy, cx] > img[1, cy, cx] + 0.2  # red dominates (photometric is mild)


def test_same_seed_same_batches_and_epochs_differ(list_file, cfg):
    a = batches(WiderFaceDataset(list_file, cfg, seed=3, batch_size=2))
    b = batches(WiderFaceDataset(list_file, cfg, seed=3, batch_size=2))
    for (ia, ta), (ib, tb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ta, tb)
    ds = WiderFaceDataset(list_file, cfg, seed=3, batch_size=2)
    c = batches(ds.set_epoch(1))
    assert not np.array_equal(a[0][0], c[0][0])
    d = batches(WiderFaceDataset(list_file, cfg, seed=4, batch_size=2))
    assert not np.array_equal(a[0][0], d[0][0])


def test_sample_depends_only_on_seed_epoch_index(list_file, cfg):
    ds1 = WiderFaceDataset(list_file, cfg, seed=5, batch_size=2)
    ds2 = WiderFaceDataset(list_file, cfg, seed=5, batch_size=2)
    _ = ds2[0], ds2[4]  # other samples drawn first must not matter
    np.testing.assert_array_equal(ds1[3][0], ds2[3][0])
    np.testing.assert_array_equal(ds1[3][1], ds2[3][1])


def test_shuffle_order_is_per_epoch_and_resumable(list_file, cfg):
    ds = WiderFaceDataset(list_file, cfg, seed=1, batch_size=2)
    order0 = list(ds.sampler)
    assert sorted(order0) == list(range(7)) and order0 != list(range(7))
    ds.set_epoch(1)
    order1 = list(ds.sampler)
    assert order1 != order0
    full = batches(ds)
    resumed = batches(ds.set_epoch(1, start_batch=1))
    assert len(resumed) == len(full) - 1
    np.testing.assert_array_equal(resumed[0][0], full[1][0])
    assert list(WiderFaceDataset(list_file, cfg, seed=1, shuffle=False).sampler) == list(range(7))


def test_workers_give_the_same_batches(list_file, cfg):
    ds0 = WiderFaceDataset(list_file, cfg, seed=2, batch_size=2)
    ds2 = WiderFaceDataset(list_file, cfg, seed=2, batch_size=2, num_workers=2)
    try:
        for (a, ta), (b, tb) in zip(batches(ds0), batches(ds2)):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(ta, tb)
        # a new epoch restarts the workers with the new state
        for (a, _), (b, _) in zip(batches(ds0.set_epoch(1)), batches(ds2.set_epoch(1))):
            np.testing.assert_array_equal(a, b)
    finally:
        ds2.terminate()


def test_images_without_faces_are_left_out_and_empty_samples_redrawn(tmp_path, cfg):
    cfg = replace(cfg, anchor_sampling_prob=0.0)  # SSD crop: the 2-px faces of img0 always vanish
    entries = [write_scene(tmp_path / "tiny.png", 400, 400, [[50, 50, 2, 2], [200, 200, 2, 2]]),
               ListEntry(str(tmp_path / "tiny.png"), np.zeros((0, 4), np.float32), np.zeros(0, np.int64)),
               write_scene(tmp_path / "big.png", 80, 80, [[20, 20, 30, 30]])]
    write_list(tmp_path / "l.txt", entries)
    ds = WiderFaceDataset(tmp_path / "l.txt", cfg, seed=0, batch_size=1)
    assert len(ds.images) == 2  # the face-less entry is dropped
    image, boxes = ds[0]  # redrawn: comes from big.png
    assert len(boxes) == 1 and image.shape == (64, 64, 3)
    write_list(tmp_path / "tiny.txt", entries[:1])
    with pytest.raises(UserError, match=r"tiny.txt:1: no face survived"):
        WiderFaceDataset(tmp_path / "tiny.txt", cfg, max_redraws=3)[0]


def test_collate_is_pad_targets_of_face_rows():
    from dainet.boxes.matcher import pad_targets

    img = np.zeros((2, 2, 3), np.uint8)
    boxes = [np.float32([[0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]]), np.zeros((0, 4), np.float32)]
    _, targets = collate_detection([(img, b) for b in boxes])
    expected = pad_targets([np.concatenate([b, np.ones((len(b), 1), np.float32)], 1) for b in boxes])
    np.testing.assert_array_equal(targets, expected)
    assert targets.dtype == expected.dtype == np.float32 and (targets[1, :, 4] == PAD_LABEL).all()


def test_list_lines_come_from_the_reader_blank_lines_and_bom_included(tmp_path, cfg):
    good = write_scene(tmp_path / "a.png", 40, 40, [[5, 5, 20, 20]])
    missing = ListEntry(str(tmp_path / "nope.jpg"), np.float32([[1, 1, 5, 5]]), np.ones(1, np.int64))
    write_list(tmp_path / "m.txt", [good, missing])
    (tmp_path / "m.txt").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "m.txt").read_bytes().replace(b"\n", b"\n\n"))
    with pytest.raises(UserError, match=r"m.txt:3: image not found: .*nope.jpg"):
        WiderFaceDataset(tmp_path / "m.txt", cfg)


def test_missing_and_unreadable_images_name_the_list_line(tmp_path, cfg):
    good = write_scene(tmp_path / "a.png", 40, 40, [[5, 5, 20, 20]])
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    broken = ListEntry(str(tmp_path / "broken.jpg"), np.float32([[1, 1, 5, 5]]), np.ones(1, np.int64))
    missing = ListEntry(str(tmp_path / "nope.jpg"), np.float32([[1, 1, 5, 5]]), np.ones(1, np.int64))
    write_list(tmp_path / "m.txt", [good, missing])
    with pytest.raises(UserError, match=r"m.txt:2: image not found: .*nope.jpg"):
        WiderFaceDataset(tmp_path / "m.txt", cfg)
    write_list(tmp_path / "b.txt", [good, broken])
    ds = WiderFaceDataset(tmp_path / "b.txt", cfg)
    with pytest.raises(UserError, match=r"b.txt:2: cannot read image .*broken.jpg"):
        ds[1]


def test_truncated_jpeg_is_an_error_not_grey_pixels(tmp_path, cfg):
    """cv2 decoded a cut JPEG with a warning and grey rows; the one reader refuses it."""
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8))
    (tmp_path / "cut.jpg").write_bytes(buf.tobytes()[: len(buf) * 2 // 3])
    write_list(tmp_path / "c.txt", [write_scene(tmp_path / "a.png", 40, 40, [[5, 5, 20, 20]]),
                                    ListEntry(str(tmp_path / "cut.jpg"), np.float32([[1, 1, 9, 9]]),
                                              np.ones(1, np.int64))])
    with pytest.raises(UserError, match=r"c.txt:2: cannot read image .*cut.jpg \(image file is truncated"):
        ValDataset(tmp_path / "c.txt", image_size=32, min_face=1.0)[1]


def test_training_pixels_are_those_cv2_decoded(tmp_path, cfg):
    """The one reader (Pillow) gives training the pixels cv2.imread gave it: JPEG 4:2:0
    (cv2), progressive 4:2:2 and grayscale JPEG (Pillow), PNG."""
    from PIL import Image
    rng = np.random.default_rng(1)
    rgb = cv2.resize(rng.integers(0, 255, (6, 8, 3), np.uint8), (80, 60), interpolation=cv2.INTER_CUBIC)
    rgb = np.clip(rgb + rng.normal(0, 20, rgb.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    Image.fromarray(rgb).save(tmp_path / "b.jpg", quality=90, subsampling=1, progressive=True)
    Image.fromarray(rgb[..., 1]).save(tmp_path / "c.jpg")
    cv2.imwrite(str(tmp_path / "d.png"), rgb[..., ::-1])
    names = ["a.jpg", "b.jpg", "c.jpg", "d.png"]
    write_list(tmp_path / "p.txt", [ListEntry(str(tmp_path / n), np.float32([[1, 1, 30, 30]]),
                                              np.ones(1, np.int64)) for n in names])
    ds = ValDataset(tmp_path / "p.txt", image_size=32, min_face=1.0)
    for i, name in enumerate(names):
        expected = cv2.cvtColor(cv2.imread(str(tmp_path / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(ds.load_image(i), expected, err_msg=name)


WORKER_SCRIPT = """
import sys
from dataclasses import replace
from dainet import cli

def main(argv):
    params, list_file, victim = argv
    from dainet.data.augment import AugmentConfig
    from dainet.data.dataset import WiderFaceDataset
    from dainet.params import load_params
    cfg = replace(load_params(params).section("augment").load(AugmentConfig), image_size=64)
    ds = WiderFaceDataset(list_file, cfg, seed=0, batch_size=2, shuffle=False, num_workers=2)
    open(victim, "w").write("no longer an image")   # after the list was checked
    n = 0
    for _ in ds:
        n += 1
        print("batch", n, flush=True)
    return 0

cli.run(main, sys.argv[1:])
"""


def test_unreadable_image_in_a_worker_is_one_line_user_error(list_file, tmp_path):
    """num_workers 2: the worker's error ends the run as a one-line UserError (exit 2), not a
    worker traceback and an interrupted main process."""
    script = tmp_path / "workers.py"
    script.write_text(WORKER_SCRIPT)
    victim = list_file.parent / "img2.png"   # line 3: the second batch (no shuffle, batch 2)
    run = subprocess.run([sys.executable, str(script), str(ROOT / "params.yaml"), str(list_file), str(victim)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    out = run.stdout + run.stderr
    assert run.returncode == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "batch 1" in run.stdout                      # the first batch came through the workers
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"train.txt:3: cannot read image {victim}" in last, last
    assert "not an image file" in last


def test_val_dataset_resizes_deterministically(tmp_path):
    entries = [write_scene(tmp_path / "v0.png", 100, 200, [[20, 10, 40, 50], [150, 60, 4, 4]]),
               write_scene(tmp_path / "v1.png", 64, 64, [[0, 0, 10, 10]])]
    write_list(tmp_path / "val.txt", entries)
    ds = ValDataset(tmp_path / "val.txt", image_size=50, min_face=3.0, batch_size=2)
    image, boxes = ds[0]
    assert image.shape == (50, 50, 3)
    # box 0 scaled by (50/200, 50/100); box 1 becomes 1 x 2 px < 3 x 3 and is dropped
    np.testing.assert_allclose(boxes, [[20 / 200, 10 / 100, 60 / 200, 60 / 100]], rtol=1e-6)
    (images, targets), = batches(ds)
    (images2, _), = batches(ValDataset(tmp_path / "val.txt", image_size=50, min_face=3.0, batch_size=2))
    np.testing.assert_array_equal(images, images2)
    assert images.shape == (2, 3, 50, 50) and targets.shape == (2, 1, 5)
    assert (targets[:, 0, 4] == 1).all()


MPI_SCRIPT = """
import sys
import numpy as np
from dataclasses import replace
from dainet.data.augment import AugmentConfig
from dainet.data.dataset import WiderFaceDataset
from dainet.params import load_params
import jittor as jt
cfg = replace(load_params(sys.argv[1]).section("augment").load(AugmentConfig), image_size=64)
ds = WiderFaceDataset(sys.argv[2], cfg, seed=1, batch_size=1)
np.save(f"{sys.argv[3]}/rank{jt.rank}.npy", np.stack([img.numpy()[0] for img, _ in ds]))
"""


@pytest.mark.mpi
@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")
def test_mpi_ranks_read_their_own_half_of_each_global_batch(list_file, cfg, tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(MPI_SCRIPT)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    run = subprocess.run(["mpirun", "-np", "2", sys.executable, str(script), str(ROOT / "params.yaml"),
                          str(list_file), str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    single_process = WiderFaceDataset(list_file, cfg, seed=1, batch_size=2)
    single = np.concatenate([img for img, _ in batches(single_process)])
    for rank in (0, 1):
        np.testing.assert_array_equal(np.load(tmp_path / f"rank{rank}.npy"), single[rank::2])
