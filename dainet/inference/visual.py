"""Pictures for the visualize stage: detections on images, reflectance maps, feature-map grids.

numpy / OpenCV only; every function takes and returns uint8 RGB ``[H, W, 3]`` pictures
(feature maps and reflectance come in as float arrays), and draws deterministically.

Detection pictures: the ground truth is framed in green just *outside* its box, the
predictions in red just *inside* theirs, so a hit shows both frames side by side and
no frame covers the pixels of a ground-truth face; a caption strip below the image
names the colours and counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dainet.formats.images import to_uint8

GT_RGB, GT_NAME = (0, 230, 0), "green"
PRED_RGB, PRED_NAME = (255, 40, 40), "red"
LABEL_TEXT_RGB = (255, 255, 255)
CAPTION_RGB = (32, 32, 32)           # caption strip background
CAPTION_TEXT_RGB = (255, 255, 255)
GAP_RGB = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def line_width(image_hw: tuple[int, int], px_per_width: int = 300, min_width: int = 2) -> int:
    """Frame width in pixels: at least ``min_width`` (2 px stays visible on a 256 px
    picture and still leaves the inside of an 8 px face), one more per ``px_per_width``."""
    return max(min_width, round(max(image_hw) / px_per_width))


def font_scale(image_hw: tuple[int, int], base: float = 0.4, base_px: int = 512) -> float:
    """Hershey font scale: ``base`` (text ~9 px high) up to ``base_px``, growing with the image."""
    return base * max(1.0, max(image_hw) / base_px)


def _text_weight(scale: float) -> int:
    return max(1, round(scale * 2.5))


def _fill(canvas: np.ndarray, y0: int, y1: int, x0: int, x1: int, color) -> None:
    """``canvas[y0:y1, x0:x1] = color``, clipped to the canvas."""
    H, W = canvas.shape[:2]
    y0, y1, x0, x1 = max(y0, 0), min(y1, H), max(x0, 0), min(x1, W)
    if y0 < y1 and x0 < x1:
        canvas[y0:y1, x0:x1] = color


def pixel_box(box_xyxy) -> tuple[int, int, int, int]:
    """xyxy pixels (``x2 = x + w``, the box covers columns ``[x1, x2)``) -> ints, at least 1 px."""
    x1, y1, x2, y2 = (int(math.floor(float(v) + 0.5)) for v in box_xyxy[:4])
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def draw_frame(canvas: np.ndarray, box_xyxy, color, width: int, outside: bool) -> None:
    """Frame ``box_xyxy`` in place, ``width`` px wide, sharp corners, clipped to the canvas:
    the ``width`` pixels around the box (``outside``) or the box's own outer pixels."""
    x1, y1, x2, y2 = pixel_box(box_xyxy)
    if outside:
        ox1, oy1, ox2, oy2 = x1 - width, y1 - width, x2 + width, y2 + width
        ix1, iy1, ix2, iy2 = x1, y1, x2, y2
    else:
        ox1, oy1, ox2, oy2 = x1, y1, x2, y2
        ix1, iy1, ix2, iy2 = x1 + width, y1 + width, x2 - width, y2 - width
        # a box narrower than two frames is filled
        ix2, iy2 = max(ix1, ix2), max(iy1, iy2)
        ix1, iy1 = min(ix1, ix2), min(iy1, iy2)
    _fill(canvas, oy1, iy1, ox1, ox2, color)        # top
    _fill(canvas, iy2, oy2, ox1, ox2, color)        # bottom
    _fill(canvas, iy1, iy2, ox1, ix1, color)        # left
    _fill(canvas, iy1, iy2, ix2, ox2, color)        # right


def draw_score_label(canvas: np.ndarray, box_xyxy, text: str, color, scale: float, gap: int) -> None:
    """``text`` in white on a filled ``color`` label at the box's top-left corner, ``gap`` px
    above the box (room for a ground-truth frame), or below it when there is no room above."""
    H, W = canvas.shape[:2]
    x1, y1, _, y2 = pixel_box(box_xyxy)
    weight = _text_weight(scale)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, weight)
    pad = max(1, round(2 * scale / 0.4))
    lw, lh = tw + 2 * pad, th + base + pad
    x0 = min(max(x1, 0), max(W - lw, 0))
    y0 = y1 - gap - lh
    if y0 < 0:
        y0 = min(y2 + gap, max(H - lh, 0))
    _fill(canvas, y0, y0 + lh, x0, x0 + lw, color)
    cv2.putText(canvas, text, (x0 + pad, y0 + pad + th), FONT, scale, LABEL_TEXT_RGB, weight, cv2.LINE_AA)


def caption_strip(items: list[tuple[tuple[int, int, int], str]], width: int, scale: float) -> np.ndarray:
    """uint8 RGB strip with one colour swatch + text per item, laid out left to right and
    wrapped; ``width`` wide, or wider where one item alone needs more."""
    weight = _text_weight(scale)
    sizes = [cv2.getTextSize(text, FONT, scale, weight) for _, text in items]
    th = max(s[0][1] for s in sizes)
    base = max(s[1] for s in sizes)
    margin, swatch = max(3, th // 2), th
    item_w = [swatch + margin // 2 + 2 + tw for (tw, _), _ in sizes]
    width = max(width, max(item_w) + 2 * margin)
    row_h = th + base + margin
    places, x, row = [], margin, 0
    for w in item_w:                                   # greedy wrap
        if x > margin and x + w > width - margin:
            x, row = margin, row + 1
        places.append((x, row))
        x += w + 2 * margin
    strip = np.full((margin + (row + 1) * row_h, width, 3), CAPTION_RGB, np.uint8)
    for (color, text), (x, r) in zip(items, places):
        top = margin + r * row_h
        _fill(strip, top, top + swatch, x, x + swatch, color)
        cv2.putText(strip, text, (x + swatch + margin // 2 + 2, top + th), FONT, scale,
                    CAPTION_TEXT_RGB, weight, cv2.LINE_AA)
    return strip


def draw_detections(image_rgb: np.ndarray, dets_xyxy_score: np.ndarray, score_thresh: float,
                    gt_xyxy: np.ndarray | None = None, thickness: int | None = None,
                    caption: bool = True) -> np.ndarray:
    """``image_rgb`` with its ground truth and predictions, and a caption strip below it.

    ``gt_xyxy [n, 4]`` (pixels; ``None``: not drawn, not captioned) is framed in
    :data:`GT_RGB` just outside each box; every prediction of ``dets [K, 5]`` (xyxy
    pixels + score) scoring ``>= score_thresh`` is framed in :data:`PRED_RGB` just inside
    its box, with its score (2 decimals) on a filled label. Frames are ``thickness`` px
    (default :func:`line_width`). Returns uint8 RGB ``[H + h_caption, max(W, w_caption), 3]``
    whose top-left ``[H, W]`` is the picture (``[H, W, 3]`` without a caption); the input
    is not modified.
    """
    out = np.ascontiguousarray(image_rgb, dtype=np.uint8).copy()
    hw = out.shape[:2]
    width = line_width(hw) if thickness is None else thickness
    scale = font_scale(hw)
    dets = np.asarray(dets_xyxy_score, dtype=np.float64).reshape(-1, 5)
    dets = dets[dets[:, 4] >= score_thresh]
    dets = dets[np.argsort(dets[:, 4], kind="stable")]  # lowest first: the best ends on top
    gt = None if gt_xyxy is None else np.asarray(gt_xyxy, dtype=np.float64).reshape(-1, 4)

    for box in gt if gt is not None else ():
        draw_frame(out, box, GT_RGB, width, outside=True)
    for box in dets:
        draw_frame(out, box, PRED_RGB, width, outside=False)
    for box in dets:                                     # labels last: no frame crosses them
        draw_score_label(out, box, f"{box[4]:.2f}", PRED_RGB, scale, gap=width)
    if not caption:
        return out

    items = [] if gt is None else [(GT_RGB, f"{GT_NAME}: ground truth ({len(gt)})")]
    items.append((PRED_RGB, f"{PRED_NAME}: predictions >= {score_thresh:.2f} ({len(dets)})"))
    strip = caption_strip(items, out.shape[1], scale)
    picture = np.full((hw[0] + strip.shape[0], strip.shape[1], 3), CAPTION_RGB, np.uint8)
    picture[:hw[0], :hw[1]] = out
    picture[hw[0]:] = strip
    return picture


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


# ---------------------------------------------------------------------------- the stage

@dataclass(frozen=True)
class VisualizeConfig:
    """Params ``visualize`` (each key's rule in :data:`dainet.schema.SCHEMA`): pictures of the
    first ``n_images`` of each list, boxes above ``score_thresh``, and ``feature_channels``
    channels of each of the ``feature_layers``."""
    n_images: int
    score_thresh: float
    feature_layers: list[str]
    feature_channels: int


def visualize(params, weights, clean_list, dark_list, out) -> dict:
    """The `visualize` stage (stages/visualize.py calls it): the PNGs of its docstring
    below ``out`` from the checkpoint ``weights``; returns a summary for the stage's line
    (method, device, counts, whether there was a reflectance decoder).

    Unlike the rest of this module it runs the network: Jittor is imported here, so
    call it only after the params have been read.
    """
    from pathlib import Path

    from dainet.formats.images import read_image
    from dainet.formats.lists import read_list
    from dainet.inference.multiscale import MultiScaleConfig, multi_scale_detect
    from dainet.inference.predictor import detector_from_params, feature_maps, reflectance
    from dainet.utils.fileio import write_image

    vis = params.section("visualize").load(VisualizeConfig)
    n_images, score_thresh, layers = vis.n_images, vis.score_thresh, vis.feature_layers
    # the predict stage's own test (multi-scale unless predict.single_scale): the pictures
    # show the boxes that were evaluated
    cfg = params.section("predict").load(MultiScaleConfig)
    clean = read_list(clean_list)[:n_images]
    dark = read_list(dark_list)[:n_images]

    net, method, device, detect_fn = detector_from_params(params, weights, cfg)
    out = Path(out)
    for kind, entries in (("clean", clean), ("dark", dark)):
        for i, entry in enumerate(entries):
            rgb = read_image(entry.image)
            dets = multi_scale_detect(rgb, detect_fn, cfg)
            gt = entry.boxes_xyxy[entry.labels == 1]
            write_image(out / f"detections_{kind}_{i}.png", draw_detections(rgb, dets, score_thresh, gt))
            if kind == "dark" and net.reflectance:
                R = reflectance(net, rgb.astype(np.float32) / 255.0)
                write_image(out / f"reflectance_{i}.png",
                            side_by_side(rgb, reflectance_picture(R, rgb.shape[:2])))

    first_dark = read_image(dark[0].image).astype(np.float32) / 255.0
    for name, fmap in feature_maps(net, first_dark, layers).items():
        write_image(out / f"features_{name}.png", feature_grid(fmap, vis.feature_channels))
    return {"method": method, "device": device, "clean": len(clean), "dark": len(dark),
            "feature_grids": len(layers), "reflectance": bool(net.reflectance)}
