"""Visualize stage and its pictures: detections, reflectance, feature-map grids."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import dainet.jt  # noqa: F401  (configures Jittor before it loads)

from dainet.formats.images import to_uint8
from dainet.inference.visual import (GAP_RGB, GT_RGB, PRED_RGB, draw_detections, feature_grid, grid_shape,
                                     line_width, normalise_channels, reflectance_picture, side_by_side,
                                     tile_scale)
from dainet.models import build_model, init_weights
from dainet.params import ParamError
from dainet.weights import save_checkpoint

from conftest import stage_main
from helpers import WIDTH, paper_model, write_images, write_list_file, write_narrow_params


# ---------------------------------------------------------------------- pure pictures

def colour_mask(picture: np.ndarray, rgb) -> np.ndarray:
    return (picture == np.array(rgb, np.uint8)).all(axis=2)


def frame_mask(hw, box_xyxy, inner: int, outer: int) -> np.ndarray:
    """Pixels of ``[y1 - outer, y2 + outer) x [x1 - outer, x2 + outer)`` outside
    ``[y1 + inner, y2 - inner) x [x1 + inner, x2 - inner)``: a band round the box edges."""
    x1, y1, x2, y2 = box_xyxy
    m = np.zeros(hw, bool)
    m[max(y1 - outer, 0):y2 + outer, max(x1 - outer, 0):x2 + outer] = True
    m[y1 + inner:y2 - inner, x1 + inner:x2 - inner] = False
    return m


def test_draw_detections_gt_and_predictions_in_their_colours():
    H, W, t = 120, 160, 2
    image = np.full((H, W, 3), 40, np.uint8)
    gt = np.array([[20, 40, 60, 90], [110, 60, 118, 70]], np.float32)   # a large face and an 8 px one
    dets = np.array([[22.4, 41.6, 58.7, 88.2, 0.876],                    # hits the large face
                     [100, 20, 140, 50, 0.3],                            # below the threshold
                     [130, 90, 150, 110, 0.5]])                          # exactly at it: drawn
    out = draw_detections(image, dets, score_thresh=0.5, gt_xyxy=gt, thickness=t)
    assert (image == 40).all()                                           # input untouched
    assert out.shape[0] > H and out.shape[1] >= W        # caption strip below (wider if it needs to be)
    pic = out[:H, :W]

    # ground truth: t px just outside each box, every edge drawn, nothing else green
    gt_px = colour_mask(pic, GT_RGB)
    gt_band = frame_mask((H, W), (20, 40, 60, 90), 0, t) | frame_mask((H, W), (110, 60, 118, 70), 0, t)
    assert gt_px.any() and not (gt_px & ~gt_band).any()
    for y, x in [(38, 60), (91, 40), (60, 18), (60, 61), (58, 115), (71, 115), (65, 108), (65, 119)]:
        assert gt_px[y, x], (y, x)
    assert (pic[61:69, 111:117] == 40).all()                            # the tiny face stays visible

    # predictions: t px just inside each drawn box; red elsewhere only on a label above / below
    red = colour_mask(pic, PRED_RGB)
    hit, at_thresh = (22, 42, 59, 88), (130, 90, 150, 110)
    pred_band = frame_mask((H, W), hit, t, 0) | frame_mask((H, W), at_thresh, t, 0)
    labels = np.zeros((H, W), bool)
    labels[42 - t - 20:42 - t, 22:22 + 40] = True                        # above the 0.88 box
    labels[90 - t - 20:90 - t, 120:W] = True            # above the 0.50 box, moved left into the picture
    assert not (red & ~(pred_band | labels)).any()
    for y, x in [(42, 40), (87, 40), (60, 22), (60, 58), (90, 140), (109, 140), (100, 130), (100, 149)]:
        assert red[y, x], (y, x)
    assert (red & labels).sum() > 100                                    # filled label backgrounds
    # the score text: white-ish glyph pixels on those labels, next to their boxes
    text = (pic.min(axis=2) > 180) & labels
    assert text[:42, 22:62].sum() > 15 and text[60:90, 130:].sum() > 15

    # the 0.3 box: neither frame nor label, anywhere near it
    assert (pic[0:52, 100:141] == 40).all()

    # the caption names both colours; without ground truth no green at all
    strip = out[H:]
    assert colour_mask(strip, GT_RGB).any() and colour_mask(strip, PRED_RGB).any()
    no_gt = draw_detections(image, dets, 0.5, thickness=t)
    assert not colour_mask(no_gt, GT_RGB).any()
    np.testing.assert_array_equal(draw_detections(image, dets, 0.5, gt, thickness=t, caption=False), pic)


def test_draw_detections_line_width_and_labels_at_the_edges():
    assert line_width((256, 256)) == 2 and line_width((512, 384)) == 2 and line_width((1024, 768)) == 3
    image = np.full((64, 64, 3), 40, np.uint8)
    # a box at the top-left corner: its label goes below it; one hanging off the right edge
    out = draw_detections(image, np.array([[0, 0, 20, 20, 0.9], [50, 30, 70, 50, 0.7]]), 0.5, caption=False)
    red = colour_mask(out, PRED_RGB)
    assert red[22:40, 0:20].sum() > 50                                   # label under the corner box
    assert red[0:20, 0:20][2:18, 2:18].sum() == 0                        # inside the box stays clear
    assert (out.min(axis=2) > 180)[22:40, 0:30].sum() > 10               # its text
    assert red[10:30, 30:64].sum() > 50                                  # label shifted into the picture


def test_normalise_channels_per_channel_and_flat():
    f = np.stack([np.arange(6.0).reshape(2, 3), np.full((2, 3), 7.0), -np.arange(6.0).reshape(2, 3) * 10])
    n = normalise_channels(f)
    np.testing.assert_allclose(n[0], np.arange(6).reshape(2, 3) / 5)
    np.testing.assert_array_equal(n[1], 0)
    np.testing.assert_allclose(n[2], 1 - np.arange(6).reshape(2, 3) / 5)


def test_feature_grid_layout():
    rng = np.random.default_rng(0)
    fmap = rng.random((20, 5, 7))
    grid = feature_grid(fmap, n_channels=6, min_tile=20, gap=2)
    # 6 tiles -> 2 rows x 3 columns; factor ceil(20 / 7) = 3 -> 15 x 21 tiles
    assert grid.shape == (2 * 15 + 2, 3 * 21 + 2 * 2, 3)
    tile = grid[17:32, 23:44]                                   # row 1, column 1 = channel 4
    expected = cv2.applyColorMap(to_uint8(normalise_channels(fmap[4:5])[0]), cv2.COLORMAP_VIRIDIS)[..., ::-1]
    np.testing.assert_array_equal(tile, expected.repeat(3, axis=0).repeat(3, axis=1))
    assert (grid[15:17] == GAP_RGB).all() and (grid[:, 21:23] == GAP_RGB).all()
    assert grid_shape(16) == (4, 4) and grid_shape(8) == (3, 3) and grid_shape(1) == (1, 1)
    assert tile_scale((1, 1), 64) == 64 and tile_scale((100, 50), 64) == 1


def test_reflectance_picture_pads_odd_sizes_and_side_by_side():
    R = np.random.default_rng(1).random((3, 4, 6)).astype(np.float32)
    pic = reflectance_picture(R, (5, 7))
    assert pic.shape == (5, 7, 3)
    np.testing.assert_array_equal(pic[:4, :6], to_uint8(R.transpose(1, 2, 0)))
    np.testing.assert_array_equal(pic[4], pic[3])
    np.testing.assert_array_equal(pic[:, 6], pic[:, 5])
    both = side_by_side(np.zeros((5, 7, 3), np.uint8), np.zeros((3, 2, 3), np.uint8), gap=4)
    assert both.shape == (5, 13, 3) and (both[3:, 11:] == GAP_RGB).all()


# ------------------------------------------------------------------------ the stage

@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    root = tmp_path_factory.mktemp("vis")
    clean = write_images(root / "clean" / "0--Parade", ["c0.jpg", "c1.jpg", "c2.jpg"], hw=(96, 128))
    dark = write_images(root / "dark", ["d0.png", "d1.png", "d2.png"], hw=(81, 101), seed=2)
    return write_list_file(root / "clean.txt", clean), write_list_file(root / "dark.txt", dark)


def weights(path: Path, method: str) -> Path:
    net = init_weights(build_model(paper_model(width=WIDTH), reflectance=method == "dainet"), seed=0)
    save_checkpoint(path, {"model": net.state_dict(), "method": method})
    return path


def run_visualize(tmp_path, lists, method, out_name="vis", **vis):
    params = write_narrow_params(tmp_path / "params.yaml",
                          visualize={"n_images": 2, "feature_layers": ["of1", "ef1", "x_shallow"], **vis})
    out = tmp_path / out_name
    ckpt = tmp_path / f"{method}.ckpt"
    if not ckpt.exists():
        weights(ckpt, method)
    assert stage_main("visualize")(["--weights", str(ckpt), "--clean-list", str(lists[0]),
                                         "--dark-list", str(lists[1]), "--out", str(out),
                                         "--params", str(params)]) == 0
    return out


def png_shapes(folder: Path) -> dict[str, tuple]:
    return {p.name: cv2.imread(str(p)).shape for p in sorted(folder.iterdir())}


def test_visualize_writes_every_png_with_its_size_deterministically(tmp_path, lists):
    out = run_visualize(tmp_path, lists, "dainet")
    # dark images 81 x 101: of1 / ef1 are 20 x 25 (stride 4), 32 channels -> 16 tiles 4 x 4,
    # enlarged x3 (ceil(64 / 25)) to 60 x 75, gap 2; x_shallow 40 x 50, 8 channels -> 3 x 3
    # tiles enlarged x2 to 80 x 100; reflectance: input | 4 px gap | R
    shapes = png_shapes(out)
    detections = {name: shapes.pop(name) for name in list(shapes) if name.startswith("detections_")}
    assert sorted(detections) == ["detections_clean_0.png", "detections_clean_1.png",
                                  "detections_dark_0.png", "detections_dark_1.png"]
    for name, (h, w, _) in detections.items():
        H, W = (96, 128) if "clean" in name else (81, 101)
        assert h > H and w >= W, name                                    # image + caption strip
    assert shapes == {
        "reflectance_0.png": (81, 2 * 101 + 4, 3), "reflectance_1.png": (81, 2 * 101 + 4, 3),
        "features_of1.png": (4 * 60 + 3 * 2, 4 * 75 + 3 * 2, 3),
        "features_ef1.png": (4 * 60 + 3 * 2, 4 * 75 + 3 * 2, 3),
        "features_x_shallow.png": (3 * 80 + 2 * 2, 3 * 100 + 2 * 2, 3),
    }
    # the left half of a reflectance picture is the input itself
    dark0 = cv2.imread(str(lists[1].parent / "dark" / "d0.png"))
    np.testing.assert_array_equal(cv2.imread(str(out / "reflectance_0.png"))[:, :101], dark0)

    again = run_visualize(tmp_path, lists, "dainet", out_name="vis_again")
    for name in png_shapes(out):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_visualize_dsfd_has_no_reflectance_and_draws_the_list_ground_truth(tmp_path, lists, capsys):
    # the untrained net scores everything near 0.5: a threshold above 1 draws the ground truth alone
    out = run_visualize(tmp_path, lists, "dsfd", n_images=1, feature_layers=["of2"], score_thresh=1.01)
    assert sorted(png_shapes(out)) == ["detections_clean_0.png", "detections_dark_0.png", "features_of2.png"]
    assert "no reflectance" in capsys.readouterr().out
    # the list's box (10, 10, 20, 20) xywh is framed in the ground-truth colour, 2 px just outside it
    for name, (H, W) in (("detections_clean_0.png", (96, 128)), ("detections_dark_0.png", (81, 101))):
        pic = cv2.imread(str(out / name))[:H, :W, ::-1]
        np.testing.assert_array_equal(colour_mask(pic, GT_RGB), frame_mask((H, W), (10, 10, 30, 30), 0, 2))
        assert not colour_mask(pic, PRED_RGB).any()


def test_unknown_feature_layer_is_a_params_error(tmp_path, lists):
    with pytest.raises(ParamError, match=r"visualize.feature_layers: unknown \['of9'\]"):
        run_visualize(tmp_path, lists, "dainet", feature_layers=["of1", "of9"])
