"""Pictures for the visualize stage: detections on images, reflectance maps, feature-map grids.

numpy / OpenCV only; every function takes and returns uint8 RGB ``[H, W, 3]`` pictures
(feature maps and reflectance come in as float arrays), and draws deterministically.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

BOX_RGB = (0, 255, 0)
TEXT_RGB = (0, 0, 0)
GAP_RGB = (255, 255, 255)


def draw_detections(image_rgb: np.ndarray, dets_xyxy_score: np.ndarray, score_thresh: float,
                    color=BOX_RGB, thickness: int = 2) -> np.ndarray:
    """A copy of ``image_rgb`` with every box of ``dets [K, 5]`` (xyxy pixels + score)
    scoring ``>= score_thresh`` drawn, its score written on a filled label above it."""
    out = np.ascontiguousarray(image_rgb, dtype=np.uint8).copy()
    dets = np.asarray(dets_xyxy_score, dtype=np.float64).reshape(-1, 5)
    dets = dets[dets[:, 4] >= score_thresh]
    font, scale, weight = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    # lowest score first, so the best box and label end up on top
    for x1, y1, x2, y2, score in dets[np.argsort(dets[:, 4], kind="stable")]:
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(out, p1, p2, color, thickness)
        text = f"{score:.2f}"
        (tw, th), base = cv2.getTextSize(text, font, scale, weight)
        ty = max(p1[1], th + base)          # keep the label inside the picture at the top edge
        cv2.rectangle(out, (p1[0], ty - th - base), (p1[0] + tw, ty), color, cv2.FILLED)
        cv2.putText(out, text, (p1[0], ty - base), font, scale, TEXT_RGB, weight, cv2.LINE_AA)
    return out


def to_uint8(image_float: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 (clipped, rounded)."""
    return np.round(np.clip(image_float, 0.0, 1.0) * 255.0).astype(np.uint8)


def reflectance_picture(R_chw: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Reflectance ``[3, h, w]`` in [0, 1] -> uint8 RGB ``[H, W, 3]`` of the input's size.

    The decoder returns ``2*(H//2) x 2*(W//2)``; an odd input's last row / column
    repeats the one before it (edge padding, no resampling).
    """
    rgb = to_uint8(np.asarray(R_chw).transpose(1, 2, 0))
    h, w = image_hw
    return np.pad(rgb, ((0, h - rgb.shape[0]), (0, w - rgb.shape[1]), (0, 0)), mode="edge")


def side_by_side(left_rgb: np.ndarray, right_rgb: np.ndarray, gap: int = 4) -> np.ndarray:
    """``left | gap | right``; the shorter picture is padded at the bottom (gap colour)."""
    h = max(left_rgb.shape[0], right_rgb.shape[0])

    def pad(p):
        filler = np.full((h - p.shape[0], p.shape[1], 3), GAP_RGB, np.uint8)
        return np.concatenate([p, filler], axis=0)

    spacer = np.full((h, gap, 3), GAP_RGB, np.uint8)
    return np.concatenate([pad(left_rgb), spacer, pad(right_rgb)], axis=1)


def normalise_channels(fmap_chw: np.ndarray) -> np.ndarray:
    """Each channel of ``[C, h, w]`` min-max scaled to [0, 1] on its own (a flat one -> 0)."""
    f = np.asarray(fmap_chw, dtype=np.float64)
    lo = f.min(axis=(1, 2), keepdims=True)
    span = f.max(axis=(1, 2), keepdims=True) - lo
    return np.divide(f - lo, span, out=np.zeros_like(f), where=span > 0)


def grid_shape(n: int) -> tuple[int, int]:
    """``(rows, cols)`` of a near-square grid for ``n`` tiles."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def tile_scale(map_hw: tuple[int, int], min_tile: int) -> int:
    """Integer nearest-neighbour factor bringing a map's longer side to at least ``min_tile``."""
    return max(1, math.ceil(min_tile / max(map_hw)))


def feature_grid(fmap_chw: np.ndarray, n_channels: int = 16, min_tile: int = 64, gap: int = 2,
                 colormap: int = cv2.COLORMAP_VIRIDIS) -> np.ndarray:
    """The first ``n_channels`` channels of ``[C, h, w]``, each normalised on its own,
    enlarged by :func:`tile_scale` (nearest), coloured and tiled row-major.

    Returns uint8 RGB ``[rows*th + (rows-1)*gap, cols*tw + (cols-1)*gap, 3]`` with
    ``(rows, cols) = grid_shape(min(n_channels, C))``, ``th, tw = s*h, s*w``; unused
    cells and gaps are white.
    """
    maps = normalise_channels(np.asarray(fmap_chw)[:n_channels])          # [n, h, w]
    n, h, w = maps.shape
    s = tile_scale((h, w), min_tile)
    maps = maps.repeat(s, axis=1).repeat(s, axis=2)                       # [n, th, tw]
    th, tw = maps.shape[1:]
    # one colormap call for all tiles stacked vertically
    coloured = cv2.applyColorMap(to_uint8(maps).reshape(n * th, tw), colormap)[..., ::-1]
    tiles = coloured.reshape(n, th, tw, 3)

    rows, cols = grid_shape(n)
    cells = np.full((rows * cols, th + gap, tw + gap, 3), GAP_RGB, np.uint8)
    cells[:n, :th, :tw] = tiles
    grid = cells.reshape(rows, cols, th + gap, tw + gap, 3).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * (th + gap), cols * (tw + gap), 3)
    return np.ascontiguousarray(grid[:rows * (th + gap) - gap, :cols * (tw + gap) - gap])
