"""The one image reader of the project: any common PNG/JPEG flavour becomes uint8 RGB
``[H, W, 3]``, or a clear :class:`ImageReadError` naming the file.

Training (:mod:`dainet.data.dataset`, the decomposition stage), prediction and the
image check of the ``prepare`` stage all go through this module, so an image that
``prepare`` accepts is one that training and prediction can read, and every stage
sees the same pixels.

Decoder: Pillow (``Image.open`` + ``load()``), as the reference's training and test
scripts. No EXIF orientation is applied (WIDER FACE / DARK FACE boxes refer to the
stored pixel grid). Measured on the 500 images of the embedded sample (400 JPEG, 100
PNG) and on baseline / progressive JPEGs with 4:4:4, 4:2:2 and 4:2:0 chroma and
grayscale: pixel for pixel identical to ``cv2.imread`` + BGR->RGB, which training
used before (OpenCV 4.11 / libjpeg-turbo 3.0.3 against Pillow 13.0 / libjpeg-turbo
3.2.0). Only CMYK JPEGs differ (by at most 1 level: another CMYK->RGB formula), and
EXIF-rotated JPEGs, which ``cv2.imread`` rotates.

Conversions (spec §1: the network sees RGB):
* grayscale (``L``, ``1``), palette (``P``, ``PA``), ``LA``, ``RGBA``, ``CMYK``, ... ->
  Pillow's own ``convert("RGB")`` (alpha is dropped, not blended).
* 16-bit: Pillow already reduces 16-bit colour PNGs to 8 bits by keeping the high
  byte; 16-bit grayscale (modes ``I;16*`` / ``I``) is reduced the same way
  (``v >> 8``), so a 16-bit image gives the same 8-bit values in gray and in colour.

Bad files (:class:`ImageReadError`): missing, empty (0 bytes), not an image (e.g. text
named ``.jpg``), truncated -- a JPEG without its end (``ImageFile.LOAD_TRUNCATED_IMAGES``
stays False, so Pillow refuses what OpenCV would fill with grey), a PNG whose pixel
data or final ``IEND`` chunk is cut off -- corrupt data the decoder rejects, and
unsupported pixel modes. :func:`check_image` applies the same policy faster (JPEGs are
decoded at 1/8 scale: every byte of the compressed data is still decoded) and gives the
image's size; :func:`check_images` checks many in threads (``prepare`` before listing
images, ``predict`` before predicting any).

The other way, :func:`to_uint8` is the one conversion of float pictures in [0, 1] to
uint8 (the training pictures, the decomposition preview, the visualize stage's).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from dainet.errors import UserError

# Image files the project looks for (prediction folders, DARK FACE images), in order of
# preference when one stem has several (DARK FACE ships png). All decode with Pillow.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_UNSUPPORTED_MODES = ("F",)   # float pixels: no agreed scale to 8 bits
_PNG_TAIL = 1024              # IEND is searched in the last bytes (tolerates a little trailing junk)


def to_uint8(image_float) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8, clipped, rounded half to even."""
    return np.round(np.clip(image_float, 0.0, 1.0) * 255.0).astype(np.uint8)


class ImageReadError(UserError):
    """An image file cannot be decoded; ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: cannot read image ({reason})")
        self.path = str(path)
        self.reason = reason


def _to_rgb_uint8(im: Image.Image, path: str | Path) -> np.ndarray:
    if im.mode in _SIXTEEN_BIT_MODES:
        gray16 = np.clip(np.asarray(im, dtype=np.int64), 0, 0xFFFF)
        gray8 = (gray16 >> 8).astype(np.uint8)
        return np.repeat(gray8[:, :, None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)   # a writable copy (asarray may be read-only)


def _check_png_end(path: str | Path, size: int) -> None:
    with open(path, "rb") as f:
        f.seek(max(0, size - _PNG_TAIL))
        if b"IEND" not in f.read():
            raise ImageReadError(path, "truncated PNG: no IEND chunk at the end of the file")


def _decode(path: str | Path, full: bool) -> np.ndarray | tuple[int, int]:
    """The policy shared by :func:`read_image` (``full``: the pixels) and
    :func:`check_image` (the stored ``(width, height)``)."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except OSError as exc:
        raise ImageReadError(path, exc.strerror or str(exc)) from None
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            if im.mode in _UNSUPPORTED_MODES:
                raise ImageReadError(path, f"unsupported pixel mode {im.mode!r}")
            if im.width == 0 or im.height == 0:
                raise ImageReadError(path, f"image of size {im.width} x {im.height}")
            width, height = im.width, im.height   # before draft(), which shrinks them
            if not full:
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))   # JPEG only
            im.load()   # decode now, inside the try: truncation surfaces here
            if im.format == "PNG":
                _check_png_end(path, size)
            return _to_rgb_uint8(im, path) if full else (width, height)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image file Pillow can identify") from None
    except MemoryError:
        raise
    except Exception as exc:   # noqa: BLE001 -- broken files raise OSError, SyntaxError, struct.error, ...
        raise ImageReadError(path, str(exc) or type(exc).__name__) from None


def read_image(path: str | Path) -> np.ndarray:
    """Read ``path`` as a writable, C-contiguous uint8 RGB array ``[H, W, 3]``.

    Raises :class:`ImageReadError` (a :class:`UserError`) for a bad file (see the
    module docstring).
    """
    rgb = _decode(path, full=True)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageReadError(path, f"unexpected decoded shape {rgb.shape}")
    return rgb


def check_image(path: str | Path) -> tuple[int, int]:
    """Raise :class:`ImageReadError` when :func:`read_image` would; otherwise return the
    image's ``(width, height)`` in pixels, the size :func:`read_image` gives.

    Faster than reading: a JPEG is decoded at 1/8 scale (libjpeg's DCT scaling still
    entropy-decodes all of its data, so truncated or corrupt data fails the same way).
    """
    return _decode(path, full=False)


def check_images(paths: Sequence[str | Path], progress: Callable[[Iterable], Iterable] = iter,
                 workers: int | None = None) -> list[ImageReadError | tuple[int, int]]:
    """:func:`check_image` every path; per path, in order, the error or the ``(width, height)``.

    ``workers`` threads (default: the CPU count, at most 8; the decoders release the
    GIL). ``progress`` wraps the iterable of results (e.g. ``tqdm``)."""
    def one(path: str | Path) -> ImageReadError | tuple[int, int]:
        try:
            return check_image(path)
        except ImageReadError as exc:
            return exc

    workers = workers or min(8, os.cpu_count() or 1)
    if workers == 1 or len(paths) <= 1:
        return list(progress(map(one, paths)))
    with ThreadPoolExecutor(workers) as pool:
        return list(progress(pool.map(one, paths)))
