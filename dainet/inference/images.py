"""Image reading for inference: the one reader lives in :mod:`dainet.formats.images`.

Kept as an import path because ``dainet.inference`` re-exports it and
``dainet.training.decomp`` / ``stages/train_decomp.py`` import it from here.
"""
from dainet.formats.images import IMAGE_SUFFIXES, ImageReadError, check_image, read_image

__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "check_image", "read_image"]
