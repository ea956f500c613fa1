"""Robust test-image reading: any common PNG/JPEG flavour becomes uint8 RGB ``[H, W, 3]``.

Decoded with Pillow, as the reference test script does (``Image.open`` +
``np.array``), so JPEG pixels are the reference's and no EXIF orientation is
applied (WIDER FACE / DARK FACE boxes refer to the stored pixel grid).

Conversions (spec §1: the network sees RGB):
* grayscale (``L``, ``1``), palette (``P``, ``PA``), ``LA``, ``RGBA``, ``CMYK``, ... ->
  Pillow's own ``convert("RGB")`` (alpha is dropped, not blended).
* 16-bit: Pillow already reduces 16-bit colour PNGs to 8 bits by keeping the high
  byte; 16-bit grayscale (modes ``I;16*`` / ``I``) is reduced the same way
  (``v >> 8``), so a 16-bit image gives the same 8-bit values in gray and in colour.

A file that is missing, unreadable, truncated or not an image raises
:class:`ImageReadError` naming it; the predict stage reports, counts and skips those.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dainet.errors import UserError

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_UNSUPPORTED_MODES = ("F",)   # float pixels: no agreed scale to 8 bits


class ImageReadError(UserError):
    """An image file cannot be decoded; ``path`` names it."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: cannot read image ({reason})")
        self.path = str(path)
        self.reason = reason


def _to_rgb_uint8(im: Image.Image, path: str | Path) -> np.ndarray:
    if im.mode in _UNSUPPORTED_MODES:
        raise ImageReadError(path, f"unsupported pixel mode {im.mode!r}")
    if im.mode in _SIXTEEN_BIT_MODES:
        gray16 = np.clip(np.asarray(im, dtype=np.int64), 0, 0xFFFF)
        gray8 = (gray16 >> 8).astype(np.uint8)
        return np.repeat(gray8[:, :, None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)   # a writable copy (asarray may be read-only)


def read_image(path: str | Path) -> np.ndarray:
    """Read ``path`` as a writable, C-contiguous uint8 RGB array ``[H, W, 3]``.

    Raises :class:`ImageReadError` (a :class:`UserError`) when the file is missing,
    cannot be decoded (corrupt, truncated, not an image) or is empty.
    """
    try:
        with Image.open(path) as im:
            im.load()   # decode now, inside the try: truncation surfaces here
            rgb = _to_rgb_uint8(im, path)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, str(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # UnidentifiedImageError is an OSError; broken headers raise SyntaxError/EOFError
        raise ImageReadError(path, str(exc) or type(exc).__name__) from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageReadError(path, f"unexpected decoded shape {rgb.shape}")
    return rgb
