"""Visualize stage and its pictures: detections, reflectance, feature-map grids."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import dainet  # noqa: F401  (configures Jittor before it loads)

from dainet.inference.visual import (BOX_RGB, GAP_RGB, draw_detections, feature_grid, grid_shape,
                                     normalise_channels, reflectance_picture, side_by_side, tile_scale,
                                     to_uint8)
from dainet.models import ModelConfig, build_model, init_weights
from dainet.params import ParamError
from dainet.weights import save_checkpoint

from test_predict import WIDTH, load_stage, write_images, write_list_file, write_params


# ---------------------------------------------------------------------- pure pictures

def test_draw_detections_draws_only_boxes_above_the_threshold():
    image = np.full((60, 80, 3), 40, np.uint8)
    dets = np.array([[10, 30, 40, 55, 0.9], [50, 5, 70, 25, 0.3]])
    out = draw_detections(image, dets, score_thresh=0.5, thickness=1)
    assert (image == 40).all()                                  # input untouched
    assert tuple(out[55, 25]) == BOX_RGB and tuple(out[45, 10]) == BOX_RGB   # box edges
    assert (out[6:25, 51:70] == 40).all()                       # the 0.3 box is not drawn
    assert (out[:, :, 1] == 255).sum() > (out[:, :, 0] == 255).sum()  # green box, dark text


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
    net = init_weights(build_model(ModelConfig(width=WIDTH), reflectance=method == "dainet"), seed=0)
    save_checkpoint(path, {"model": net.state_dict(), "method": method})
    return path


def run_visualize(tmp_path, lists, method, out_name="vis", **vis):
    params = write_params(tmp_path / "params.yaml",
                          visualize={"n_images": 2, "feature_layers": ["of1", "ef1", "x_shallow"], **vis})
    out = tmp_path / out_name
    ckpt = tmp_path / f"{method}.ckpt"
    if not ckpt.exists():
        weights(ckpt, method)
    assert load_stage("visualize").main(["--weights", str(ckpt), "--clean-list", str(lists[0]),
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
    assert png_shapes(out) == {
        "detections_clean_0.png": (96, 128, 3), "detections_clean_1.png": (96, 128, 3),
        "detections_dark_0.png": (81, 101, 3), "detections_dark_1.png": (81, 101, 3),
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


def test_visualize_dsfd_has_no_reflectance(tmp_path, lists, capsys):
    out = run_visualize(tmp_path, lists, "dsfd", n_images=1, feature_layers=["of2"])
    assert sorted(png_shapes(out)) == ["detections_clean_0.png", "detections_dark_0.png", "features_of2.png"]
    assert "no reflectance" in capsys.readouterr().out


def test_unknown_feature_layer_is_a_params_error(tmp_path, lists):
    with pytest.raises(ParamError, match=r"visualize.feature_layers: unknown \['of9'\]"):
        run_visualize(tmp_path, lists, "dainet", feature_layers=["of1", "of9"])
