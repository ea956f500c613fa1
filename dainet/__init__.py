"""DAI-Net (CVPR 2024) in Jittor: zero-shot day-night domain adaptation for face detection.

Importing ``dainet`` or any of its modules has no side effect; the Jittor runtime is
configured by :mod:`dainet.jt`, where Jittor is imported.
"""
__version__ = "0.1.0"
