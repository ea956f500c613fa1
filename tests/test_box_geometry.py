"""dainet.boxes.convert and the one IoU formula (numpy; the Jittor twin: tests/test_boxes.py)."""
from __future__ import annotations

import numpy as np
import pytest

from dainet.boxes.convert import normalised_to_pixels, xywh_to_xyxy, xyxy_to_xywh
from dainet.boxes.iou import iou_xyxy_np


def _random_boxes(rng, n, lo=0, hi=300, size=80):
    xy = rng.uniform(lo, hi, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(0, size, (n, 2))], 1)


def test_conversions_round_trip_and_keep_extra_columns():
    xywh = np.array([[10, 20, 30, 40, 0.9], [0, 0, 0, 0, 0.1]])
    np.testing.assert_array_equal(xywh_to_xyxy(xywh), [[10, 20, 40, 60, 0.9], [0, 0, 0, 0, 0.1]])
    np.testing.assert_array_equal(xywh_to_xyxy(xywh, plus1=True), [[10, 20, 39, 59, 0.9], [0, 0, -1, -1, 0.1]])
    for plus1 in (False, True):
        np.testing.assert_array_equal(xyxy_to_xywh(xywh_to_xyxy(xywh, plus1), plus1), xywh)
    assert xywh_to_xyxy(np.float32([[1, 2, 3, 4]])).dtype == np.float32
    assert xyxy_to_xywh(np.zeros((0, 4))).shape == (0, 4)


def test_normalised_to_pixels_scales_x_by_width_and_y_by_height():
    out = normalised_to_pixels(np.float32([[0.25, 0.5, 0.75, 1.0, 0.9]]), (100, 200))
    np.testing.assert_array_equal(out, np.float32([[50, 50, 150, 100, 0.9]]))
    assert out.dtype == np.float32


def _official_boxoverlap(p, g):
    """The official WIDER ``boxoverlap`` (eval_tools), transcribed loop by loop."""
    out = np.zeros((len(p), len(g)))
    for i, a in enumerate(p):
        for j, b in enumerate(g):
            iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
            ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
            if iw > 0 and ih > 0:
                ua = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih
                out[i, j] = iw * ih / ua
    return out


def test_plus1_iou_is_the_official_boxoverlap_to_the_last_bit():
    rng = np.random.default_rng(3)
    p, g = _random_boxes(rng, 60), _random_boxes(rng, 40)
    g[:5, 2:] = g[:5, :2]                 # zero-width / -height boxes (WIDER has some)
    p[:3, 2:] = p[:3, :2] - 3             # degenerate predictions: IoU 0
    assert (iou_xyxy_np(p, g, plus1=True) == _official_boxoverlap(p, g)).all()
    a = np.array([[0, 0, 9, 9]], float)   # 10 x 10 pixels
    b = np.array([[5, 0, 14, 9], [10, 0, 19, 9], [9, 0, 18, 9]], float)
    np.testing.assert_allclose(iou_xyxy_np(a, b, plus1=True), [[50 / 150, 0.0, 10 / 190]])


def test_continuous_iou_and_broadcasting():
    a = np.array([[0, 0, 2, 2]], float)
    b = np.array([[1, 1, 3, 3], [5, 5, 6, 6], [0, 0, 2, 2], [1, 1, 1, 1]], float)
    np.testing.assert_allclose(iou_xyxy_np(a, b), [[1 / 7, 0, 1, 0]])
    assert iou_xyxy_np(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0] == 0      # union 0: 0, not NaN
    batch = np.stack([_random_boxes(np.random.default_rng(k), 4) for k in range(3)])   # [3, 4, 4]
    out = iou_xyxy_np(batch, batch[:1])                                      # [3, 4, 4]
    assert out.shape == (3, 4, 4)
    np.testing.assert_array_equal(out[1], iou_xyxy_np(batch[1], batch[0]))


@pytest.mark.parametrize("plus1", [False, True])
def test_iou_is_symmetric(plus1):
    rng = np.random.default_rng(5)
    p, g = _random_boxes(rng, 20), _random_boxes(rng, 30)
    np.testing.assert_allclose(iou_xyxy_np(p, g, plus1), iou_xyxy_np(g, p, plus1).T, rtol=1e-15)
